"""This project's checkpoint format: one ``.npz`` (a zip of ``.npy`` files).

Keys: ``params::<module>::<name>`` and ``state::<module>::<name>`` (Haiku
module paths and parameter names exactly as in DeepMind's reference code),
and ``__config__``, a 0-d string holding the reference-style model config as
JSON. It is the layout of the golden files, so they read with the same code.

Reading never unpickles (object arrays are refused) and validates every
member's ``.npy`` header against its size before allocating, so corrupt or
hostile files raise CheckpointFormatError instead of allocating what a
mutated header claims.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from perceiver.checkpoints import bounded_json
from perceiver.checkpoints.errors import CheckpointFormatError, existing_file, format_errors
from perceiver.checkpoints.safe_pickle import Params, PathLike, checked_shape, describe_key

CONFIG_KEY = '__config__'
SEP = '::'
_MAX_NPY_HEADER = 1 << 16
_ALLOWED_KINDS = frozenset('biufcU')


# np.savez_compressed of real parameters shrinks them little (the goldens: 1.0x);
# deflate itself can reach ~1000x, which is what a zip bomb uses.
MAX_EXPANSION = 64
_SLACK_BYTES = 1 << 20


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
  """One ``.npy`` member, with its header checked against the member size."""
  name = describe_key(info.filename)
  with zf.open(info) as f:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=_MAX_NPY_HEADER)
    elif version in ((2, 0), (3, 0)):
      shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=_MAX_NPY_HEADER)
    else:
      raise CheckpointFormatError(f'{name}: unsupported .npy version')
    shape = checked_shape(shape)
    if dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
      raise CheckpointFormatError(
        f'{name}: dtype of kind {dtype.kind} not allowed (numeric arrays and strings only; nothing is unpickled)'
      )
    nbytes = math.prod(shape) * dtype.itemsize
    header_len = f.tell()
    if info.file_size - header_len != nbytes:
      raise CheckpointFormatError(
        f'{name}: {info.file_size - header_len} data bytes, '
        f'shape {shape} of {dtype.kind}{dtype.itemsize} needs {nbytes}'
      )
    raw = f.read(nbytes)  # zipfile checks the CRC once the member is read
    if len(raw) != nbytes:
      raise CheckpointFormatError(f'{name}: truncated')
  array = np.frombuffer(raw, dtype=dtype).reshape(shape, order='F' if fortran_order else 'C')
  return np.array(array, dtype=dtype.newbyteorder('='), order='C')


def read_npz(path: PathLike, *, max_expansion: float = MAX_EXPANSION) -> Dict[str, np.ndarray]:
  """All arrays of an ``.npz`` file, safely; errors name the path.

  The members' declared sizes may add up to at most ``max_expansion`` times
  the file's size (plus 1 MB): checked before anything is decompressed.
  """
  path = existing_file(path)
  try:
    with format_errors(path, '.npz'), zipfile.ZipFile(path) as zf:
      infos = zf.infolist()
      declared = sum(info.file_size for info in infos)
      limit = max_expansion * os.path.getsize(path) + _SLACK_BYTES
      if declared > limit:
        raise CheckpointFormatError(
          f'members declare {declared} bytes, more than {max_expansion:g}x the file '
          f'(compressed-member bomb?); raise max_expansion if this file is genuine'
        )
      out = {}
      for info in infos:
        if info.is_dir():
          continue
        if not info.filename.endswith('.npy'):
          raise CheckpointFormatError(f'{describe_key(info.filename)}: not an .npy member')
        out[info.filename[: -len('.npy')]] = _read_member(zf, info)
      return out
  except CheckpointFormatError as e:
    if str(e).startswith(path):
      raise
    raise CheckpointFormatError(f'{path}: {e}') from None


def split_tree(arrays: Mapping[str, np.ndarray], prefix: str, *, source: str = '<arrays>') -> Params:
  """``{'params::m::n': a}`` -> ``{m: {n: a}}`` for the keys under ``prefix``."""
  tree: Params = {}
  for key, array in arrays.items():
    if not key.startswith(prefix + SEP):
      continue
    module, sep, name = key[len(prefix) + len(SEP) :].rpartition(SEP)
    if not sep or not module or not name:
      raise CheckpointFormatError(f'{source}: malformed key {describe_key(key)} (expected {prefix}::<module>::<name>)')
    tree.setdefault(module, {})[name] = array
  return tree


def decode_config(arrays: Mapping[str, np.ndarray], *, source: str) -> Optional[Dict[str, Any]]:
  """The JSON ``__config__`` entry as a dict (``None`` if absent)."""
  if CONFIG_KEY not in arrays:
    return None
  raw = arrays[CONFIG_KEY]
  if raw.dtype.kind != 'U' or raw.shape != ():
    raise CheckpointFormatError(f'{source}: __config__ must be a 0-d string')
  config = bounded_json.loads(str(raw), source=source, what='__config__')
  if not isinstance(config, dict):
    raise CheckpointFormatError(f'{source}: __config__ must be a JSON object')
  return config


def read_checkpoint(path: PathLike) -> Tuple[Params, Params, Optional[Dict[str, Any]]]:
  """Reads this project's format: ``(params, state, config)``."""
  arrays = read_npz(path)
  source = os.fspath(path)
  return (
    split_tree(arrays, 'params', source=source),
    split_tree(arrays, 'state', source=source),
    decode_config(arrays, source=source),
  )


def flatten_checkpoint(
  params: Mapping[str, Mapping[str, Any]], state: Mapping[str, Mapping[str, Any]], config: Optional[Mapping[str, Any]]
) -> Dict[str, np.ndarray]:
  """The key -> array mapping that ``save_checkpoint`` writes."""
  out: Dict[str, np.ndarray] = {}
  for prefix, tree in (('params', params), ('state', state)):
    for module, leaves in tree.items():
      for name, value in leaves.items():
        if SEP in name or not module or not name:
          raise ValueError(
            f'cannot store {prefix} {module!r}/{name!r}: names must be non-empty and the name free of {SEP!r}'
          )
        out[f'{prefix}{SEP}{module}{SEP}{name}'] = np.asarray(value)
  if config is not None:
    out[CONFIG_KEY] = np.asarray(json.dumps(config, sort_keys=True))
  return out


def save_checkpoint(
  path: PathLike,
  params: Mapping[str, Mapping[str, Any]],
  state: Mapping[str, Mapping[str, Any]],
  config: Optional[Mapping[str, Any]],
) -> None:
  """Writes ``(params, state, config)`` atomically (temp file + rename)."""
  path = os.fspath(path)
  arrays = flatten_checkpoint(params, state, config)
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(suffix='.npz.tmp', dir=directory)
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
