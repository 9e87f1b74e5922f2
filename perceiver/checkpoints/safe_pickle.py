"""Loads DeepMind's released Perceiver checkpoints without running their code.

The released files are Python pickles (protocol 2): ``*.pystate`` holds
``{'params': FlatMapping, 'state': FlatMapping}`` (the optical-flow and video
files hold the params mapping alone), ``language_perceiver_io_bytes.pickle``
holds the params mapping alone. ``pickle.load`` on such a file can run
anything the file names, so we never call it. Instead a pure-Python unpickler

* resolves globals only from an explicit allow-list, mapping each allowed name
  to a plain stand-in of ours (Haiku's ``FlatMapping`` -> ``dict``; numpy's
  ``_reconstruct``/``dtype`` -> validating builders that only ever produce
  numeric ``np.ndarray``), so neither Haiku's private classes nor numpy's
  unpickling hooks are involved;
* executes only the opcodes plain data needs (no ``INST``/``OBJ``/``NEWOBJ``,
  no extension-registry or buffer opcodes; persistent ids only where a reader
  such as the torch-zip one supplies a validating ``persistent_load``).

``REDUCE`` can therefore only ever call one of our stand-ins: a payload such as
``os.system``/``builtins.eval``/``subprocess.Popen`` is refused when its name
is looked up, before anything could be called. We use the pure-Python
``pickle._Unpickler`` (rather than the C one) because its memo is a dict and
its opcode table can be restricted: the C unpickler pre-allocates its memo
from the index a ``LONG_BINPUT`` names, which a crafted 10-byte file can turn
into a multi-gigabyte allocation.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
import re
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from perceiver.checkpoints.errors import (CheckpointFormatError,
                                          UnsafeCheckpointError, existing_file)

# module path -> parameter name -> array, e.g.
# {'perceiver_encoder/~/cross_attention/attention/linear': {'w': [C, D]}}
Params = Dict[str, Dict[str, np.ndarray]]
PathLike = Union[str, os.PathLike]

# Opcodes that plain data (dicts, tuples, strings, numbers) and our allow-listed
# REDUCE/BUILD calls need. Everything else is refused by name.
_DATA_OPCODES = frozenset({
    'PROTO', 'FRAME', 'STOP', 'MARK', 'POP', 'POP_MARK', 'DUP',
    'NONE', 'NEWTRUE', 'NEWFALSE', 'INT', 'BININT', 'BININT1', 'BININT2',
    'LONG', 'LONG1', 'LONG4', 'FLOAT', 'BINFLOAT',
    'STRING', 'BINSTRING', 'SHORT_BINSTRING', 'BINBYTES', 'SHORT_BINBYTES',
    'BINBYTES8', 'BYTEARRAY8', 'UNICODE', 'BINUNICODE', 'SHORT_BINUNICODE',
    'BINUNICODE8',
    'EMPTY_TUPLE', 'TUPLE', 'TUPLE1', 'TUPLE2', 'TUPLE3', 'EMPTY_LIST', 'LIST',
    'APPEND', 'APPENDS', 'EMPTY_DICT', 'DICT', 'SETITEM', 'SETITEMS',
    'EMPTY_SET', 'ADDITEMS', 'FROZENSET',
    'GET', 'BINGET', 'LONG_BINGET', 'PUT', 'BINPUT', 'LONG_BINPUT', 'MEMOIZE',
    'GLOBAL', 'STACK_GLOBAL', 'REDUCE', 'BUILD',
})
_PERSISTENT_OPCODES = frozenset({'PERSID', 'BINPERSID'})


def _refuse_opcode(name: str) -> Callable[[Any], None]:
  def refuse(self: Any) -> None:
    raise UnsafeCheckpointError(f'refused pickle opcode {name}: checkpoints only '
                                'need plain data and allow-listed globals')
  return refuse


def _invalid_opcode(code: int) -> Callable[[Any], None]:
  def invalid(self: Any) -> None:
    raise CheckpointFormatError(f'invalid pickle opcode byte 0x{code:02x}')
  return invalid


_BASE_DISPATCH = pickle._Unpickler.dispatch  # pylint: disable=protected-access


def _checked_build(self: 'RestrictedUnpickler') -> None:
  """BUILD only on instances of our builder classes (their own __setstate__).

  Plain BUILD would set attributes (``__defaults__``, slots) on whatever is on
  the stack, e.g. on our stand-in functions, and so leak into later loads.
  """
  target = self.stack[-2] if len(self.stack) >= 2 else None  # [..., instance, state]
  if not isinstance(target, self.buildable_types):
    raise UnsafeCheckpointError(f'refused BUILD on {type(target).__name__}: state may only be '
                                'set on arrays, dtypes and state dicts')
  _BASE_DISPATCH[pickle.BUILD[0]](self)


def _restricted_dispatch(allowed_names: frozenset) -> Dict[int, Callable]:
  """Opcode table of ``pickle._Unpickler`` cut down to ``allowed_names``."""
  table: Dict[int, Callable] = {code: _invalid_opcode(code) for code in range(256)}
  for op in pickletools.opcodes:
    code = ord(op.code)
    if op.name in allowed_names and code in _BASE_DISPATCH:
      table[code] = _checked_build if op.name == 'BUILD' else _BASE_DISPATCH[code]
    else:
      table[code] = _refuse_opcode(op.name)
  return table


_DISPATCH_DATA = _restricted_dispatch(_DATA_OPCODES)
_DISPATCH_WITH_PERSISTENT = _restricted_dispatch(_DATA_OPCODES | _PERSISTENT_OPCODES)


class RestrictedUnpickler(pickle._Unpickler):  # pylint: disable=protected-access
  """Pure-Python unpickler limited to an allow-list of globals and opcodes.

  ``allowed`` maps ``(module, qualified name)`` to the object that name
  resolves to (our stand-in); any other global raises UnsafeCheckpointError.
  BUILD is accepted only on instances of ``buildable_types``.
  """

  dispatch = _DISPATCH_DATA

  def __init__(self, file: io.BufferedIOBase,
               allowed: Mapping[Tuple[str, str], Any],
               persistent_load: Optional[Callable[[Any], Any]] = None,
               buildable_types: Tuple[type, ...] = ()):
    # encoding='latin1' is what numpy needs for Python-2 era array payloads.
    super().__init__(file, fix_imports=False, encoding='latin1', errors='strict')
    self._allowed = dict(allowed)
    self.buildable_types = tuple(buildable_types)
    if persistent_load is not None:
      self.dispatch = _DISPATCH_WITH_PERSISTENT
      self.persistent_load = persistent_load

  def find_class(self, module: str, name: str) -> Any:
    try:
      return self._allowed[(module, name)]
    except (KeyError, TypeError):
      raise UnsafeCheckpointError(
          f'refused global {module}.{name}: not in the checkpoint allow-list '
          '(nothing from the file was executed)') from None


def unpickle_restricted(data: bytes, allowed: Mapping[Tuple[str, str], Any], *,
                        source: str,
                        persistent_load: Optional[Callable[[Any], Any]] = None,
                        buildable_types: Tuple[type, ...] = ()) -> Any:
  """Unpickles ``data`` with the allow-list; every failure names ``source``."""
  unpickler = RestrictedUnpickler(io.BytesIO(data), allowed, persistent_load, buildable_types)
  try:
    return unpickler.load()
  except UnsafeCheckpointError as e:
    raise UnsafeCheckpointError(f'{source}: {e}') from None
  except CheckpointFormatError as e:
    raise CheckpointFormatError(f'{source}: {e}') from None
  except Exception as e:  # pylint: disable=broad-except
    # EOFError, UnpicklingError, struct.error, KeyError (bad memo index), ...
    if isinstance(e, EOFError) or 'truncated' in str(e):
      raise CheckpointFormatError(
          f'{source}: truncated pickle (the data ends before its STOP opcode)') from None
    raise CheckpointFormatError(
        f'{source}: corrupt pickle ({type(e).__name__}: {e})') from None


# ---------------------------------------------------------------------------
# numpy stand-ins: they only ever build numeric arrays from raw bytes.
# ---------------------------------------------------------------------------

_NUMERIC_KINDS = frozenset('biufc')
_DTYPE_SPEC = re.compile(r'^[<>|=]?(?:\?|[biufc][0-9]{0,2})$')
_MAX_NDIM = 32


def checked_dtype(spec: Any) -> np.dtype:
  """A numeric numpy dtype from a short spec such as 'f4'; anything else refused."""
  if not isinstance(spec, str) or not _DTYPE_SPEC.match(spec):
    raise UnsafeCheckpointError(f'refused dtype {spec!r}: only numeric dtypes are allowed')
  try:
    dtype = np.dtype(spec)
  except TypeError as e:
    raise CheckpointFormatError(f'invalid dtype {spec!r}: {e}') from None
  if dtype.kind not in _NUMERIC_KINDS:
    raise UnsafeCheckpointError(f'refused dtype {spec!r}: only numeric dtypes are allowed')
  return dtype


def checked_shape(shape: Any) -> Tuple[int, ...]:
  """Validates a shape tuple (non-negative Python ints, bounded rank)."""
  if not isinstance(shape, (tuple, list)) or len(shape) > _MAX_NDIM:
    raise CheckpointFormatError(f'invalid array shape {shape!r}')
  for d in shape:
    if type(d) is not int or d < 0:  # pylint: disable=unidiomatic-typecheck
      raise CheckpointFormatError(f'invalid array shape {shape!r}')
  return tuple(shape)


def _as_bytes(raw: Any) -> bytes:
  if isinstance(raw, str):  # numpy 1.x payloads unpickled with encoding='latin1'
    return raw.encode('latin1')
  if isinstance(raw, (bytes, bytearray)):
    return bytes(raw)
  raise CheckpointFormatError(f'array data must be bytes, got {type(raw).__name__}')


def array_from_bytes(raw: Any, dtype: np.dtype, shape: Tuple[int, ...],
                     fortran_order: bool = False) -> np.ndarray:
  """A native-endian C-ordered copy of ``raw`` viewed as ``dtype[shape]``."""
  raw = _as_bytes(raw)
  shape = checked_shape(shape)
  need = math.prod(shape) * dtype.itemsize
  if len(raw) != need:
    raise CheckpointFormatError(
        f'array data has {len(raw)} bytes; shape {shape} of {dtype} needs {need}')
  array = np.frombuffer(raw, dtype=dtype).reshape(shape, order='F' if fortran_order else 'C')
  return np.array(array, dtype=dtype.newbyteorder('='), order='C')


class _NDArrayType:
  """Stands in for ``numpy.ndarray``; only accepted as ``_reconstruct``'s subtype."""

  __slots__ = ()

  def __repr__(self) -> str:
    return '<numpy.ndarray stand-in>'


