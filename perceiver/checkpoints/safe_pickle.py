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

import contextvars
import dataclasses
import io
import math
import os
import pickle
import pickletools
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from perceiver.checkpoints.errors import CheckpointFormatError, UnsafeCheckpointError, existing_file

# module path -> parameter name -> array, e.g.
# {'perceiver_encoder/~/cross_attention/attention/linear': {'w': [C, D]}}
Params = Dict[str, Dict[str, np.ndarray]]
PathLike = Union[str, os.PathLike]

# Opcodes that plain data (dicts, tuples, strings, numbers) and our allow-listed
# REDUCE/BUILD calls need. Everything else is refused by name.
_DATA_OPCODES = frozenset(
  {
    'PROTO',
    'FRAME',
    'STOP',
    'MARK',
    'POP',
    'POP_MARK',
    'DUP',
    'NONE',
    'NEWTRUE',
    'NEWFALSE',
    'INT',
    'BININT',
    'BININT1',
    'BININT2',
    'LONG',
    'LONG1',
    'LONG4',
    'FLOAT',
    'BINFLOAT',
    'STRING',
    'BINSTRING',
    'SHORT_BINSTRING',
    'BINBYTES',
    'SHORT_BINBYTES',
    'BINBYTES8',
    'BYTEARRAY8',
    'UNICODE',
    'BINUNICODE',
    'SHORT_BINUNICODE',
    'BINUNICODE8',
    'EMPTY_TUPLE',
    'TUPLE',
    'TUPLE1',
    'TUPLE2',
    'TUPLE3',
    'EMPTY_LIST',
    'LIST',
    'APPEND',
    'APPENDS',
    'EMPTY_DICT',
    'DICT',
    'SETITEM',
    'SETITEMS',
    'GET',
    'BINGET',
    'LONG_BINGET',
    'PUT',
    'BINPUT',
    'LONG_BINPUT',
    'MEMOIZE',
    'GLOBAL',
    'STACK_GLOBAL',
    'REDUCE',
    'BUILD',
  }
)
_PERSISTENT_OPCODES = frozenset({'PERSID', 'BINPERSID'})


@dataclasses.dataclass(frozen=True)
class LoadBudget:
  """Caps on what one untrusted checkpoint may make the reader do.

  The defaults fit every released checkpoint with room to spare (the golden
  pickles load with a depth cap of 2 and 2.0 bytes per input byte) while
  keeping time and memory linear in the file's size:

  * ``max_depth``: nesting of tuples/lists/dicts (depth 1 = a flat container);
  * ``max_objects``: containers and arrays built;
  * ``max_bytes_per_input_byte``: array/bytes payloads built, in total, as a
    multiple of the input's size. Each payload of a real checkpoint is stored
    once and built twice (latin-1 bytes, then the array), so its total is
    below 2x; a payload shared through the pickle memo (or a tensor view
    expanding its storage) is what pushes it above;
  * ``max_total_bytes``: an absolute cap on the same total.
  """

  max_depth: int = 32
  max_objects: int = 2_000_000
  max_bytes_per_input_byte: float = 4.0
  max_total_bytes: int = 64 << 30


DEFAULT_BUDGET = LoadBudget()


class _Meter:
  """Counts what a load built against its LoadBudget."""

  __slots__ = ('budget', 'byte_limit', 'bytes', 'objects')

  def __init__(self, budget: LoadBudget, input_size: int):
    self.budget = budget
    self.byte_limit = min(budget.max_total_bytes, int(budget.max_bytes_per_input_byte * max(input_size, 4096)))
    self.bytes = 0
    self.objects = 0

  def charge_bytes(self, n: int) -> None:
    self.bytes += n
    if self.bytes > self.byte_limit:
      raise CheckpointFormatError(
        f'refused: the file builds more than {self.byte_limit} bytes of array data '
        '(payloads shared or expanded beyond the LoadBudget)'
      )

  def charge_object(self) -> None:
    self.objects += 1
    if self.objects > self.budget.max_objects:
      raise CheckpointFormatError(f'refused: the file builds more than {self.budget.max_objects} objects (LoadBudget)')


