"""Whole runs in this process: smoke presets, resume, SIGTERM, NaN, corrupt
checkpoints. (Kills and multi-process runs are in test_slow_runs.py.)"""

import glob
import importlib
import json
import logging
import os
import re
import signal
import threading
import time

import numpy as np
import pytest

from perceiver import train
from perceiver.train import checkpoint as checkpoint_lib
from . import helpers


def _smoke_presets():
  """Every classifier config file in configs/ that has a `smoke` preset (the
  other tasks' smoke runs need their sample data and are tested with it in
  tests/language, tests/flow and tests/multimodal)."""
  names = []
  for path in sorted(glob.glob(os.path.join(helpers.REPO, 'configs', '*.py'))):
    name = os.path.basename(path)[:-3]
    if name in ('__init__', 'common'):
      continue
    module = importlib.import_module(f'perceiver_configs.{name}')
    if (
      'smoke' in getattr(module, 'PRESETS', {})
      and module.get_config('smoke').get('task', 'classification') == 'classification'
    ):
      names.append(name)
  return names


_config = helpers.config_with


@pytest.mark.parametrize('name', _smoke_presets())
def test_smoke_preset_trains_and_evaluates(name, tmp_path):
  workdir = str(tmp_path)
  config = _config(name)
  result = train.train_and_evaluate(config, workdir, 'train_and_eval')
  steps = config.train.num_steps
  assert result['step'] == steps and not result['preempted']
  records = helpers.read_metrics(workdir)
  assert [r['step'] for r in records] == list(range(1, steps + 1))
  for r in records:
    assert np.isfinite(r['loss']) and np.isfinite(r['grad_norm'])
    assert r['examples_per_sec'] > 0
  evals = helpers.read_metrics(workdir, config.eval.split)
  assert len(evals) == 1 and evals[0]['num_examples'] > 0
  metric = 'mAP' if config.train.loss == 'sigmoid' else 'top1'
  assert 0.0 <= evals[0][metric] <= 1.0
  assert checkpoint_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), 2).all_steps()[-1] == steps
  events = glob.glob(os.path.join(workdir, 'tb', 'events.out.tfevents.*'))
  assert events
  from perceiver.data._tf import tf

  tags = {v.tag for path in events for e in tf.compat.v1.train.summary_iterator(path) for v in e.summary.value}
  assert {'train/loss', 'train/lr', f'{config.eval.split}/loss'} <= tags


def _sigterm_when(workdir, min_step):
  """Sends this process SIGTERM once metrics.jsonl reaches ``min_step``."""

  def watch():
    path = os.path.join(workdir, 'metrics.jsonl')
    deadline = time.time() + 600
    while time.time() < deadline:
      if os.path.exists(path):
        with open(path) as f:
          steps = [json.loads(l)['step'] for l in f if l.strip()]
        if steps and max(steps) >= min_step:
          os.kill(os.getpid(), signal.SIGTERM)
          return
      time.sleep(0.01)

  thread = threading.Thread(target=watch, daemon=True)
  thread.start()
  return thread


