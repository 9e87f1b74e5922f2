"""Error types of the checkpoint layer.

Every failure of a reader is turned into one of these, so callers (and the
fuzz tests) can rely on "a bad file raises a CheckpointError whose message
names the file", never on a stray ``KeyError`` or ``zlib.error``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator


class CheckpointError(Exception):
  """Base class of every error raised by ``perceiver.checkpoints``."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
  """The checkpoint path does not exist (also a ``FileNotFoundError``)."""


class CheckpointFormatError(CheckpointError, ValueError):
  """The file is corrupt, truncated, or not in the format it claims to be."""


class UnsafeCheckpointError(CheckpointError):
  """A pickle asked for something outside the allow-list; nothing was run."""


class CheckpointMismatchError(CheckpointError, ValueError):
  """A checkpoint does not fit the model (missing/unexpected/mis-shaped)."""


@contextlib.contextmanager
def format_errors(source: str, what: str) -> Iterator[None]:
  """Turns any non-CheckpointError raised inside into a CheckpointFormatError.

  Parsers of untrusted bytes raise all kinds of things (BadZipFile, zlib.error,
  struct.error, UnicodeDecodeError, RecursionError, MemoryError, ...); callers
  get one type, naming the file. Only the exception's type is shown: its text
  may quote values from the file.
  """
  try:
    yield
  except CheckpointError:
    raise
  except (Exception, MemoryError, RecursionError) as e:  # pylint: disable=broad-except
    raise CheckpointFormatError(f'{source}: corrupt or truncated {what} ({type(e).__name__})') from None


def existing_file(path: 'os.PathLike | str') -> str:
  """``path`` as a str, or a clear error if it is missing or a directory."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise CheckpointNotFoundError(f'{path}: no such checkpoint file')
  if os.path.isdir(path):
    raise CheckpointFormatError(f'{path}: is a directory, expected a checkpoint file')
  return path
