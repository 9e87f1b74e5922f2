"""Writes pickles opcode by opcode, for tests.

Lets the tests build files shaped exactly like DeepMind's checkpoints (Haiku
FlatMapping, numpy 1.x array reduction) and torch's ``data.pkl`` without
Haiku's private classes or torch, and write hostile pickles by hand.
"""

from __future__ import annotations

import struct
from typing import Iterable

import numpy as np

PROTO2 = b'\x80\x02'
MARK = b'('
STOP = b'.'
TUPLE = b't'
EMPTY_TUPLE = b')'
EMPTY_DICT = b'}'
SETITEMS = b'u'
REDUCE = b'R'
BUILD = b'b'
NONE = b'N'
NEWTRUE = b'\x88'
NEWFALSE = b'\x89'
BINPERSID = b'Q'


def global_(module: str, name: str) -> bytes:
  return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def unicode(s: str) -> bytes:
  raw = s.encode('utf-8')
  return b'X' + struct.pack('<I', len(raw)) + raw


def binint(i: int) -> bytes:
  return b'J' + struct.pack('<i', i)


def tuple_(*items: bytes) -> bytes:
  return MARK + b''.join(items) + TUPLE


def dict_(items: Iterable[tuple]) -> bytes:
  """EMPTY_DICT MARK k v k v ... SETITEMS (what protocol 2 writes)."""
  body = b''.join(k + v for k, v in items)
  return EMPTY_DICT + (MARK + body + SETITEMS if body else b'')


def call(func: bytes, *args: bytes) -> bytes:
  return func + tuple_(*args) + REDUCE


def latin1_bytes(raw: bytes) -> bytes:
  """bytes the way protocol 2 writes them under Python 3: _codecs.encode(str, 'latin1')."""
  return call(global_('_codecs', 'encode'), unicode(raw.decode('latin1')), unicode('latin1'))


def ndarray(a: np.ndarray, core: str = 'numpy.core') -> bytes:
  """An array as numpy 1.x pickles it with protocol 2."""
  a = np.asarray(a)
  fortran = a.flags.f_contiguous and not a.flags.c_contiguous
  raw = a.tobytes(order='F' if fortran else 'C')
  dtype = call(global_('numpy', 'dtype'), unicode(a.dtype.str[1:]), NEWFALSE, NEWTRUE)
  dtype += (
    tuple_(
      binint(3),
      unicode(a.dtype.byteorder if a.dtype.byteorder != '=' else '<'),
      NONE,
      NONE,
      NONE,
      binint(-1),
      binint(-1),
      binint(0),
    )
    + BUILD
  )
  shape = tuple_(*[binint(d) for d in a.shape])
  state = tuple_(binint(1), shape, dtype, NEWTRUE if fortran else NEWFALSE, latin1_bytes(raw))
  return (
    call(
      global_(f'{core}.multiarray', '_reconstruct'), global_('numpy', 'ndarray'), tuple_(binint(0)), latin1_bytes(b'b')
    )
    + state
    + BUILD
  )


def flat_mapping(tree: dict) -> bytes:
  """Haiku FlatMapping({module: {name: array}}) as the released files have it."""
  inner = dict_((unicode(m), dict_((unicode(n), ndarray(a)) for n, a in leaves.items())) for m, leaves in tree.items())
  return call(global_('haiku._src.data_structures', 'FlatMapping'), inner)


def pystate(params: dict, state: dict) -> bytes:
  return PROTO2 + dict_([(unicode('params'), flat_mapping(params)), (unicode('state'), flat_mapping(state))]) + STOP