def test_sigterm_checkpoints_and_resume_is_bitwise_identical(tmp_path):
  """Same config and seed -> identical parameters, interrupted or not."""
  overrides = {'train.num_steps': 40, 'checkpoint.every_steps': 1000, 'checkpoint.max_to_keep': 5}
  straight = str(tmp_path / 'straight')
  result = train.train_and_evaluate(_config(**overrides), straight, 'train')
  assert result['step'] == 40 and not result['preempted']

  resumed = str(tmp_path / 'resumed')
  watcher = _sigterm_when(resumed, min_step=3)
  result = train.train_and_evaluate(_config(**overrides), resumed, 'train')
  watcher.join()
  assert result['preempted'], 'SIGTERM did not stop the run'
  stop = result['step']
  assert 3 <= stop < 40
  # The only checkpoint is the one SIGTERM wrote (every_steps is 1000).
  assert checkpoint_lib.Checkpointer(os.path.join(resumed, 'checkpoints'), 5).all_steps() == [stop]
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # Restored.

  result = train.train_and_evaluate(_config(**overrides), resumed, 'train')
  assert result['step'] == 40
  records = helpers.read_metrics(resumed)
  assert [r['step'] for r in records] == list(range(1, 41))  # No repeats.
  assert helpers.saved_meta(resumed, 40)['fingerprint'] == helpers.saved_meta(straight, 40)['fingerprint']
  for a, b in zip(helpers.saved_state(resumed, 40), helpers.saved_state(straight, 40)):
    np.testing.assert_array_equal(a, b)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  workdir = str(tmp_path)
  # A learning rate of 1e30: step 1 gives huge (finite) parameters, step 2
  # overflows the logits.
  config = _config(
    **{
      'optimizer.name': 'adam',
      'optimizer.weight_decay': 0.0,
      'optimizer.max_norm': -1.0,
      'optimizer.schedule.name': 'constant',
      'optimizer.schedule.warmup_epochs': 0.0,
      'optimizer.schedule.base_lr': 1e30,
      'checkpoint.every_steps': 1,
      'train.num_steps': 5,
    }
  )
  with pytest.raises(FloatingPointError) as error:
    train.train_and_evaluate(config, workdir, 'train')
  message = str(error.value)
  match = re.match(r'(loss|grad_norm|params) (is|are) .* at step (\d+);', message)
  assert match, message
  bad_step = int(match.group(3))
  steps = checkpoint_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), 5).all_steps()
  assert steps and max(steps) < bad_step
  for leaf in helpers.saved_state(workdir, max(steps)):
    assert np.all(np.isfinite(leaf))


def test_corrupt_latest_checkpoint_falls_back_with_a_warning(tmp_path, caplog):
  workdir = str(tmp_path)
  overrides = {'train.num_steps': 4, 'checkpoint.every_steps': 2}
  train.train_and_evaluate(_config(**overrides), workdir, 'train')
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  # Flip bytes in every data file of step 4 (sizes unchanged).
  data_files = [
    p
    for p in glob.glob(os.path.join(ckpt_dir, '4', 'state', '**', '*'), recursive=True)
    if os.path.isfile(p) and '/d/' in p
  ]
  assert data_files
  for path in data_files:
    with open(path, 'r+b') as f:
      raw = bytearray(f.read())
      for i in range(0, len(raw), 7):
        raw[i] ^= 0xFF
      f.seek(0)
      f.write(raw)
  # A half-written step (what a kill during a save leaves) is never used.
  os.makedirs(os.path.join(ckpt_dir, '6.orbax-checkpoint-tmp-1234', 'state'))
  caplog.set_level(logging.WARNING)
  result = train.train_and_evaluate(_config(**overrides), workdir, 'eval')
  assert result['step'] == 2
  warnings = [r.getMessage() for r in caplog.records if 'corrupt' in r.getMessage()]
  assert warnings, caplog.text
  assert os.path.join(ckpt_dir, '4') in warnings[0]
  assert os.path.join(ckpt_dir, '2') in warnings[0]
  assert os.path.isdir(os.path.join(workdir, 'corrupt_checkpoints', 'checkpoints_4'))
  # Training continues from step 2 and writes step 4 again.
  result = train.train_and_evaluate(_config(**overrides), workdir, 'train')
  assert result['step'] == 4
  assert checkpoint_lib.Checkpointer(ckpt_dir, 2).all_steps() == [2, 4]