_NDARRAY = _NDArrayType()


class _DTypeBuilder:
  """Stands in for ``numpy.dtype(spec, align, copy)`` plus its ``__setstate__``."""

  __slots__ = ('dtype',)

  def __init__(self, spec: Any, align: Any = False, copy: Any = True):
    del align, copy  # irrelevant for the plain numeric dtypes we accept
    self.dtype = checked_dtype(spec)

  def __setstate__(self, state: Any) -> None:
    # numpy's dtype state: (version, byteorder, subarray, names, fields,
    # elsize, alignment, flags[, metadata]).
    if not isinstance(state, tuple) or len(state) not in (8, 9):
      raise CheckpointFormatError(f'invalid dtype state {state!r}')
    byteorder, subarray, names, fields = state[1:5]
    if subarray is not None or names is not None or fields is not None:
      raise UnsafeCheckpointError('refused structured dtype: only numeric dtypes are allowed')
    if byteorder in ('<', '>'):
      self.dtype = self.dtype.newbyteorder(byteorder)
    elif byteorder not in ('|', '='):
      raise CheckpointFormatError(f'invalid dtype byte order {byteorder!r}')


def _resolve_dtype(dtype: Any) -> np.dtype:
  if isinstance(dtype, _DTypeBuilder):
    return dtype.dtype
  raise CheckpointFormatError(f'expected a numpy dtype, got {type(dtype).__name__}')


