"""One run per workdir; full and read-only workdirs give one-line errors."""

import errno
import json
import os
import socket
import subprocess
import time

import pytest

from perceiver import train
from perceiver.train import checkpoint as checkpoint_lib
from perceiver.train import workdir_lock
from perceiver.train.workdir_lock import WorkdirError, WorkdirLock
from . import helpers


def _config(**overrides):
  return helpers.config_with(**overrides)


def test_second_holder_is_refused_naming_pid_and_host(tmp_path):
  with WorkdirLock(str(tmp_path)):
    with pytest.raises(WorkdirError) as error:
      WorkdirLock(str(tmp_path)).acquire()
    message = str(error.value)
    assert f'PID {os.getpid()} on host {socket.gethostname()}' in message
    assert '\n' not in message
  WorkdirLock(str(tmp_path)).acquire().release()  # released on exit


def test_lock_of_a_dead_run_is_not_stale(tmp_path):
  (tmp_path / '.lock').write_text('999999999 some-host\n')  # a SIGKILLed run's file
  lock = WorkdirLock(str(tmp_path)).acquire()
  assert (tmp_path / '.lock').read_text().split()[0] == str(os.getpid())
  lock.release()


def test_without_flock_a_dead_holder_is_taken_over_and_a_live_one_refused(tmp_path, monkeypatch):
  def no_flock(fd, op):
    raise OSError(errno.ENOLCK, 'No locks available')

  monkeypatch.setattr(workdir_lock.fcntl, 'flock', no_flock)
  host = socket.gethostname()
  (tmp_path / '.lock').write_text(f'999999999 {host}\n')
  lock = WorkdirLock(str(tmp_path)).acquire()
  with pytest.raises(WorkdirError, match=f'PID {os.getpid()} on host'):
    WorkdirLock(str(tmp_path)).acquire()
  lock.release()
  assert not (tmp_path / '.lock').exists()


@pytest.mark.parametrize('code, words', [(errno.ENOSPC, 'is full'), (errno.EROFS, 'read-only')])
def test_full_and_read_only_errors_are_one_line(code, words):
  wrapped = RuntimeError('orbax: async save failed')
  wrapped.__cause__ = OSError(code, os.strerror(code), '/runs/x/checkpoints/3')
  error = workdir_lock.workdir_error_in(wrapped, '/runs/x')
  assert error is not None and words in str(error) and '/runs/x' in str(error)
  assert '\n' not in str(error)
  assert workdir_lock.workdir_error_in(ValueError('unrelated'), '/runs/x') is None


def test_a_run_on_a_held_workdir_exits_at_once_with_the_holder(tmp_path):
  workdir = str(tmp_path / 'run')
  with WorkdirLock(workdir):
    start = time.monotonic()
    proc = helpers.run_main('configs/mnist.py:smoke', workdir, timeout=300)
    elapsed = time.monotonic() - start
  print(f'\nsecond run on a held workdir exited after {elapsed:.1f} s (rc {proc.returncode})')
  assert proc.returncode == 1, proc.stderr[-2000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: workdir') and f'PID {os.getpid()} on host' in last, last
  assert 'Traceback' not in proc.stderr
  # It stopped before writing anything.
  assert sorted(os.listdir(workdir)) == ['.lock']


def test_disk_full_mid_run_is_one_line_and_loses_nothing(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  real_save = checkpoint_lib.Checkpointer.save

  def save(self, step, state, meta, wait=False):
    if step >= 2:
      raise OSError(errno.ENOSPC, 'No space left on device', os.path.join(workdir, 'checkpoints', str(step)))
    return real_save(self, step, state, meta, wait=True)

  monkeypatch.setattr(checkpoint_lib.Checkpointer, 'save', save)
  with pytest.raises(WorkdirError, match='is full') as error:
    train.train_and_evaluate(_config(**{'checkpoint.every_steps': 1, 'train.num_steps': 3}), workdir, 'train')
  assert '\n' not in str(error.value) and workdir in str(error.value)
  monkeypatch.undo()
  # Step 1 is intact and the lock is free: the same command resumes from it.
  assert checkpoint_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), 5).all_steps() == [1]
  result = train.train_and_evaluate(_config(**{'train.num_steps': 3}), workdir, 'train')
  assert result['train']['loss'] > 0
  assert [r['step'] for r in helpers.read_metrics(workdir)][-1] == 3


def test_eval_on_a_read_only_workdir_writes_nothing_and_prints(tmp_path, monkeypatch, capsys):
  workdir = str(tmp_path)
  train.train_and_evaluate(_config(**{'train.num_steps': 2}), workdir, 'train')

  def snapshot():
    return {
      os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns for d, _, files in os.walk(workdir) for f in files
    }

  before = snapshot()
  # Running as root, chmod cannot make a directory read-only; the writability
  # probe is what decides, so it is the one faked here.
  monkeypatch.setattr(workdir_lock, 'is_writable', lambda path: False)
  capsys.readouterr()
  config = _config(**{'train.num_steps': 2})
  result = train.train_and_evaluate(config, workdir, 'eval')
  printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert printed['step'] == 2
  assert printed[config.eval.split]['top1'] == result['eval']['top1']
  assert snapshot() == before


def _last_step(workdir):
  return max(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())


@pytest.mark.slow
def test_two_concurrent_runs_second_exits_first_is_bitwise_a_run_alone(tmp_path):
  shared, alone = str(tmp_path / 'shared'), str(tmp_path / 'alone')
  first = subprocess.Popen(
    helpers.main_command('configs/mnist.py:smoke', shared),
    cwd=helpers.REPO,
    env=helpers.subprocess_env(),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )
  try:
    lock = os.path.join(shared, '.lock')
    deadline = time.monotonic() + 600
    while not (os.path.exists(lock) and os.path.getsize(lock)):
      assert first.poll() is None and time.monotonic() < deadline, 'first run never took the lock'
      time.sleep(0.2)
    start = time.monotonic()
    second = helpers.run_main('configs/mnist.py:smoke', shared, timeout=600)
    elapsed = time.monotonic() - start
    assert first.poll() is None, 'the first run ended before the second was refused'
    _, first_err = first.communicate(timeout=900)
  finally:
    if first.poll() is None:
      first.kill()
  print(f'\nsecond run exited after {elapsed:.1f} s with: {second.stderr.strip().splitlines()[-1]}')
  assert second.returncode == 1 and f'PID {first.pid} on host' in second.stderr
  assert first.returncode == 0, first_err[-2000:]
  assert helpers.run_main('configs/mnist.py:smoke', alone, timeout=900).returncode == 0
  step = _last_step(shared)
  assert step == _last_step(alone)
  assert helpers.saved_meta(shared, step)['fingerprint'] == helpers.saved_meta(alone, step)['fingerprint']
  losses = lambda workdir: [(r['step'], r['loss']) for r in helpers.read_metrics(workdir)]  # pylint: disable=unnecessary-lambda-assignment
  assert losses(shared) == losses(alone)  # one writer: no interleaved metrics.jsonl
