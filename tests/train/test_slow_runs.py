"""Runs in subprocesses: 2 processes vs 1, SIGKILL + restart, a dead peer,
the full quickstart. All marked slow (minutes each on 2 CPU cores)."""

import json
import os
import random
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

from . import helpers

pytestmark = pytest.mark.slow


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _multihost_flags(port: int, process_id: int, heartbeat_s: int = 100):
  return [
    '--config.parallel.multihost=True',
    f'--config.parallel.coordinator_address=127.0.0.1:{port}',
    '--config.parallel.num_processes=2',
    f'--config.parallel.process_id={process_id}',
    f'--config.parallel.heartbeat_timeout_s={heartbeat_s}',
  ]


def _start(config, workdir, *overrides, mode='train'):
  return subprocess.Popen(
    helpers.main_command(config, workdir, *overrides, mode=mode),
    cwd=helpers.REPO,
    env=helpers.subprocess_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def test_two_processes_match_one_process(tmp_path):
  common = ['--config.train.num_steps=3', '--config.train.batch_size=8', '--config.eval.batch_size=200']
  single = str(tmp_path / 'single')
  proc = helpers.run_main('configs/mnist.py:smoke', single, *common, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]

  multi = str(tmp_path / 'multi')
  port = _free_port()
  procs = [
    _start('configs/mnist.py:smoke', multi, *common, *_multihost_flags(port, i), mode='train_and_eval')
    for i in range(2)
  ]
  outputs = [p.communicate(timeout=900)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  assert '2 processes' in outputs[0]

  ref = [r['loss'] for r in helpers.read_metrics(single)]
  got = [r['loss'] for r in helpers.read_metrics(multi)]
  assert len(ref) == len(got) == 3
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  # Both processes fed their half of every global batch: the eval saw all
  # 1,000 test digits exactly once.
  evals = helpers.read_metrics(multi, 'test')
  assert evals[-1]['num_examples'] == 1000


def _wait_until(proc, ready, what: str, timeout=900):
  """Polls `ready()` while `proc` runs; fails if it ends or time runs out."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert proc.poll() is None, f'run ended before {what}'
    if ready():
      return
    time.sleep(0.02)
  raise TimeoutError(f'{what} not reached')


def _wait_for_step(proc, workdir, step, timeout=900):
  path = os.path.join(workdir, 'metrics.jsonl')

  def logged():
    if not os.path.exists(path):
      return False
    with open(path) as f:
      steps = [json.loads(l)['step'] for l in f if l.endswith('\n')]
    return bool(steps) and max(steps) >= step

  _wait_until(proc, logged, f'step {step}', timeout)


def _finished_checkpoints(workdir: str) -> list[int]:
  """Steps whose checkpoint is committed (orbax renames a step's temporary
  directory to the bare step number only once every process has written)."""
  path = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(path):
    return []
  return sorted(int(d) for d in os.listdir(path) if d.isdigit())


def _wait_for_checkpoint(proc, workdir, timeout=900):
  _wait_until(proc, lambda: bool(_finished_checkpoints(workdir)), 'a committed checkpoint', timeout)


def _restored_step(output: str) -> int:
  """The step a run's log says it restored; 0 if it started afresh."""
  if 'Restored checkpoint at step ' not in output:
    return 0
  return int(output.split('Restored checkpoint at step ')[1].split()[0])


def test_sigkill_at_random_points_then_restart_is_bitwise_identical(tmp_path):
  num_steps = 30
  overrides = [
    f'--config.train.num_steps={num_steps}',
    '--config.checkpoint.every_steps=3',
    '--config.checkpoint.max_to_keep=3',
  ]
  straight = str(tmp_path / 'straight')
  proc = helpers.run_main('configs/mnist.py:smoke', straight, *overrides, mode='train', timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]

  killed = str(tmp_path / 'killed')
  kill_points = sorted(random.Random(0).sample(range(4, num_steps - 2), 3))
  resumed_from = []  # The step each restart restored (0: none yet).
  for kill_at in kill_points:
    proc = _start('configs/mnist.py:smoke', killed, *overrides)
    _wait_for_step(proc, killed, kill_at)
    proc.send_signal(signal.SIGKILL)
    out = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL
    resumed_from.append(_restored_step(out))
  proc = _start('configs/mnist.py:smoke', killed, *overrides)
  out = proc.communicate(timeout=900)[0]
  assert proc.returncode == 0, out[-3000:]
  # Each restart resumed from a checkpoint and continued the step count.
  resumed_from.append(_restored_step(out))
  print(
    f'SIGKILL at steps {kill_points}: {len(kill_points)} kills survived; the runs started from steps {resumed_from}'
  )
  # From a finished checkpoint (every 3 steps; 0 if the kill came before
  # the first save was complete), never going back.
  assert resumed_from[0] == 0 and resumed_from[-1] > 0
  assert all(s < num_steps and s % 3 == 0 for s in resumed_from)
  assert resumed_from == sorted(resumed_from)
  records = helpers.read_metrics(killed)
  assert [r['step'] for r in records] == list(range(1, num_steps + 1))
  assert helpers.saved_meta(killed, num_steps)['fingerprint'] == helpers.saved_meta(straight, num_steps)['fingerprint']
  for a, b in zip(helpers.saved_state(killed, num_steps), helpers.saved_state(straight, num_steps)):
    np.testing.assert_array_equal(a, b)


def test_a_dead_peer_fails_the_other_process_then_both_resume(tmp_path):
  """One of 2 processes is SIGKILLed: the other exits with an error within
  the heartbeat timeout instead of hanging; restarting both resumes."""
  workdir = str(tmp_path)
  overrides = [
    '--config.train.num_steps=400',
    '--config.train.log_every=1',
    '--config.checkpoint.every_steps=2',
    '--config.train.batch_size=8',
  ]
  port = _free_port()
  procs = [
    _start('configs/mnist.py:smoke', workdir, *overrides, *_multihost_flags(port, i, heartbeat_s=10)) for i in range(2)
  ]
  # Kill only once a checkpoint is committed, so the restart below has one
  # to resume from: metrics for step 4 can be logged while the async save
  # of step 2 is still being written (this raced on a slow CI machine).
  _wait_for_step(procs[0], workdir, 4)
  _wait_for_checkpoint(procs[0], workdir)
  procs[1].send_signal(signal.SIGKILL)
  start = time.time()
  out = procs[0].communicate(timeout=300)[0]
  waited = time.time() - start
  print(f'survivor exited with {procs[0].returncode} {waited:.0f}s after its peer was killed')
  assert procs[0].returncode != 0, out[-2000:]
  assert waited < 120, f'survivor took {waited:.0f}s to fail'
  procs[1].communicate()

  last = _finished_checkpoints(workdir)[-1]
  port = _free_port()
  procs = [
    _start(
      'configs/mnist.py:smoke',
      workdir,
      *[o.replace('400', str(last + 4)) for o in overrides],
      *_multihost_flags(port, i),
    )
    for i in range(2)
  ]
  outputs = [p.communicate(timeout=900)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
    assert f'Restored checkpoint at step {last}' in out


def test_quickstart_reaches_95_percent(tmp_path):
  start = time.time()
  proc = helpers.run_main('configs/mnist.py:quickstart', str(tmp_path), timeout=1800)
  wall = time.time() - start
  assert proc.returncode == 0, proc.stderr[-3000:]
  final = helpers.read_metrics(str(tmp_path), 'test')[-1]
  print(f'quickstart: test top-1 {final["top1"]:.4f} on {final["num_examples"]:.0f} digits, wall {wall:.0f}s')
  assert final['num_examples'] == 1000
  assert final['top1'] >= 0.95
