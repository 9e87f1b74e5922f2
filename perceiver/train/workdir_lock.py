"""One run per workdir: an advisory lock file taken before anything is written.

Two runs on one workdir (a relaunch while the old job still runs) would both
write orbax steps and append to ``metrics.jsonl``, and crash each other inside
orbax. ``WorkdirLock`` holds ``<workdir>/.lock`` with ``fcntl.flock`` for the
life of the run; the file says which PID on which host holds it, so the
second run exits at once naming the holder. The kernel drops a flock when its
holder dies (even by SIGKILL), so a lock left by a dead run is never stale.
Filesystems without flock fall back to creating the file with ``O_EXCL``;
there a lock whose PID no longer runs on this host is taken over.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from typing import Optional, Tuple

LOCK_NAME = '.lock'
# errno values that mean "this workdir cannot take more data".
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
READ_ONLY = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


class WorkdirError(RuntimeError):
  """The workdir cannot be used: held by another run, read-only, or full."""


def _holder(path: str) -> Tuple[str, str]:
  try:
    with open(path, encoding='utf-8', errors='replace') as f:
      text = f.read(200).split()
  except OSError:
    text = []
  pid = text[0] if text and text[0].isdigit() else '?'
  host = text[1] if len(text) > 1 else '?'
  return pid, host


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def unwritable_error(workdir: str, error: OSError) -> WorkdirError:
  """The one-line error for a full or read-only workdir."""
  if error.errno in NO_SPACE:
    why = 'is full (no space left on its device)'
    fix = 'free space or use another --workdir; the checkpoints already there are intact'
  else:
    why = 'is read-only or not writable'
    fix = 'use a writable --workdir (--mode=eval can read a read-only one and prints its results)'
  where = getattr(error, 'filename', None) or workdir
  return WorkdirError(f'workdir {workdir} {why} ({os.strerror(error.errno)}: {where}); {fix}')


class WorkdirLock:
  """``<workdir>/.lock`` held for the run; ``release()`` (or exit) frees it."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_NAME)
    self._fd: Optional[int] = None
    self._exclusive_file = False

  def acquire(self) -> 'WorkdirLock':
    try:
      os.makedirs(self.workdir, exist_ok=True)
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise unwritable_error(self.workdir, e) from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(fd)
      raise self._busy() from None
    except OSError as e:
      os.close(fd)
      if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
        raise unwritable_error(self.workdir, e) from None
      return self._acquire_exclusive_file()
    self._fd = fd
    try:
      self._write_owner(fd)
    except OSError as e:
      self.release()
      raise unwritable_error(self.workdir, e) from None
    return self

  def _acquire_exclusive_file(self) -> 'WorkdirLock':
    """No flock here (some network filesystems): O_EXCL + PID/host, stale if dead."""
    for _ in range(2):
      pid, host = _holder(self.path)
      if pid == '?' or (host == socket.gethostname() and not _pid_alive(int(pid))):
        try:  # empty (the flock attempt just created it) or its holder is gone: stale
          os.unlink(self.path)
        except FileNotFoundError:
          pass
      try:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
      except FileExistsError:
        if _holder(self.path)[0] == '?':
          continue
        raise self._busy() from None
      self._fd, self._exclusive_file = fd, True
      self._write_owner(fd)
      return self
    raise self._busy()

  def _write_owner(self, fd: int) -> None:
    os.ftruncate(fd, 0)
    os.write(fd, f'{os.getpid()} {socket.gethostname()}\n'.encode())
    os.fsync(fd)

  def _busy(self) -> WorkdirError:
    pid, host = _holder(self.path)
    return WorkdirError(
      f'workdir {self.workdir} is in use by another run (PID {pid} on host {host}, '
      f'lock {self.path}); wait for it to finish or stop it, or use another --workdir'
    )

  def release(self) -> None:
    if self._fd is None:
      return
    try:
      if self._exclusive_file:
        os.unlink(self.path)
      else:
        os.ftruncate(self._fd, 0)  # the file stays: unlinking a flock file races
    except OSError:
      pass
    finally:
      os.close(self._fd)  # drops the flock
      self._fd = None

  def __enter__(self) -> 'WorkdirLock':
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def is_writable(workdir: str) -> bool:
  """Whether files can be created in ``workdir`` (creating it if absent)."""
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError:
    return False
  return os.access(workdir, os.W_OK | os.X_OK)


def workdir_error_in(error: BaseException, workdir: str) -> Optional[WorkdirError]:
  """A WorkdirError for a full/read-only disk found anywhere in ``error``'s chain.

  orbax reports a failed async write wrapped in its own exceptions; the
  OSError with the errno is somewhere in the cause/context chain.
  """
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in NO_SPACE | READ_ONLY:
      return unwritable_error(workdir, error)
    error = error.__cause__ or error.__context__
  return None
