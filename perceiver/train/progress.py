"""Progress lines with an ETA for long loops (evaluation over a whole split)."""

from __future__ import annotations

import time
from typing import Callable, Optional

from absl import logging


class Progress:
  """Reports ``WHAT i/n UNIT (r UNIT/s, ETA XmYYs)`` at most every ``every_s`` seconds.

  The rate is measured from the second ``update`` on (after the first step,
  which compiles), so compilation does not inflate the ETA. Short loops
  (done within ``every_s``) report nothing.
  """

  def __init__(
    self,
    total: Optional[int],
    what: str,
    *,
    unit: str = 'batches',
    every_s: float = 10.0,
    report: Optional[Callable[[str], None]] = None,
  ):
    self.total = total
    self.what = what
    self.unit = unit
    self.every_s = every_s
    self._report = report or (lambda line: logging.info('%s', line))
    self._start: Optional[float] = None
    self._start_done = 0
    self._last = 0.0
    self._calls = 0

  def update(self, done: int) -> None:
    now = time.monotonic()
    self._calls += 1
    if self._calls <= 2:  # Before and after the first (compiling) step.
      self._start, self._start_done, self._last = now, done, now
      return
    if now - self._last < self.every_s:
      return
    self._last = now
    self._report(self.line(done, now))

  def line(self, done: int, now: Optional[float] = None) -> str:
    now = time.monotonic() if now is None else now
    elapsed = now - (self._start if self._start is not None else now)
    rate = (done - self._start_done) / elapsed if elapsed > 0 else 0.0
    if not self.total:  # Unknown length: count and rate only.
      return f'{self.what} {done:,} {self.unit} ({rate:.1f} {self.unit}/s)'
    text = f'{self.what} {done:,}/{self.total:,} {self.unit}'
    if rate > 0:
      eta = max(self.total - done, 0) / rate
      text += f' ({rate:.1f} {self.unit}/s, ETA {int(eta // 60)}m{int(eta % 60):02d}s)'
    return text
