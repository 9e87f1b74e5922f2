"""Errors raised on missing or unreadable dataset files.

Both carry the offending paths in their message so that a user who brings
their own copy of a dataset sees what is expected and where, instead of a
bare traceback from deep inside TFDS or tf.data.
"""

import collections
from collections.abc import Sequence
import os


class MissingDataError(FileNotFoundError):
  """Files that a pipeline needs are absent.

  ``field`` is the config field that points at them (what the launcher tells
  the user to set): ``data.manual_dir`` for the manual-download datasets,
  ``data.train_files`` / ``data.glue_dir`` / ``data.data_dir`` elsewhere.
  """

  def __init__(self, dataset: str, expected: Sequence[str], how_to_get: str, *, field: str = 'data.manual_dir'):
    self.dataset = dataset
    self.expected = list(expected)
    self.field = field
    lines = [f'{dataset}: required file(s) not found. Expected:']
    lines += [f'  * {p}' for p in self.expected]
    lines.append(f'How to get them: {how_to_get}')
    super().__init__('\n'.join(lines))


class CorruptDataError(ValueError):
  """A dataset file exists but cannot be read (with on_corrupt='raise')."""

  def __init__(self, path: str, reason: str):
    self.path = path
    self.reason = reason
    super().__init__(
      f"unreadable or corrupt file: {path}: {reason}\n(set data_config.on_corrupt='skip' to skip and count such files)"
    )


class CorruptCounter:
  """Skips-and-counts or raises, per the `on_corrupt` setting.

  Builders call `report(path, exc)` for every file they cannot read; with
  'skip' the file is recorded in `skipped` (and logged), with 'raise' a
  CorruptDataError naming the path is raised.
  """

  def __init__(self, on_corrupt: str, log=None):
    if on_corrupt not in ('skip', 'raise'):
      raise ValueError(f"on_corrupt must be 'skip' or 'raise', got {on_corrupt!r}")
    self.on_corrupt = on_corrupt
    self.skipped: list[str] = []
    # (kind, path, reason) of every file skipped, converted or missing: the
    # build report (`write_report`).
    self.entries: list[tuple[str, str, str]] = []
    self._log = log

  def note(self, kind: str, path: str, reason: str) -> None:
    """Records a file that was not stored as found ('converted', 'missing')."""
    self.entries.append((kind, path, reason))

  def report(self, path: str, exc: BaseException) -> None:
    if isinstance(exc, CorruptDataError) and exc.path == path:
      reason = exc.reason  # A reader's own diagnosis of this file.
    else:
      reason = f'{type(exc).__name__}: {exc}'
    if self.on_corrupt == 'raise':
      raise CorruptDataError(path, reason) from exc
    self.skipped.append(path)
    self.entries.append(('skipped', path, reason))
    if self._log is not None:
      self._log.warning('skipping corrupt file %s (%s); %d skipped so far', path, reason, len(self.skipped))


class SkipsCorruptFiles:
  """Builder mixin: `on_corrupt` handling and the list of skipped files."""

  _corrupt: CorruptCounter

  def _init_corrupt(self, on_corrupt: str, log) -> None:
    self._corrupt = CorruptCounter(on_corrupt, log)

  @property
  def skipped_files(self) -> list[str]:
    """Paths skipped as unreadable while building (on_corrupt='skip')."""
    return self._corrupt.skipped

  @property
  def report_entries(self) -> list[tuple[str, str, str]]:
    """(kind, path, reason) of each file skipped / converted / missing."""
    return self._corrupt.entries


REPORT_NAME = 'build_report.tsv'


def write_report(record_dir: str, entries, log) -> str | None:
  """Writes `entries` to record_dir/build_report.tsv; WARNING summary.

  One line per file that was not stored as found, so that a user can see
  (and fix) every image, clip or mesh a build left out or changed. Returns
  the report's path, or None when there was nothing to report (then no
  file is written and a stale one is removed).
  """
  path = os.path.join(record_dir, REPORT_NAME)
  if not entries:
    if os.path.exists(path):
      os.remove(path)
    return None
  with open(path, 'w', encoding='utf-8') as f:
    f.write('kind\tpath\treason\n')
    for kind, where, reason in entries:
      clean = ' '.join(str(reason).split())  # One line per entry.
      f.write(f'{kind}\t{where}\t{clean}\n')
  counts = collections.Counter(kind for kind, _, _ in entries)
  summary = ', '.join(f'{n} {kind}' for kind, n in sorted(counts.items()))
  log.warning('build of %s: %s file(s); every one is listed in %s', record_dir, summary, path)
  return path