class _ArrayBuilder:
  """Result of our ``_reconstruct``; its ``__setstate__`` (BUILD) makes the array."""

  __slots__ = ('array',)

  def __init__(self) -> None:
    self.array: Optional[np.ndarray] = None

  def __setstate__(self, state: Any) -> None:
    if self.array is not None:
      raise CheckpointFormatError('array state set twice')
    if not isinstance(state, tuple) or len(state) not in (4, 5):
      raise CheckpointFormatError('invalid ndarray state')
    shape, dtype, fortran_order, raw = state[-4:]
    if not isinstance(fortran_order, bool):
      raise CheckpointFormatError('invalid ndarray state (fortran flag)')
    self.array = array_from_bytes(raw, _resolve_dtype(dtype), shape, fortran_order)


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> _ArrayBuilder:
  """Stand-in for ``numpy.core.multiarray._reconstruct``."""
  del shape, typecode  # numpy ignores them too; BUILD carries the real state
  if subtype is not _NDARRAY:
    raise UnsafeCheckpointError('refused _reconstruct of a non-ndarray type')
  return _ArrayBuilder()


def _scalar(dtype: Any, raw: Any = None) -> np.ndarray:
  """Stand-in for ``numpy.core.multiarray.scalar``: a 0-d array."""
  return array_from_bytes(raw, _resolve_dtype(dtype), ())


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
  """Stand-in for ``numpy.core.numeric._frombuffer`` (protocol-5 arrays, in-band)."""
  if order not in ('C', 'F'):
    raise CheckpointFormatError(f'invalid array order {order!r}')
  return array_from_bytes(buf, _resolve_dtype(dtype), shape, order == 'F')


def _codecs_encode(obj: Any, encoding: Any = 'utf-8', errors: Any = 'strict') -> bytes:
  """Stand-in for ``_codecs.encode``: only the latin-1 str->bytes that pickles use."""
  del errors
  if not isinstance(obj, str) or not isinstance(encoding, str) or (
      encoding.lower().replace('_', '-') not in ('latin1', 'latin-1', 'iso-8859-1')):
    raise UnsafeCheckpointError('refused _codecs.encode call other than str -> latin-1 bytes')
  return obj.encode('latin1')


