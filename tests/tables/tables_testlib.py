"""Helpers of the table, plot and checkpoint-eval tests (small real runs).

Each run is a preset of a config file, optionally modified, tagged with the
table cell it fills, and trained + evaluated in this process by
`perceiver.train.train_and_evaluate` exactly as `experiments.main` would.
Runs are cached per session: tests that share a run train it once.
"""

import importlib
import os
import subprocess
import sys
from typing import Callable, Optional

import ml_collections
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(os.path.dirname(REPO), 'shared', 'golden', 'official')


def script(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
  """Runs scripts/<name> in a subprocess, as a user would."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run(
    [sys.executable, os.path.join(REPO, 'scripts', name), *args],
    capture_output=True,
    text=True,
    env=env,
    cwd=REPO,
    timeout=600,
  )
  if check and proc.returncode != 0:
    pytest.fail(f'{name} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}')
  return proc


def load_preset(spec: str) -> ml_collections.ConfigDict:
  """'configs/x.py:preset' -> the config experiments.main would get."""
  path, preset = spec.split(':')
  module = importlib.import_module('perceiver_configs.' + os.path.basename(path)[:-3])
  return module.get_config(preset)


def _tag(config, table: str, row: str, column: str) -> None:
  with config.unlocked():
    config.table = ml_collections.ConfigDict(dict(table=table, row=row, column=column))


class Runs:
  """name -> workdir of a finished (trained and evaluated) small run."""

  def __init__(self, root: str):
    self.root = root
    self._done: dict[str, str] = {}

  def get(
    self,
    name: str,
    spec: str,
    tag: Optional[tuple] = None,
    modify: Optional[Callable] = None,
    mode: str = 'train_and_eval',
  ) -> str:
    if name in self._done:
      return self._done[name]
    from perceiver import train  # pylint: disable=import-outside-toplevel

    config = load_preset(spec)
    with config.unlocked():
      if modify is not None:
        modify(config)
    if tag is not None:
      _tag(config, *tag)
    workdir = os.path.join(self.root, name)
    train.train_and_evaluate(config, workdir, mode)
    self._done[name] = workdir
    return workdir


def mnist_steps(steps: int):
  """Modifier: train the MNIST preset for `steps` steps (tiny, but real digits)."""

  def modify(config):
    config.train.num_steps = steps
    config.train.log_every = max(1, steps // 4)

  return modify


def permuted(config) -> None:
  config.model.input.permute_seed = 0
