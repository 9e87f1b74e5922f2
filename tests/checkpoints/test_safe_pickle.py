"""The safe loader of DeepMind's released pickles."""

import copyreg
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import _pickle_asm as asm
from perceiver.checkpoints import (
  CheckpointError,
  CheckpointFormatError,
  CheckpointNotFoundError,
  UnsafeCheckpointError,
  load_deepmind_checkpoint,
)
from perceiver.checkpoints import safe_pickle
from perceiver.checkpoints.safe_pickle import loads_deepmind_checkpoint

RELEASED = [
  'imagenet_conv_preprocessing.pystate',
  'imagenet_fourier_position_encoding.pystate',
  'language_masked_lm.pickle',
]


@pytest.mark.parametrize('filename', RELEASED)
def test_released_pickles_equal_their_npz_bitwise(golden_dir, filename):
  ckpt = load_deepmind_checkpoint(golden_dir / 'official' / 'pickles' / filename)
  ref = np.load(golden_dir / 'official' / (os.path.splitext(filename)[0] + '.npz'))
  for kind in ('params', 'state'):
    got = {f'{kind}::{m}::{n}': a for m, leaves in ckpt[kind].items() for n, a in leaves.items()}
    want = {k for k in ref.files if k.startswith(kind + '::')}
    assert set(got) == want
    for key in want:
      assert got[key].dtype == ref[key].dtype and got[key].shape == ref[key].shape, key
      assert got[key].tobytes() == ref[key].tobytes(), key
  if filename.endswith('.pickle'):
    assert ckpt['state'] == {}  # the language file holds the params alone


def test_result_is_plain_dicts_of_writeable_native_arrays(golden_dir):
  ckpt = load_deepmind_checkpoint(golden_dir / 'official' / 'pickles' / RELEASED[0])
  assert type(ckpt) is dict and set(ckpt) == {'params', 'state'}
  for tree in ckpt.values():
    assert type(tree) is dict
    for leaves in tree.values():
      assert type(leaves) is dict
      for a in leaves.values():
        assert type(a) is np.ndarray and a.flags.writeable and a.flags.c_contiguous
        assert a.dtype.isnative


def _roundtrip(arrays: dict) -> dict:
  data = asm.pystate({'m': arrays}, {})
  return loads_deepmind_checkpoint(data)['params']['m']


def test_numpy1_style_arrays_of_every_layout():
  rng = np.random.default_rng(0)
  arrays = {
    'f32': rng.normal(size=(3, 4)).astype(np.float32),
    'fortran': np.asfortranarray(rng.normal(size=(3, 5))),
    'big_endian': rng.normal(size=(4,)).astype('>f4'),
    'f16': rng.normal(size=(2, 2)).astype(np.float16),
    'i32': np.arange(6, dtype=np.int32).reshape(2, 3),
    'bool': np.array([True, False, True]),
    'scalar': np.asarray(7, np.int32),
    'empty': np.zeros((0, 3), np.float32),
  }
  got = _roundtrip(arrays)
  for name, a in arrays.items():
    assert got[name].shape == a.shape and np.array_equal(got[name], a), name
    assert got[name].dtype == a.dtype.newbyteorder('='), name


@pytest.mark.parametrize('protocol', [2, 3, 4, 5])
def test_numpy2_pickles_of_plain_dicts(protocol):
  """numpy 2 writes numpy._core names; protocol 5 uses _frombuffer; scalars use scalar()."""
  tree = {
    'params': {'enc/linear': {'w': np.arange(12, dtype=np.float32).reshape(3, 4), 'b': np.float32(0.5)}},
    'state': {'bn/~/mean_ema': {'counter': np.asarray(3, np.int32)}},
  }
  out = loads_deepmind_checkpoint(pickle.dumps(tree, protocol=protocol))
  assert np.array_equal(out['params']['enc/linear']['w'], tree['params']['enc/linear']['w'])
  assert out['params']['enc/linear']['b'] == np.float32(0.5)
  assert out['state']['bn/~/mean_ema']['counter'] == 3


def test_params_only_mapping_is_returned_as_params():
  data = asm.PROTO2 + asm.flat_mapping({'embed': {'embeddings': np.ones((4, 2), np.float32)}}) + asm.STOP
  out = loads_deepmind_checkpoint(data)
  assert out['state'] == {} and out['params']['embed']['embeddings'].shape == (4, 2)


