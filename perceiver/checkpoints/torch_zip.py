"""Reads PyTorch ``.bin``/``.pt`` state_dict files without importing torch.

Since torch 1.6 ``torch.save`` writes a zip archive::

    <root>/data.pkl      protocol-2 pickle of the state_dict
    <root>/data/<key>    raw bytes of each storage (little-endian unless
                         <root>/byteorder says 'big')
    <root>/version, <root>/byteorder, <root>/.data/serialization_id, ...

In ``data.pkl`` each tensor is ``torch._utils._rebuild_tensor_v2(storage,
storage_offset, size, stride, requires_grad, backward_hooks)`` where
``storage`` is a persistent id ``('storage', torch.FloatStorage, '<key>',
'<location>', numel)`` and the state_dict itself is a
``collections.OrderedDict``. We unpickle ``data.pkl`` with the restricted
unpickler (those globals only, each mapped to a numpy stand-in) and rebuild
every tensor as a numpy array from its raw storage, honouring offset and
strides. torch is never imported, so it need not be installed; the tests build
such archives byte by byte to check this reader (see
tests/checkpoints/test_torch_zip.py).
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from typing import Any, Dict, Tuple

import numpy as np

from perceiver.checkpoints.errors import CheckpointFormatError, UnsafeCheckpointError, existing_file, format_errors
from perceiver.checkpoints.safe_pickle import (
  DEFAULT_BUDGET,
  LoadBudget,
  PathLike,
  _Meter,
  charge_bytes,
  checked_shape,
  describe_key,
  unpickle_restricted,
)

# Legacy (torch < 1.6) files start with a pickled magic number:
# PROTO 2, LONG1 10 bytes 0x1950a86a20f9469cfc6c.
_LEGACY_TORCH_MAGIC = b'\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19'
BFLOAT16 = 'bfloat16'
_KEY = re.compile(r'^[\x20-\x7e]{1,1000}$')  # state_dict keys: printable, bounded


class _StorageType:
  """Stands in for ``torch.FloatStorage`` and friends: just the element dtype."""

  __slots__ = ('name', 'dtype')

  def __init__(self, name: str, dtype: Any):
    self.name = name
    self.dtype = dtype  # np.dtype, or BFLOAT16 (read as uint16, widened to f32)

  @property
  def itemsize(self) -> int:
    return 2 if self.dtype == BFLOAT16 else np.dtype(self.dtype).itemsize


_STORAGE_TYPES = {
  'DoubleStorage': np.float64,
  'FloatStorage': np.float32,
  'HalfStorage': np.float16,
  'BFloat16Storage': BFLOAT16,
  'LongStorage': np.int64,
  'IntStorage': np.int32,
  'ShortStorage': np.int16,
  'CharStorage': np.int8,
  'ByteStorage': np.uint8,
  'BoolStorage': np.bool_,
}


class _Storage:
  """A storage read from ``data/<key>``: a flat numpy array of ``numel`` items."""

  __slots__ = ('flat', 'itemsize')

  def __init__(self, flat: np.ndarray, itemsize: int):
    self.flat = flat
    self.itemsize = itemsize  # bytes per element in the file (bf16: 2)


def check_view(size: Tuple[int, ...], stride: Tuple[int, ...]) -> None:
  """Refuses views that read a storage element twice (stride 0, overlaps).

  torch.save writes each tensor as a view of a storage; a real view never
  repeats elements, so its size is at most its storage's. A stride-0 or
  overlapping view would let a few bytes of storage expand into any size.
  """
  dims = sorted((s, n) for n, s in zip(size, stride) if n > 1)
  reach = 0  # elements spanned by the dims with smaller strides, minus one
  for s, n in dims:
    if s <= reach:
      raise CheckpointFormatError('refused tensor view that repeats storage elements (stride 0 or overlapping strides)')
    reach += s * (n - 1)


class _StateDict(dict):
  """Stands in for ``collections.OrderedDict`` (plain dict; keeps ``_metadata``)."""

  def __setstate__(self, state: Any) -> None:
    # torch pickles state_dict._metadata as the OrderedDict's instance dict.
    if not isinstance(state, dict) or not set(state) <= {'_metadata'}:
      raise CheckpointFormatError('unexpected OrderedDict state in data.pkl')
    self.__dict__['metadata'] = state.get('_metadata')


def _rebuild_tensor_v2(
  storage: Any,
  storage_offset: Any,
  size: Any,
  stride: Any,
  requires_grad: Any = False,
  backward_hooks: Any = None,
  metadata: Any = None,
) -> np.ndarray:
  """Stand-in for ``torch._utils._rebuild_tensor_v2``: a numpy copy of the view."""
  del requires_grad, backward_hooks, metadata
  if not isinstance(storage, _Storage):
    raise CheckpointFormatError('tensor storage is not a persistent storage id')
  size = checked_shape(size)
  stride = checked_shape(stride)
  if type(storage_offset) is not int or storage_offset < 0 or len(size) != len(stride):  # pylint: disable=unidiomatic-typecheck
    raise CheckpointFormatError(
      f'invalid tensor view ({type(storage_offset).__name__} offset, {len(size)} sizes, {len(stride)} strides)'
    )
  flat = storage.flat
  if math.prod(size) == 0:
    return np.zeros(size, dtype=flat.dtype)
  check_view(size, stride)
  charge_bytes(math.prod(size) * storage.itemsize)
  last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= flat.size:
    raise CheckpointFormatError(
      f'tensor view (offset {storage_offset}, size {size}, stride {stride}) '
      f'reads past its storage of {flat.size} elements'
    )
  view = np.lib.stride_tricks.as_strided(
    flat[storage_offset:], shape=size, strides=tuple(s * flat.itemsize for s in stride), writeable=False
  )
  return np.array(view, order='C')


def _rebuild_parameter(
  data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None
) -> np.ndarray:
  """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``."""
  del requires_grad, backward_hooks, state
  if not isinstance(data, np.ndarray):
    raise CheckpointFormatError('parameter data is not a tensor')
  return data


TORCH_ALLOWED: Dict[Tuple[str, str], Any] = {
  ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
  ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
  ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
  ('collections', 'OrderedDict'): _StateDict,
}
for _name, _dtype in _STORAGE_TYPES.items():
  TORCH_ALLOWED[('torch', _name)] = _StorageType(_name, _dtype)
del _name, _dtype


def _widen_bfloat16(raw: np.ndarray) -> np.ndarray:
  """bfloat16 bits (uint16) -> float32, exactly (bf16 is the top half of f32)."""
  return (raw.astype(np.uint32) << 16).view(np.float32)


def is_legacy_torch_file(head: bytes) -> bool:
  return head.startswith(_LEGACY_TORCH_MAGIC)


def _find_data_pkl(names: list, path: str) -> str:
  pkls = [n for n in names if n == 'data.pkl' or n.endswith('/data.pkl')]
  if len(pkls) != 1:
    raise CheckpointFormatError(f'{path}: not a torch zip checkpoint (expected one data.pkl, found {len(pkls)})')
  return pkls[0]


def load_torch_state_dict(path: PathLike, *, budget: LoadBudget = DEFAULT_BUDGET) -> Dict[str, np.ndarray]:
  """Reads a torch zip checkpoint into ``{key: np.ndarray}`` (torch not needed).

  bfloat16 tensors are widened to float32 (exact); other dtypes are kept.
  Storages and tensors built count against ``budget`` (in bytes as stored,
  against the whole file's size): a compressed-member bomb, or views sharing
  one storage many times, are refused before they are built.
  """
  path = existing_file(path)
  with open(path, 'rb') as f:
    head = f.read(len(_LEGACY_TORCH_MAGIC))
  if is_legacy_torch_file(head):
    raise CheckpointFormatError(
      f'{path}: legacy (torch < 1.6, non-zip) serialization is not supported; '
      're-save it with a recent torch or convert it to safetensors'
    )
  meter = _Meter(budget, os.path.getsize(path))
  with format_errors(path, 'torch zip'), zipfile.ZipFile(path) as zf:
    return _read_archive(zf, path, budget, meter)


def _read_member(zf: zipfile.ZipFile, name: str, meter: _Meter) -> bytes:
  """A member's bytes, charged (at their declared size) before they are read."""
  meter.charge_bytes(zf.getinfo(name).file_size)
  return zf.read(name)


def _read_archive(zf: zipfile.ZipFile, path: str, budget: LoadBudget, meter: _Meter) -> Dict[str, np.ndarray]:
  """Unpickles ``data.pkl`` with storages served from ``data/<key>``."""
  names = zf.namelist()
  pkl_name = _find_data_pkl(names, path)
  root = pkl_name[: -len('data.pkl')]
  byteorder = '<'
  if root + 'byteorder' in names:
    order = _read_member(zf, root + 'byteorder', meter).decode('ascii', 'replace').strip()
    if order not in ('little', 'big'):
      raise CheckpointFormatError(f'{path}: unknown byteorder (expected little or big)')
    byteorder = '<' if order == 'little' else '>'
  storages: Dict[str, _Storage] = {}

  def persistent_load(pid: Any) -> _Storage:
    if (
      not isinstance(pid, tuple)
      or len(pid) != 5
      or pid[0] != 'storage'
      or not isinstance(pid[1], _StorageType)
      or not isinstance(pid[2], str)
      or type(pid[4]) is not int
      or pid[4] < 0
    ):  # pylint: disable=unidiomatic-typecheck
      raise UnsafeCheckpointError(f'refused persistent id ({type(pid).__name__}): only tensor storages')
    storage_type, key, numel = pid[1], pid[2], pid[4]
    if key not in storages:
      member = f'{root}data/{key}'
      if member not in names:
        raise CheckpointFormatError(f'storage {describe_key(key)} missing from the archive')
      nbytes = numel * storage_type.itemsize
      if zf.getinfo(member).file_size != nbytes:
        raise CheckpointFormatError(
          f'storage {describe_key(key)} has {zf.getinfo(member).file_size} bytes, '
          f'{numel} x {storage_type.name} needs {nbytes}'
        )
      raw = _read_member(zf, member, meter)
      if storage_type.dtype == BFLOAT16:
        flat = _widen_bfloat16(np.frombuffer(raw, np.dtype('u2').newbyteorder(byteorder)))
      else:
        dtype = np.dtype(storage_type.dtype).newbyteorder(byteorder)
        flat = np.frombuffer(raw, dtype).astype(dtype.newbyteorder('='))
      storages[key] = _Storage(flat, storage_type.itemsize)
    return storages[key]

  obj = unpickle_restricted(
    _read_member(zf, pkl_name, meter),
    TORCH_ALLOWED,
    source=f'{path}:{pkl_name}',
    persistent_load=persistent_load,
    buildable_types=(_StateDict,),
    budget=budget,
    meter=meter,
  )
  if not isinstance(obj, dict):
    raise CheckpointFormatError(f'{path}: expected a state_dict, got {type(obj).__name__}')
  out: Dict[str, np.ndarray] = {}
  for key, value in obj.items():
    if not isinstance(key, str) or not _KEY.match(key) or not isinstance(value, np.ndarray):
      raise CheckpointFormatError(
        f'{path}: expected a state_dict of tensors, found {describe_key(key)}: {type(value).__name__}'
      )
    out[key] = value
  return out
