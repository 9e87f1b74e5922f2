"""JSON from untrusted files, with its nesting depth checked before parsing.

``json.loads`` recurses once per nesting level: 200,000 ``[`` raise a raw
``RecursionError`` (or, with a raised recursion limit, crash the
interpreter). Real checkpoint configs and safetensors headers nest at most a
few levels, so anything deeper than ``max_depth`` is refused up front.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from perceiver.checkpoints.errors import CheckpointFormatError

MAX_DEPTH = 64
# Text outside strings, then one JSON string literal (brackets inside strings
# do not nest). Matched left to right from where the last match ended, so each
# character is looked at a bounded number of times (a plain ``re.sub`` of the
# string pattern retries from every quote of an unterminated string: O(n^2)).
_OUTSIDE_THEN_STRING = re.compile(r'([^"]*)"(?:[^"\\]|\\.)*+"', re.DOTALL)


def nesting_depth(text: str) -> int:
  """The deepest ``[``/``{`` nesting of ``text`` (strings ignored), in O(len).

  Scratch memory is bounded by the chunk size, not by ``len(text)``.
  """
  counter = _DepthCounter()
  outside, pending, pos = [], 0, 0
  while True:
    match = _OUTSIDE_THEN_STRING.match(text, pos)
    if match is None:
      outside.append(text[pos:].split('"', 1)[0])  # an unterminated string ends the JSON
      break
    outside.append(match.group(1))
    pending += len(outside[-1])
    pos = match.end()
    if pending >= _CHUNK or len(outside) >= 1024:  # bounded scratch: a few small strs
      counter.add(''.join(outside))
      outside, pending = [], 0
  counter.add(''.join(outside))
  return counter.deepest


class _DepthCounter:
  """Running bracket depth over consecutive pieces of string-free JSON text."""

  def __init__(self) -> None:
    self.deepest = 0
    self.level = 0

  def add(self, piece: str) -> None:
    bare = piece.encode('utf-8', 'surrogatepass')
    for start in range(0, len(bare), _CHUNK):
      codes = np.frombuffer(bare, np.uint8, count=min(_CHUNK, len(bare) - start), offset=start)
      running = np.cumsum(_STEP[codes], dtype=np.int32)  # +1 for [ {, -1 for ] }
      self.deepest = max(self.deepest, self.level + int(running.max()))
      self.level += int(running[-1])


_CHUNK = 1 << 18
_STEP = np.zeros(256, np.int8)
_STEP[[ord('['), ord('{')]] = 1
_STEP[[ord(']'), ord('}')]] = -1


def loads(text: 'str | bytes', *, source: str, what: str, max_depth: int = MAX_DEPTH) -> Any:
  """``json.loads`` of ``text``, or a CheckpointFormatError naming ``source``."""
  try:
    if isinstance(text, bytes):
      text = text.decode('utf-8')
  except UnicodeDecodeError:
    raise CheckpointFormatError(f'{source}: {what} is not UTF-8') from None
  if nesting_depth(text) > max_depth:
    raise CheckpointFormatError(f'{source}: {what} nests deeper than {max_depth} levels')
  try:
    return json.loads(text)
  except (ValueError, RecursionError) as e:
    where = f' (line {e.lineno}, column {e.colno})' if isinstance(e, json.JSONDecodeError) else ''
    raise CheckpointFormatError(f'{source}: corrupt {what}: not valid JSON{where}') from None
