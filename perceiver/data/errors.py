"""Errors raised on missing or unreadable dataset files.

Both carry the offending paths in their message so that a user who brings
their own copy of a dataset sees what is expected and where, instead of a
bare traceback from deep inside TFDS or tf.data.
"""

from collections.abc import Sequence


class MissingDataError(FileNotFoundError):
  """Manual-download files that a builder needs are absent."""

  def __init__(self, dataset: str, expected: Sequence[str], how_to_get: str):
    self.dataset = dataset
    self.expected = list(expected)
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
        f'unreadable or corrupt file: {path}: {reason}\n'
        "(set data_config.on_corrupt='skip' to skip and count such files)")


class CorruptCounter:
  """Skips-and-counts or raises, per the `on_corrupt` setting.

  Builders call `report(path, exc)` for every file they cannot read; with
  'skip' the file is recorded in `skipped` (and logged), with 'raise' a
  CorruptDataError naming the path is raised.
  """

  def __init__(self, on_corrupt: str, log=None):
    if on_corrupt not in ('skip', 'raise'):
      raise ValueError(
          f"on_corrupt must be 'skip' or 'raise', got {on_corrupt!r}")
    self.on_corrupt = on_corrupt
    self.skipped: list[str] = []
    self._log = log

  def report(self, path: str, exc: BaseException) -> None:
    if isinstance(exc, CorruptDataError) and exc.path == path:
      reason = exc.reason  # A reader's own diagnosis of this file.
    else:
      reason = f'{type(exc).__name__}: {exc}'
    if self.on_corrupt == 'raise':
      raise CorruptDataError(path, reason) from exc
    self.skipped.append(path)
    if self._log is not None:
      self._log.warning('skipping corrupt file %s (%s); %d skipped so far',
                        path, reason, len(self.skipped))


class SkipsCorruptFiles:
  """Builder mixin: `on_corrupt` handling and the list of skipped files."""

  _corrupt: CorruptCounter

  def _init_corrupt(self, on_corrupt: str, log) -> None:
    self._corrupt = CorruptCounter(on_corrupt, log)

  @property
  def skipped_files(self) -> list[str]:
    """Paths skipped as unreadable while building (on_corrupt='skip')."""
    return self._corrupt.skipped
