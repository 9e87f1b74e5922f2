"""Checks of an experiment config that must pass before anything compiles.

Key typos and override types are caught earlier, by the locked ConfigDict
when flags are parsed; these checks catch values that parse but make no
sense (unknown optimizer, batch not divisible by devices, ...).
"""

import os

import ml_collections

from perceiver import tasks
from perceiver.train import optim, parallel

MODES = ('train', 'eval', 'train_and_eval')


class ConfigError(ValueError):
  """A config value is invalid; the message names the field."""


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def check_config(config: ml_collections.ConfigDict, mode: str) -> None:
  """Raises ConfigError naming the first offending field."""
  _require(mode in MODES, f'mode={mode!r}; expected one of {MODES}')
  for section in ('model', 'data', 'train', 'optimizer', 'eval', 'parallel', 'checkpoint'):
    _require(section in config, f'config has no {section!r} section')
  t, o, e = config.train, config.optimizer, config.eval
  _require(o.name in optim.OPTIMIZERS, f'optimizer.name={o.name!r}; expected one of {optim.OPTIMIZERS}')
  _require(o.name != 'adam' or not o.weight_decay, 'optimizer.name=adam takes no weight decay; use adamw')
  _require(
    o.schedule.name in optim.SCHEDULES,
    f'optimizer.schedule.name={o.schedule.name!r}; expected one of {optim.SCHEDULES}',
  )
  _require(o.schedule.base_lr > 0, 'optimizer.schedule.base_lr must be > 0')
  _require(t.batch_size > 0 and e.batch_size > 0, 'train.batch_size and eval.batch_size must be > 0')
  _require(t.grad_accum_steps >= 1, 'train.grad_accum_steps must be >= 1')
  _require(
    t.batch_size % t.grad_accum_steps == 0,
    f'train.batch_size={t.batch_size} is not divisible by train.grad_accum_steps={t.grad_accum_steps}',
  )
  _require(t.num_steps > 0 or t.num_epochs > 0, 'set train.num_steps > 0 or train.num_epochs > 0')
  _require(t.log_every > 0, 'train.log_every must be > 0')
  _require(config.checkpoint.every_steps > 0, 'checkpoint.every_steps must be > 0')
  _require(config.checkpoint.max_to_keep >= 1, 'checkpoint.max_to_keep must be >= 1')
  _require(
    config.parallel.param_sharding in parallel.PARAM_SHARDINGS,
    f'parallel.param_sharding={config.parallel.param_sharding!r}; expected one of {parallel.PARAM_SHARDINGS}',
  )
  init_from = config.get('init_from', '')
  _require(
    not init_from or os.path.isfile(init_from),
    f'init_from={init_from!r}: no such file (a DeepMind .pystate/.pickle, '
    'an .npz written by this project, or Hugging Face weights)',
  )
  try:
    task = tasks.get_task(config)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  task.check_config(config)  # The task's own fields (loss, classes, ...).


def check_devices(config: ml_collections.ConfigDict, num_devices: int, num_processes: int) -> None:
  """Batch sizes must split evenly over devices (and micro-batches)."""
  t = config.train
  micro = t.batch_size // t.grad_accum_steps
  _require(
    micro % num_devices == 0,
    f'train.batch_size / train.grad_accum_steps = {micro} is not divisible by the {num_devices} devices',
  )
  _require(
    config.eval.batch_size % num_devices == 0,
    f'eval.batch_size={config.eval.batch_size} is not divisible by the {num_devices} devices',
  )
  _require(
    t.batch_size % num_processes == 0,
    f'train.batch_size={t.batch_size} is not divisible by the {num_processes} processes',
  )
