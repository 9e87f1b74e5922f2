"""The pure-numpy safetensors reader (checked against the real package if present)."""

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perceiver.checkpoints import CheckpointError, CheckpointFormatError, load_safetensors, save_safetensors
from perceiver.checkpoints.loader import detect_format
from perceiver.checkpoints.safetensors_io import loads_safetensors

_ARRAYS = {
  'a.weight': np.arange(12, dtype=np.float32).reshape(3, 4),
  'b': np.array([1.5, -2], np.float64),
  'c': np.array([[1, -2]], np.int64),
  'd': np.array([True, False]),
  'e': np.array(3, np.int32),
  'f': np.zeros((0, 5), np.float16),
}


def _raw(header: dict, body: bytes) -> bytes:
  blob = json.dumps(header).encode()
  return struct.pack('<Q', len(blob)) + blob + body


def test_roundtrip_with_metadata(tmp_path):
  path = tmp_path / 'model.safetensors'
  save_safetensors(path, _ARRAYS, metadata={'format': 'pt'})
  tensors, metadata = load_safetensors(path)
  assert metadata == {'format': 'pt'} and tensors.keys() == _ARRAYS.keys()
  for k, a in _ARRAYS.items():
    assert tensors[k].dtype == a.dtype and np.array_equal(tensors[k], a), k
  assert detect_format(path) == 'hf-safetensors'


def test_interoperates_with_the_safetensors_package(tmp_path):
  st_numpy = pytest.importorskip('safetensors.numpy')
  theirs = tmp_path / 'theirs.safetensors'
  st_numpy.save_file(_ARRAYS, str(theirs), metadata={'k': 'v'})
  tensors, metadata = load_safetensors(theirs)
  assert metadata == {'k': 'v'}
  ours = tmp_path / 'ours.safetensors'
  save_safetensors(ours, _ARRAYS)
  back = st_numpy.load_file(str(ours))
  for k, a in _ARRAYS.items():
    assert np.array_equal(tensors[k], a) and np.array_equal(back[k], a), k


def test_bfloat16_is_widened_exactly():
  values = np.array([1.0, -0.15625, 3.0e38], np.float32)
  values = ((values.view(np.uint32) >> 16) << 16).view(np.float32)  # bf16-representable
  bits = (values.view(np.uint32) >> 16).astype('<u2').tobytes()
  tensors, _ = loads_safetensors(_raw({'x': {'dtype': 'BF16', 'shape': [3], 'data_offsets': [0, 6]}}, bits))
  assert tensors['x'].dtype == np.float32 and np.array_equal(tensors['x'], values)


@pytest.mark.parametrize(
  'data, match',
  [
    (b'', 'no header length'),
    (struct.pack('<Q', 1000) + b'{}', 'truncated'),
    (_raw({'x': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]}}, b'\0' * 4), 'outside'),
    (_raw({'x': {'dtype': 'F32', 'shape': [3], 'data_offsets': [0, 8]}}, b'\0' * 8), '8 bytes'),
    (_raw({'x': {'dtype': 'Q99', 'shape': [], 'data_offsets': [0, 0]}}, b''), 'unknown dtype'),
    (_raw({'x': {'dtype': 'F32', 'shape': [-1], 'data_offsets': [0, 0]}}, b''), 'shape'),
    (struct.pack('<Q', 3) + b'{x}', 'corrupt'),
    (_raw([1, 2], b''), 'not a JSON object'),
  ],
)
def test_malformed_files(data, match):
  with pytest.raises(CheckpointFormatError, match=match):
    loads_safetensors(data, source='bad.safetensors')


@settings(max_examples=200, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.integers(0, 300))
def test_fuzz(data, header_len):
  for blob in (data, struct.pack('<Q', header_len) + data):
    try:
      loads_safetensors(blob, source='fuzz')
    except CheckpointError:
      pass