def test_a_half_written_checkpoint_is_never_restored(tmp_path):
  """A kill during a save leaves orbax's temporary directory for the step
  (written, not yet renamed): it is never listed nor restored, and the run
  redoes that step, bitwise as before."""
  workdir = str(tmp_path)
  overrides = {'train.num_steps': 6, 'checkpoint.every_steps': 2, 'checkpoint.max_to_keep': 5}
  train.train_and_evaluate(_config(**overrides), workdir, 'train')
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  expected = helpers.saved_meta(workdir, 6)['fingerprint']
  half = os.path.join(ckpt_dir, '6.orbax-checkpoint-tmp-1700000000000000')
  os.rename(os.path.join(ckpt_dir, '6'), half)
  data_files = sorted(
    p for p in glob.glob(os.path.join(half, 'state', '**'), recursive=True) if os.path.isfile(p) and '/d/' in p
  )
  assert data_files
  with open(data_files[0], 'r+b') as f:  # The file being written.
    f.truncate(os.path.getsize(data_files[0]) // 2)
  assert checkpoint_lib.Checkpointer(ckpt_dir, 5).all_steps() == [2, 4]
  result = train.train_and_evaluate(_config(**overrides), workdir, 'eval')
  assert result['step'] == 4
  result = train.train_and_evaluate(_config(**overrides), workdir, 'train')
  assert result['step'] == 6
  assert checkpoint_lib.Checkpointer(ckpt_dir, 5).all_steps() == [2, 4, 6]
  assert helpers.saved_meta(workdir, 6)['fingerprint'] == expected
  records = helpers.read_metrics(workdir)
  assert [r['step'] for r in records] == list(range(1, 7))  # No repeats.


@pytest.fixture(scope='module')
def exported_run(tmp_path_factory):
  """A smoke run that exports params.npz at the end: (workdir, result)."""
  workdir = str(tmp_path_factory.mktemp('exported'))
  result = train.train_and_evaluate(_config(**{'checkpoint.export_npz': True}), workdir, 'train_and_eval')
  return workdir, result


def test_init_from_an_exported_run_evaluates_to_the_same_metrics(exported_run, tmp_path):
  """A run's exported params.npz, evaluated through `init_from` in a fresh
  workdir (with another seed, so a random init would differ), gives that
  run's final evaluation exactly; fine-tuning from it starts at step 0."""
  trained, result = exported_run
  exported = os.path.join(trained, 'params.npz')
  assert result['exported'] == exported and os.path.isfile(exported)
  from perceiver import checkpoints  # pylint: disable=import-outside-toplevel

  _, _, saved_config = checkpoints.load_checkpoint(exported)
  assert saved_config['config.model'] == json.loads(_config().model.to_json())

  evaluated = train.train_and_evaluate(_config(init_from=exported, seed=7), str(tmp_path / 'eval'), 'eval')
  assert evaluated['step'] == 0
  for key in ('loss', 'top1', 'top5', 'num_examples'):
    assert evaluated['eval'][key] == result['eval'][key], key

  tuned = str(tmp_path / 'tuned')
  train.train_and_evaluate(_config(init_from=exported, **{'train.num_steps': 1}), tuned, 'train')
  assert [r['step'] for r in helpers.read_metrics(tuned)] == [1]


def test_init_from_a_checkpoint_of_another_model_lists_the_mismatch(exported_run, tmp_path):
  from perceiver import checkpoints  # pylint: disable=import-outside-toplevel
  from perceiver.train import config_checks  # pylint: disable=import-outside-toplevel

  wider = _config(init_from=os.path.join(exported_run[0], 'params.npz'))
  wider.model.encoder.latent_channels *= 2
  with pytest.raises(checkpoints.CheckpointMismatchError, match='mis-shaped') as err:
    train.train_and_evaluate(wider, str(tmp_path / 'eval'), 'eval')
  assert err.value.mis_shaped
  with pytest.raises(config_checks.ConfigError, match='no such file'):
    train.train_and_evaluate(_config(init_from=str(tmp_path / 'nope.npz')), str(tmp_path / 'x'), 'eval')
  with pytest.raises(FileNotFoundError, match='init_from'):
    train.train_and_evaluate(_config(), str(tmp_path / 'empty'), 'eval')


def test_the_step_is_compiled_and_memory_released_before_the_first_step_runs(tmp_path, monkeypatch):
  # Releasing only after the first step would leave that step's temporaries
  # beside the compiler's leftovers (host_memory.compile_ahead).
  from perceiver import host_memory  # pylint: disable=g-import-not-at-top
  from perceiver.train import trainer  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  events = []
  make_step = trainer.make_train_step

  def counted_step(*args, **kwargs):
    step = make_step(*args, **kwargs)

    def run(state, batch, rng):
      jax.debug.callback(lambda: events.append('step'))
      return step(state, batch, rng)

    return run

  monkeypatch.setattr(trainer, 'make_train_step', counted_step)
  monkeypatch.setattr(host_memory, 'release_free_memory', lambda: events.append('release') or True)
  train.train_and_evaluate(_config(**{'train.num_steps': 3}), str(tmp_path), 'train')
  assert events == ['release', 'step', 'step', 'step'], events