# The meter of the load in progress (our numpy/torch stand-ins charge it).
_METER: 'contextvars.ContextVar[Optional[_Meter]]' = contextvars.ContextVar('perceiver_checkpoint_meter', default=None)


def charge_bytes(n: int) -> None:
  """Counts ``n`` bytes built by a stand-in against the current load's budget."""
  meter = _METER.get()
  if meter is not None:
    meter.charge_bytes(n)


def charge_object() -> None:
  meter = _METER.get()
  if meter is not None:
    meter.charge_object()


_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_.]{0,199}$')
_PRINTABLE_KEY = re.compile(r'^[\x20-\x7e]{0,200}$')


def describe_key(key: Any) -> str:
  """A mapping key for a message: quoted if short printable ASCII, else its size."""
  if isinstance(key, str) and _PRINTABLE_KEY.match(key):
    return repr(key)
  size = len(key) if isinstance(key, (str, bytes)) else 0
  return f'<{type(key).__name__} of length {size}>'


def describe_name(name: Any) -> str:
  """A global's name for a message: itself if a short identifier, else its size."""
  if isinstance(name, str) and _NAME.match(name):
    return name
  size = len(name) if isinstance(name, (str, bytes)) else 0
  return f'<{type(name).__name__} of length {size}>'


def _refuse_opcode(name: str) -> Callable[[Any], None]:
  def refuse(self: Any) -> None:
    raise UnsafeCheckpointError(
      f'refused pickle opcode {name}: checkpoints only need plain data and allow-listed globals'
    )

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
    raise UnsafeCheckpointError(
      f'refused BUILD on {type(target).__name__}: state may only be set on arrays, dtypes and state dicts'
    )
  _BASE_DISPATCH[pickle.BUILD[0]](self)


# Container opcodes, wrapped so that every container built is counted and its
# nesting depth known, and dict keys are plain strings. Why: a tuple nested 64
# levels deep, each level the previous one twice (memo sharing), is a 137-byte
# pickle whose hash or repr takes 2**64 steps; as a dict key it would hang the
# load. Real checkpoints only ever key dicts by str.
_NEW_CONTAINER = frozenset(
  {'EMPTY_TUPLE', 'TUPLE', 'TUPLE1', 'TUPLE2', 'TUPLE3', 'EMPTY_LIST', 'LIST', 'EMPTY_DICT', 'DICT'}
)
_FILL_CONTAINER = frozenset({'APPEND', 'APPENDS', 'SETITEM', 'SETITEMS'})


def _children(obj: Any) -> Any:
  return obj.values() if isinstance(obj, dict) else obj


def _check_keys(keys: Any) -> None:
  for key in keys:
    if type(key) is not str:  # pylint: disable=unidiomatic-typecheck
      raise CheckpointFormatError(
        f'refused dict key of type {type(key).__name__}: checkpoint mappings are keyed by strings'
      )


def _new_container(base: Callable) -> Callable:
  def handler(self: 'RestrictedUnpickler') -> None:
    if base is _BASE_DISPATCH[pickle.DICT[0]]:
      _check_keys(self.stack[0::2])  # DICT: items since the mark, k v k v ...
    base(self)
    obj = self.stack[-1]
    self._track(obj, 1 + max((self._depth(c) for c in _children(obj)), default=0))

  return handler