def _flat_mapping(*args: Any) -> dict:
  """Stand-in for Haiku's ``FlatMapping(mapping)``: a plain dict copy."""
  if len(args) != 1 or not isinstance(args[0], dict):
    raise CheckpointFormatError('FlatMapping expects exactly one dict argument')
  return dict(args[0])


NUMPY_ALLOWED: Dict[Tuple[str, str], Any] = {}
for _core in ('numpy.core', 'numpy._core'):  # numpy 2 renamed numpy.core
  NUMPY_ALLOWED[(f'{_core}.multiarray', '_reconstruct')] = _reconstruct
  NUMPY_ALLOWED[(f'{_core}.multiarray', 'scalar')] = _scalar
  NUMPY_ALLOWED[(f'{_core}.numeric', '_frombuffer')] = _frombuffer
del _core
NUMPY_ALLOWED[('numpy', 'ndarray')] = _NDARRAY
NUMPY_ALLOWED[('numpy', 'dtype')] = _DTypeBuilder
NUMPY_ALLOWED[('_codecs', 'encode')] = _codecs_encode
NUMPY_BUILDABLE = (_ArrayBuilder, _DTypeBuilder)

# The globals DeepMind's released checkpoints reference (pickletools.dis of the
# files shows exactly: haiku._src.data_structures.FlatMapping,
# numpy.core.multiarray._reconstruct, numpy.ndarray, numpy.dtype,
# _codecs.encode); plus numpy-2 / protocol-5 spellings of the same data.
DEEPMIND_ALLOWED: Dict[Tuple[str, str], Any] = dict(NUMPY_ALLOWED)
DEEPMIND_ALLOWED[('haiku._src.data_structures', 'FlatMapping')] = _flat_mapping
DEEPMIND_ALLOWED[('haiku.data_structures', 'FlatMapping')] = _flat_mapping


# ---------------------------------------------------------------------------
# File-level API.
# ---------------------------------------------------------------------------


def read_file_bytes(path: PathLike) -> bytes:
  """Reads a whole checkpoint file; a missing file gets a clear error."""
  with open(existing_file(path), 'rb') as f:
    return f.read()


def _as_array(value: Any, where: str) -> np.ndarray:
  if isinstance(value, _ArrayBuilder):
    if value.array is None:
      raise CheckpointFormatError(f'{where}: array without data')
    return value.array
  if isinstance(value, np.ndarray):
    return value
  raise CheckpointFormatError(f'{where}: expected an array, got {type(value).__name__}')


def _module_tree(tree: Any, where: str) -> Params:
  """Validates ``{module: {name: array}}`` and returns it as fresh plain dicts."""
  if not isinstance(tree, dict):
    raise CheckpointFormatError(f'{where}: expected a mapping, got {type(tree).__name__}')
  out: Params = {}
  for module, leaves in tree.items():
    if not isinstance(module, str) or not isinstance(leaves, dict):
      raise CheckpointFormatError(f'{where}: expected {{module: {{name: array}}}}')
    out[module] = {}
    for name, value in leaves.items():
      if not isinstance(name, str):
        raise CheckpointFormatError(f'{where}: parameter names must be strings')
      out[module][name] = _as_array(value, f'{where} {module}::{name}')
  return out


def _is_params_and_state(obj: Any) -> bool:
  return (isinstance(obj, dict) and 'params' in obj and set(obj) <= {'params', 'state'}
          and all(isinstance(v, dict) and all(isinstance(m, dict) for m in v.values())
                  for v in obj.values()))


def loads_deepmind_checkpoint(data: bytes, *, source: str = '<bytes>') -> Dict[str, Params]:
  """Like ``load_deepmind_checkpoint`` but from bytes already in memory."""
  obj = unpickle_restricted(data, DEEPMIND_ALLOWED, source=source,
                            buildable_types=NUMPY_BUILDABLE)
  if _is_params_and_state(obj):
    params, state = obj['params'], obj.get('state', {})
  else:  # language .pickle, optical-flow and video .pystate: params alone
    params, state = obj, {}
  return {'params': _module_tree(params, f'{source}: params'),
          'state': _module_tree(state, f'{source}: state')}


def load_deepmind_checkpoint(path: PathLike) -> Dict[str, Params]:
  """Loads a released ``.pystate``/``.pickle`` safely.

  Returns ``{'params': {module: {name: np.ndarray}}, 'state': {...}}`` as plain
  dicts (``state`` is ``{}`` for the files that hold params alone). Raises
  UnsafeCheckpointError for anything outside the allow-list,
  CheckpointFormatError for corrupt or truncated files (message has the path).
  """
  return loads_deepmind_checkpoint(read_file_bytes(path), source=os.fspath(path))