# ---------------------------------------------------------------------------
# Hostile pickles: refused by name, and nothing runs.
# ---------------------------------------------------------------------------


class _Evil:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f'touch {self.marker}',)


def _payloads(marker):
  """(description, pickle bytes, name the error must mention)."""
  cmd = f'touch {marker}'
  evil_value = asm.call(asm.global_('os', 'system'), asm.unicode(cmd))
  nested = (
    asm.PROTO2
    + asm.dict_(
      [
        (
          asm.unicode('params'),
          asm.call(
            asm.global_('haiku._src.data_structures', 'FlatMapping'),
            asm.dict_([(asm.unicode('m'), asm.dict_([(asm.unicode('w'), evil_value)]))]),
          ),
        )
      ]
    )
    + asm.STOP
  )
  return [
    ('os.system', asm.PROTO2 + evil_value + asm.STOP, 'os.system'),
    (
      'posix.system',
      asm.PROTO2 + asm.call(asm.global_('posix', 'system'), asm.unicode(cmd)) + asm.STOP,
      'posix.system',
    ),
    (
      'builtins.eval',
      asm.PROTO2 + asm.call(asm.global_('builtins', 'eval'), asm.unicode(f'open({str(marker)!r}, "w")')) + asm.STOP,
      'builtins.eval',
    ),
    (
      'subprocess.Popen',
      asm.PROTO2
      + asm.call(asm.global_('subprocess', 'Popen'), asm.tuple_(asm.unicode('touch'), asm.unicode(str(marker))))
      + asm.STOP,
      'subprocess.Popen',
    ),
    ('nested REDUCE inside a FlatMapping', nested, 'os.system'),
    ('pickle.dumps of a __reduce__ object', pickle.dumps(_Evil(marker), protocol=2), 'system'),
    ('STACK_GLOBAL (protocol 4)', pickle.dumps(_Evil(marker), protocol=4), 'system'),
    ('INST opcode', b'(S' + repr(cmd).encode() + b'\nios\nsystem\n.', 'INST'),
    ('OBJ opcode', b'(cos\nsystem\nS' + repr(cmd).encode() + b'\no.', 'os.system'),
    ('NEWOBJ opcode', asm.PROTO2 + asm.global_('numpy', 'ndarray') + asm.EMPTY_TUPLE + b'\x81' + asm.STOP, 'NEWOBJ'),
    (
      'allowed callable on a foreign type',
      asm.PROTO2
      + asm.call(
        asm.global_('numpy.core.multiarray', '_reconstruct'),
        asm.global_('os', 'system'),
        asm.tuple_(asm.binint(0)),
        asm.unicode('b'),
      )
      + asm.STOP,
      'os.system',
    ),
    (
      'object dtype',
      asm.PROTO2 + asm.call(asm.global_('numpy', 'dtype'), asm.unicode('O8'), asm.NEWFALSE, asm.NEWTRUE) + asm.STOP,
      'dtype',
    ),
    ('persistent id', asm.PROTO2 + asm.unicode('x') + asm.BINPERSID + asm.STOP, 'BINPERSID'),
  ]


@pytest.mark.parametrize('index', range(13))
def test_hostile_pickle_is_refused_and_runs_nothing(tmp_path, index):
  marker = tmp_path / 'pwned'
  what, data, name = _payloads(marker)[index]
  path = tmp_path / 'evil.pystate'
  path.write_bytes(data)
  with pytest.raises(UnsafeCheckpointError) as info:
    load_deepmind_checkpoint(path)
  assert name in str(info.value), what
  assert str(path) in str(info.value)
  assert not marker.exists(), what


def test_extension_registry_opcodes_are_refused(tmp_path):
  marker = tmp_path / 'pwned'
  copyreg.add_extension('os', 'system', 0x7A)
  try:
    data = asm.PROTO2 + b'\x82\x7a' + asm.tuple_(asm.unicode(f'touch {marker}')) + asm.REDUCE + asm.STOP
    with pytest.raises(UnsafeCheckpointError, match='EXT1'):
      loads_deepmind_checkpoint(data)
  finally:
    copyreg.remove_extension('os', 'system', 0x7A)
  assert not marker.exists()