def _fill_container(name: str, base: Callable) -> Callable:
  def handler(self: 'RestrictedUnpickler') -> None:
    stack = self.stack
    if name == 'APPEND':
      container, new = (stack[-2] if len(stack) >= 2 else None), stack[-1:]
    elif name == 'SETITEM':
      container = stack[-3] if len(stack) >= 3 else None
      _check_keys(stack[-2:-1])
      new = stack[-1:]
    else:  # APPENDS / SETITEMS: the items since the mark; the container below it
      container = self.metastack[-1][-1] if self.metastack and self.metastack[-1] else None
      if name == 'SETITEMS':
        _check_keys(stack[0::2])
        new = stack[1::2]
      else:
        new = list(stack)
    want = list if name.startswith('APPEND') else dict
    if not isinstance(container, want):
      raise CheckpointFormatError(f'refused {name} on {type(container).__name__}')
    base(self)
    depth = 1 + max((self._depth(c) for c in new), default=0)
    entry = self._depths.get(id(container))
    if entry is None:  # a dict made by a stand-in (OrderedDict()): tracked from now on
      self._track(container, depth)
    elif depth > entry[1]:
      if entry[2]:  # already inside another container: its recorded depth would lie
        raise CheckpointFormatError(f'refused {name} that deepens an already nested container')
      self._track(container, depth)

  return handler


def _restricted_dispatch(allowed_names: frozenset) -> Dict[int, Callable]:
  """Opcode table of ``pickle._Unpickler`` cut down to ``allowed_names``."""
  table: Dict[int, Callable] = {code: _invalid_opcode(code) for code in range(256)}
  for op in pickletools.opcodes:
    code = ord(op.code)
    if op.name in allowed_names and code in _BASE_DISPATCH:
      if op.name == 'BUILD':
        table[code] = _checked_build
      elif op.name in _NEW_CONTAINER:
        table[code] = _new_container(_BASE_DISPATCH[code])
      elif op.name in _FILL_CONTAINER:
        table[code] = _fill_container(op.name, _BASE_DISPATCH[code])
      else:
        table[code] = _BASE_DISPATCH[code]
    else:
      table[code] = _refuse_opcode(op.name)
  return table


_DISPATCH_DATA = _restricted_dispatch(_DATA_OPCODES)
_DISPATCH_WITH_PERSISTENT = _restricted_dispatch(_DATA_OPCODES | _PERSISTENT_OPCODES)


class RestrictedUnpickler(pickle._Unpickler):  # pylint: disable=protected-access
  """Pure-Python unpickler limited to an allow-list of globals and opcodes.

  ``allowed`` maps ``(module, qualified name)`` to the object that name
  resolves to (our stand-in); any other global raises UnsafeCheckpointError.
  BUILD is accepted only on instances of ``buildable_types``. Containers are
  counted and their depth capped by ``budget``; dict keys must be str.
  """

  dispatch = _DISPATCH_DATA

  def __init__(
    self,
    file: io.BufferedIOBase,
    allowed: Mapping[Tuple[str, str], Any],
    persistent_load: Optional[Callable[[Any], Any]] = None,
    buildable_types: Tuple[type, ...] = (),
    budget: LoadBudget = DEFAULT_BUDGET,
  ):
    # encoding='latin1' is what numpy needs for Python-2 era array payloads.
    super().__init__(file, fix_imports=False, encoding='latin1', errors='strict')
    self._allowed = dict(allowed)
    self.buildable_types = tuple(buildable_types)
    self.budget = budget
    # id -> [container, depth, nested?]; holding the container keeps its id unique.
    self._depths: Dict[int, List[Any]] = {}
    if persistent_load is not None:
      self.dispatch = _DISPATCH_WITH_PERSISTENT
      self.persistent_load = persistent_load

  def _depth(self, obj: Any) -> int:
    entry = self._depths.get(id(obj))
    if entry is None:
      return 0
    entry[2] = True  # asked for as a child: it is (about to be) nested
    return entry[1]

  def _track(self, obj: Any, depth: int) -> None:
    if depth > self.budget.max_depth:
      raise CheckpointFormatError(f'refused: containers nested deeper than {self.budget.max_depth} levels (LoadBudget)')
    entry = self._depths.get(id(obj))
    if entry is None:
      charge_object()
      self._depths[id(obj)] = [obj, depth, False]
    else:
      entry[1] = depth

  def find_class(self, module: str, name: str) -> Any:
    try:
      return self._allowed[(module, name)]
    except (KeyError, TypeError):
      raise UnsafeCheckpointError(
        f'refused global {describe_name(module)}.{describe_name(name)}: not in the '
        'checkpoint allow-list (nothing from the file was executed)'
      ) from None


