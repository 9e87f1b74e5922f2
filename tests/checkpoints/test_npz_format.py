"""This project's .npz checkpoint format: writing, safe reading, fuzzing."""

import io
import os
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perceiver.checkpoints import (
  CheckpointError,
  CheckpointFormatError,
  CheckpointNotFoundError,
  load_checkpoint,
  read_checkpoint,
  save_checkpoint,
)
from perceiver.checkpoints.npz_format import read_npz

PARAMS = {
  'perceiver_encoder/~/cross_attention/attention/linear': {
    'w': np.arange(6, dtype=np.float32).reshape(2, 3),
    'b': np.zeros(3, np.float32),
  },
  'embed': {'embeddings': np.ones((4, 2), np.float32)},
}
STATE = {
  'image_preprocessor/~/conv2_d_downsample/~/batchnorm/~/mean_ema': {
    'average': np.ones((1, 1, 1, 2), np.float32),
    'counter': np.asarray(5, np.int32),
  }
}
CONFIG = {'model': 'image_classifier', 'num_classes': 3, 'encoder': {'z_index_dim': 8}}


def _assert_trees_equal(a, b):
  assert a.keys() == b.keys()
  for module in a:
    assert a[module].keys() == b[module].keys()
    for name in a[module]:
      assert a[module][name].dtype == np.asarray(b[module][name]).dtype
      np.testing.assert_array_equal(a[module][name], b[module][name])


def test_roundtrip(tmp_path):
  path = tmp_path / 'ckpt.npz'
  save_checkpoint(path, PARAMS, STATE, CONFIG)
  params, state, config = read_checkpoint(path)
  _assert_trees_equal(params, PARAMS)
  _assert_trees_equal(state, STATE)
  assert config == CONFIG
  assert os.listdir(tmp_path) == ['ckpt.npz']  # the temporary file is gone
  assert load_checkpoint(path)[2] == CONFIG
  keys = set(np.load(path).files)
  assert 'params::embed::embeddings' in keys and '__config__' in keys


def test_reads_the_golden_layout(golden_dir):
  params, state, config = read_checkpoint(golden_dir / 'official' / 'imagenet_conv_preprocessing.npz')
  ref = np.load(golden_dir / 'official' / 'imagenet_conv_preprocessing.npz')
  assert config['model'] == 'image_classifier'
  assert sum(len(v) for v in params.values()) == sum(k.startswith('params::') for k in ref.files)
  np.testing.assert_array_equal(
    state['image_preprocessor/~/conv2_d_downsample/~/batchnorm/~/var_ema']['average'],
    ref['state::image_preprocessor/~/conv2_d_downsample/~/batchnorm/~/var_ema::average'],
  )


def test_object_arrays_are_refused_without_unpickling(tmp_path):
  marker = tmp_path / 'pwned'

  class Evil:
    def __reduce__(self):
      return os.system, (f'touch {marker}',)

  path = tmp_path / 'evil.npz'
  np.savez(path, **{'params::m::w': np.array([Evil()], dtype=object)})
  with pytest.raises(CheckpointFormatError, match='not allowed'):
    read_checkpoint(path)
  assert not marker.exists()


def _npz_bytes(arrays) -> bytes:
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  return buf.getvalue()


def test_header_claiming_a_huge_array_is_refused_before_allocating(tmp_path):
  data = _npz_bytes({'params::m::w': np.zeros(4, np.float32)})
  data = data.replace(b"'shape': (4,)", b"'shape': (10000000000000,)".ljust(len(b"'shape': (4,)")), 1)
  assert b'10000000000000' in data
  path = tmp_path / 'huge.npz'
  path.write_bytes(data)
  with pytest.raises(CheckpointFormatError, match=str(path)):
    read_checkpoint(path)


def test_errors_name_the_path(tmp_path):
  with pytest.raises(CheckpointNotFoundError, match='missing.npz'):
    read_checkpoint(tmp_path / 'missing.npz')
  good = tmp_path / 'good.npz'
  save_checkpoint(good, PARAMS, STATE, CONFIG)
  cut = tmp_path / 'cut.npz'
  cut.write_bytes(good.read_bytes()[:-40])
  with pytest.raises(CheckpointFormatError, match='cut.npz'):
    read_checkpoint(cut)
  bad_key = tmp_path / 'bad_key.npz'
  np.savez(bad_key, **{'params::nomodule': np.zeros(1)})
  with pytest.raises(CheckpointFormatError, match='malformed key'):
    read_checkpoint(bad_key)
  bad_config = tmp_path / 'bad_config.npz'
  np.savez(bad_config, __config__=np.asarray('{not json'))
  with pytest.raises(CheckpointFormatError, match='__config__'):
    read_checkpoint(bad_config)


def test_refuses_names_it_could_not_read_back(tmp_path):
  with pytest.raises(ValueError, match='name'):
    save_checkpoint(tmp_path / 'x.npz', {'m': {'a::b': np.zeros(1)}}, {}, None)


_GOOD = _npz_bytes(
  {'params::m::w': np.arange(6, dtype=np.float32).reshape(2, 3), '__config__': np.asarray('{"model": "x"}')}
)
_GOOD_COMPRESSED = (
  lambda: (lambda b: (np.savez_compressed(b, **{'params::m::w': np.arange(6, dtype=np.float32)}), b.getvalue())[1])(
    io.BytesIO()
  )
)()


def _read_or_our_error(tmp_path_factory, data: bytes) -> None:
  path = tmp_path_factory.mktemp('fuzz') / 'f.npz'
  path.write_bytes(data)
  try:
    read_npz(path)
  except CheckpointError:
    pass


@settings(
  max_examples=200, deadline=1000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=400))
def test_fuzz_random_bytes(tmp_path_factory, data):
  _read_or_our_error(tmp_path_factory, b'PK\x03\x04' + data)


@settings(
  max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
  which=st.booleans(),
  edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6),
  cut=st.floats(0, 1),
)
def test_fuzz_mutated_npz(tmp_path_factory, which, edits, cut):
  data = bytearray(_GOOD if which else _GOOD_COMPRESSED)
  for pos, value in edits:
    data[int(pos * len(data))] = value
  _read_or_our_error(tmp_path_factory, bytes(data[: max(1, int(cut * len(data)))] if cut < 0.9 else data))


def test_fuzz_inputs_are_valid_to_start_with(tmp_path):
  for i, data in enumerate((_GOOD, _GOOD_COMPRESSED)):
    path = tmp_path / f'{i}.npz'
    path.write_bytes(data)
    assert zipfile.is_zipfile(path) and 'params::m::w' in read_npz(path)