def test_build_cannot_tamper_with_the_stand_ins():
  """BUILD on an allowed function would set e.g. its __defaults__ for later loads."""
  scalar = safe_pickle.NUMPY_ALLOWED[('numpy.core.multiarray', 'scalar')]
  before = scalar.__defaults__
  slotstate = asm.tuple_(asm.NONE, asm.dict_([(asm.unicode('__defaults__'), asm.tuple_(asm.unicode('x')))]))
  data = asm.PROTO2 + asm.global_('numpy.core.multiarray', 'scalar') + slotstate + asm.BUILD + asm.STOP
  with pytest.raises(UnsafeCheckpointError, match='refused BUILD on function'):
    loads_deepmind_checkpoint(data)
  assert scalar.__defaults__ == before


def test_payload_is_live_under_plain_pickle(tmp_path):
  """Control: the same bytes do run a command under pickle.loads (in a child)."""
  marker = tmp_path / 'pwned'
  data = pickle.dumps(_Evil(marker), protocol=2)
  subprocess.run(
    [sys.executable, '-c', 'import pickle,sys; pickle.loads(sys.stdin.buffer.read())'], input=data, check=True
  )
  assert marker.exists()


# ---------------------------------------------------------------------------
# Corrupt, truncated and missing files.
# ---------------------------------------------------------------------------


def test_missing_file(tmp_path):
  path = tmp_path / 'nope.pystate'
  with pytest.raises(CheckpointNotFoundError, match='nope.pystate'):
    load_deepmind_checkpoint(path)
  with pytest.raises(FileNotFoundError):  # also the builtin type
    load_deepmind_checkpoint(path)


@pytest.mark.parametrize('keep', [0, 1, 2, 100, 5000, -1])
def test_truncated_file_names_the_path(golden_dir, tmp_path, keep):
  data = (golden_dir / 'official' / 'pickles' / RELEASED[2]).read_bytes()
  path = tmp_path / 'cut.pickle'
  path.write_bytes(data[:keep])
  with pytest.raises(CheckpointFormatError, match='truncated') as info:
    load_deepmind_checkpoint(path)
  assert str(path) in str(info.value)


def test_array_payload_size_mismatch():
  good = asm.ndarray(np.zeros(3, np.float32))
  bad = good.replace(asm.binint(3), asm.binint(4), 1)  # shape claims 4 elements
  with pytest.raises(CheckpointFormatError, match='needs 16'):
    loads_deepmind_checkpoint(
      asm.PROTO2 + asm.dict_([(asm.unicode('m'), asm.dict_([(asm.unicode('w'), bad)]))]) + asm.STOP
    )


def test_wrong_structure():
  with pytest.raises(CheckpointFormatError, match='expected a mapping'):
    loads_deepmind_checkpoint(pickle.dumps([1, 2], protocol=2))
  with pytest.raises(CheckpointFormatError, match='expected an array'):
    loads_deepmind_checkpoint(pickle.dumps({'m': {'w': 'text'}}, protocol=2))


# ---------------------------------------------------------------------------
# Fuzzing: random or mutated bytes only ever raise our errors, quickly.
# ---------------------------------------------------------------------------

_SMALL = asm.pystate(
  {'enc/linear': {'w': np.arange(6, dtype=np.float32).reshape(2, 3), 'b': np.zeros(3, np.float32)}},
  {'bn/~/mean_ema': {'counter': np.asarray(1, np.int32)}},
)


def _load_or_our_error(data: bytes) -> None:
  try:
    loads_deepmind_checkpoint(data, source='fuzz')
  except CheckpointError:
    pass


@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
  _load_or_our_error(asm.PROTO2 + data)
  _load_or_our_error(data)


@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(
  st.lists(st.tuples(st.integers(0, len(_SMALL) - 1), st.integers(0, 255)), max_size=8),
  st.integers(0, len(_SMALL)),
  st.binary(max_size=16),
)
def test_fuzz_mutated_checkpoint(edits, cut, insert):
  data = bytearray(_SMALL)
  for pos, value in edits:
    data[pos] = value
  data = bytes(data[:cut]) + insert + bytes(data[cut:])
  _load_or_our_error(data)