def unpickle_restricted(
  data: bytes,
  allowed: Mapping[Tuple[str, str], Any],
  *,
  source: str,
  persistent_load: Optional[Callable[[Any], Any]] = None,
  buildable_types: Tuple[type, ...] = (),
  budget: LoadBudget = DEFAULT_BUDGET,
  meter: Optional[_Meter] = None,
) -> Any:
  """Unpickles ``data`` with the allow-list; every failure names ``source``.

  ``meter`` (default: a fresh one sized to ``len(data)``) is charged for every
  container and array built; a caller reading several parts of one file (the
  torch zip reader) passes one meter sized to the whole file.
  """
  unpickler = RestrictedUnpickler(io.BytesIO(data), allowed, persistent_load, buildable_types, budget)
  token = _METER.set(meter if meter is not None else _Meter(budget, len(data)))
  try:
    return unpickler.load()
  except UnsafeCheckpointError as e:
    raise UnsafeCheckpointError(f'{source}: {e}') from None
  except CheckpointFormatError as e:
    raise CheckpointFormatError(f'{source}: {e}') from None
  except RecursionError:
    raise CheckpointFormatError(f'{source}: refused: structure nested too deeply') from None
  except MemoryError:
    raise CheckpointFormatError(f'{source}: refused: out of memory while reading') from None
  except Exception as e:  # pylint: disable=broad-except
    # EOFError, UnpicklingError, struct.error, KeyError (bad memo index), ...
    # Only the exception's type is shown: its text may quote the file's values.
    if isinstance(e, EOFError) or 'truncated' in str(e)[:200]:
      raise CheckpointFormatError(f'{source}: truncated pickle (the data ends before its STOP opcode)') from None
    raise CheckpointFormatError(f'{source}: corrupt pickle ({type(e).__name__})') from None
  finally:
    _METER.reset(token)
    unpickler._depths.clear()  # pylint: disable=protected-access


# ---------------------------------------------------------------------------
# numpy stand-ins: they only ever build numeric arrays from raw bytes.
# ---------------------------------------------------------------------------

_NUMERIC_KINDS = frozenset('biufc')
_DTYPE_SPEC = re.compile(r'^[<>|=]?(?:\?|[biufc][0-9]{0,2})$')
_MAX_NDIM = 32
_MAX_ELEMENTS = 1 << 40  # keeps size arithmetic far from overflow


def checked_dtype(spec: Any) -> np.dtype:
  """A numeric numpy dtype from a short spec such as 'f4'; anything else refused."""
  # The spec is never quoted: it may be any object (e.g. a deep tuple whose
  # repr alone would not finish).
  if not isinstance(spec, str) or not _DTYPE_SPEC.match(spec):
    raise UnsafeCheckpointError(
      f'refused dtype ({type(spec).__name__} that is not a numeric type code): only numeric dtypes are allowed'
    )
  try:
    dtype = np.dtype(spec)
  except TypeError:
    raise CheckpointFormatError('invalid numeric dtype code') from None
  if dtype.kind not in _NUMERIC_KINDS:
    raise UnsafeCheckpointError(f'refused dtype of kind {dtype.kind}: only numeric dtypes are allowed')
  return dtype


def checked_shape(shape: Any) -> Tuple[int, ...]:
  """Validates a shape tuple (non-negative Python ints, bounded rank)."""
  if not isinstance(shape, (tuple, list)) or len(shape) > _MAX_NDIM:
    raise CheckpointFormatError(
      f'invalid array shape ({type(shape).__name__}; a tuple of at most {_MAX_NDIM} sizes expected)'
    )
  for d in shape:
    if type(d) is not int or d < 0:  # pylint: disable=unidiomatic-typecheck
      raise CheckpointFormatError('invalid array shape (sizes must be non-negative ints)')
  if math.prod(shape) > _MAX_ELEMENTS:
    raise CheckpointFormatError(f'invalid array shape (more than {_MAX_ELEMENTS} elements)')
  return tuple(shape)


