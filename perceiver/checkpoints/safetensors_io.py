"""A small pure-numpy reader/writer of the safetensors format.

Format (https://huggingface.co/docs/safetensors): 8 bytes little-endian u64
``N``; ``N`` bytes of UTF-8 JSON ``{name: {"dtype": "F32", "shape": [...],
"data_offsets": [begin, end]}, "__metadata__": {str: str}}``; then the byte
buffer, offsets relative to its start, data little-endian and C-ordered.

Why our own reader rather than ``safetensors.numpy``: the format is this small;
it keeps the package optional (nothing to install to import HF weights); BF16,
in which the hub stores many checkpoints, is widened to float32 exactly here
(``safetensors.numpy`` 0.8 has no BF16 entry in its dtype table and fails
on such files; numpy itself gets bfloat16 only through ml_dtypes); and
malformed files raise our CheckpointFormatError
with the path instead of a Rust panic message. The tests check both directions
against the ``safetensors`` package when it is installed.
"""

from __future__ import annotations

import json
import math
import re
import os
import struct
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from perceiver.checkpoints import bounded_json
from perceiver.checkpoints.errors import CheckpointFormatError, format_errors
from perceiver.checkpoints.safe_pickle import PathLike, checked_shape, describe_key, read_file_bytes

_DTYPES = {
  'F64': '<f8',
  'F32': '<f4',
  'F16': '<f2',
  'BF16': '<u2',
  'I64': '<i8',
  'I32': '<i4',
  'I16': '<i2',
  'I8': 'i1',
  'U64': '<u8',
  'U32': '<u4',
  'U16': '<u2',
  'U8': 'u1',
  'BOOL': '?',
}
_NAMES = {np.dtype(v).newbyteorder('<'): k for k, v in _DTYPES.items() if k != 'BF16'}
_MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's limit
MAX_TENSORS = 100_000  # the largest Perceiver checkpoints have ~1,000
_TENSOR_NAME = re.compile(r'^[\x20-\x7e]{1,1000}$')


def is_safetensors(head: bytes) -> bool:
  """Cheap sniff: plausible header length followed by a JSON object."""
  if len(head) < 9:
    return False
  (n,) = struct.unpack('<Q', head[:8])
  return 2 <= n <= _MAX_HEADER and head[8:9] == b'{'


def loads_safetensors(
  data: bytes, *, source: str = '<bytes>', max_tensors: int = MAX_TENSORS
) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
  """Parses safetensors bytes into ``({name: array}, metadata)``.

  The whole header is validated before any array is built: names are
  printable strings, dtypes and shapes known, and the data ranges, sorted by
  offset, tile the body exactly (no gaps, no overlaps, nothing after), as the
  format requires. So the arrays built are exactly the body's bytes once: a
  small file cannot point thousands of entries at one range.
  """
  with format_errors(source, 'safetensors file'):
    return _parse(data, source, max_tensors)


def _parse(data: bytes, source: str, max_tensors: int) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
  def bad(msg: str) -> CheckpointFormatError:
    return CheckpointFormatError(f'{source}: {msg}')

  if len(data) < 8:
    raise bad('truncated safetensors file (no header length)')
  (n,) = struct.unpack('<Q', data[:8])
  if n > _MAX_HEADER or 8 + n > len(data):
    raise bad(f'truncated or corrupt safetensors file (header of {n} bytes, file of {len(data)})')
  header = bounded_json.loads(bytes(data[8 : 8 + n]), source=source, what='safetensors header')
  if not isinstance(header, dict):
    raise bad('safetensors header is not a JSON object')
  metadata = header.pop('__metadata__', None) or {}
  if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
    raise bad('safetensors __metadata__ must map strings to strings')
  if len(header) > max_tensors:
    raise bad(f'{len(header)} tensors in the header; at most {max_tensors} are read')
  body = memoryview(data)[8 + n :]
  entries = []  # (begin, end, name, dtype name, shape)
  for index, (name, info) in enumerate(header.items()):
    what = f'tensor #{index} ({describe_key(name)})'
    if not _TENSOR_NAME.match(name):
      raise bad(f'tensor #{index}: invalid name (printable ASCII, at most 1000 characters)')
    if not isinstance(info, dict) or info.get('dtype') not in _DTYPES:
      raise bad(f'{what}: missing or unknown dtype')
    shape = checked_shape(info.get('shape'))
    offsets = info.get('data_offsets')
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets):  # pylint: disable=unidiomatic-typecheck
      raise bad(f'{what}: invalid data_offsets')
    begin, end = offsets
    if not 0 <= begin <= end <= len(body):
      raise bad(f'{what}: data_offsets [{begin}, {end}] outside the {len(body)}-byte buffer (truncated file?)')
    itemsize = np.dtype(_DTYPES[info['dtype']]).itemsize
    if end - begin != math.prod(shape) * itemsize:
      raise bad(f'{what}: {end - begin} bytes for shape {shape} of {info["dtype"]}')
    entries.append((begin, end, name, info['dtype'], shape))
  covered = 0
  for begin, end, name, _, _ in sorted(entries, key=lambda e: (e[0], e[1])):
    if begin != covered:
      what = 'overlaps the previous tensor' if begin < covered else 'leaves a gap before it'
      raise bad(f'tensor {describe_key(name)}: its data range {what} (ranges must tile the buffer)')
    covered = end
  if covered != len(body):
    raise bad(f"{len(body) - covered} bytes after the last tensor's data")
  tensors: Dict[str, np.ndarray] = {}
  for begin, end, name, dtype_name, shape in entries:
    flat = np.frombuffer(body[begin:end], dtype=np.dtype(_DTYPES[dtype_name]))
    if dtype_name == 'BF16':
      flat = (flat.astype(np.uint32) << 16).view(np.float32)
    tensors[name] = flat.astype(flat.dtype.newbyteorder('='), copy=True).reshape(shape)
  return tensors, metadata


def load_safetensors(path: PathLike, *, max_tensors: int = MAX_TENSORS) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
  """Reads a ``.safetensors`` file: ``({name: array}, metadata)``."""
  return loads_safetensors(read_file_bytes(path), source=os.fspath(path), max_tensors=max_tensors)


def save_safetensors(
  path: PathLike, tensors: Mapping[str, np.ndarray], metadata: Optional[Mapping[str, str]] = None
) -> None:
  """Writes ``tensors`` in the safetensors format (used by tests and tools)."""
  header: Dict[str, object] = {}
  chunks = []
  offset = 0
  for name in sorted(tensors):
    array = np.asarray(tensors[name])  # (np.ascontiguousarray would make 0-d arrays 1-d)
    little = array.dtype.newbyteorder('<')
    if little not in _NAMES:
      raise ValueError(f'{name}: dtype {array.dtype} has no safetensors equivalent')
    raw = array.astype(little, copy=False).tobytes(order='C')
    header[name] = {'dtype': _NAMES[little], 'shape': list(array.shape), 'data_offsets': [offset, offset + len(raw)]}
    chunks.append(raw)
    offset += len(raw)
  if metadata:
    header['__metadata__'] = dict(metadata)
  blob = json.dumps(header, separators=(',', ':')).encode('utf-8')
  blob += b' ' * (-len(blob) % 8)  # the reference writer pads to 8 bytes
  with open(path, 'wb') as f:
    f.write(struct.pack('<Q', len(blob)))
    f.write(blob)
    for raw in chunks:
      f.write(raw)