def _as_bytes(raw: Any) -> bytes:
  if isinstance(raw, str):  # numpy 1.x payloads unpickled with encoding='latin1'
    return raw.encode('latin1')
  if isinstance(raw, (bytes, bytearray)):
    return bytes(raw)
  raise CheckpointFormatError(f'array data must be bytes, got {type(raw).__name__}')


def array_from_bytes(raw: Any, dtype: np.dtype, shape: Tuple[int, ...], fortran_order: bool = False) -> np.ndarray:
  """A native-endian C-ordered copy of ``raw`` viewed as ``dtype[shape]``."""
  shape = checked_shape(shape)
  need = math.prod(shape) * dtype.itemsize
  raw_len = len(raw) if isinstance(raw, (str, bytes, bytearray)) else -1
  if raw_len != need:
    raise CheckpointFormatError(f'array data has {raw_len} bytes; shape {shape} of {dtype} needs {need}')
  charge_bytes(need)
  charge_object()
  raw = _as_bytes(raw)
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
      raise CheckpointFormatError(f'invalid dtype state ({type(state).__name__})')
    byteorder, subarray, names, fields = state[1:5]
    if subarray is not None or names is not None or fields is not None:
      raise UnsafeCheckpointError('refused structured dtype: only numeric dtypes are allowed')
    if byteorder in ('<', '>'):
      self.dtype = self.dtype.newbyteorder(byteorder)
    elif not isinstance(byteorder, str) or byteorder not in ('|', '='):
      raise CheckpointFormatError('invalid dtype byte order')


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
  if not isinstance(order, str) or order not in ('C', 'F'):
    raise CheckpointFormatError('invalid array order (expected C or F)')
  return array_from_bytes(buf, _resolve_dtype(dtype), shape, order == 'F')


def _codecs_encode(obj: Any, encoding: Any = 'utf-8', errors: Any = 'strict') -> bytes:
  """Stand-in for ``_codecs.encode``: only the latin-1 str->bytes that pickles use."""
  del errors
  if (
    not isinstance(obj, str)
    or not isinstance(encoding, str)
    or (encoding.lower().replace('_', '-') not in ('latin1', 'latin-1', 'iso-8859-1'))
  ):
    raise UnsafeCheckpointError('refused _codecs.encode call other than str -> latin-1 bytes')
  charge_bytes(len(obj))
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
      out[module][name] = _as_array(value, f'{where} {describe_key(module)}::{describe_key(name)}')
  return out


def _is_params_and_state(obj: Any) -> bool:
  return (
    isinstance(obj, dict)
    and 'params' in obj
    and set(obj) <= {'params', 'state'}
    and all(isinstance(v, dict) and all(isinstance(m, dict) for m in v.values()) for v in obj.values())
  )


def loads_deepmind_checkpoint(
  data: bytes, *, source: str = '<bytes>', budget: LoadBudget = DEFAULT_BUDGET
) -> Dict[str, Params]:
  """Like ``load_deepmind_checkpoint`` but from bytes already in memory."""
  obj = unpickle_restricted(data, DEEPMIND_ALLOWED, source=source, buildable_types=NUMPY_BUILDABLE, budget=budget)
  if _is_params_and_state(obj):
    params, state = obj['params'], obj.get('state', {})
  else:  # language .pickle, optical-flow and video .pystate: params alone
    params, state = obj, {}
  return {'params': _module_tree(params, f'{source}: params'), 'state': _module_tree(state, f'{source}: state')}


def load_deepmind_checkpoint(path: PathLike, *, budget: LoadBudget = DEFAULT_BUDGET) -> Dict[str, Params]:
  """Loads a released ``.pystate``/``.pickle`` safely.

  Returns ``{'params': {module: {name: np.ndarray}}, 'state': {...}}`` as plain
  dicts (``state`` is ``{}`` for the files that hold params alone). Raises
  UnsafeCheckpointError for anything outside the allow-list,
  CheckpointFormatError for corrupt or truncated files (message has the path).
  """
  return loads_deepmind_checkpoint(read_file_bytes(path), source=os.fspath(path), budget=budget)
