"""Helpers of the experiment-runner tests.

Runs that need their own JAX process (fake device counts, several processes,
kills) go through `run_main`, which starts `python -m experiments.main` in
the repository root.
"""

import importlib
import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def subprocess_env(**extra: str) -> dict[str, str]:
  env = dict(os.environ)
  env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  env.update(extra)
  return env


def main_command(config: str, workdir: str, *overrides: str, mode: str = 'train_and_eval') -> list[str]:
  return [
    sys.executable,
    '-m',
    'experiments.main',
    f'--config={config}',
    f'--workdir={workdir}',
    f'--mode={mode}',
    *overrides,
  ]


def run_main(
  config: str,
  workdir: str,
  *overrides: str,
  mode: str = 'train_and_eval',
  timeout: float = 300,
  env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
  return subprocess.run(
    main_command(config, workdir, *overrides, mode=mode),
    cwd=REPO,
    env=env or subprocess_env(),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def read_metrics(workdir: str, split: str = 'train') -> list[dict]:
  path = os.path.join(workdir, 'metrics.jsonl')
  with open(path) as f:
    records = [json.loads(line) for line in f]
  return [r for r in records if r['split'] == split]


def saved_state(workdir: str, step: int) -> list[np.ndarray]:
  """The train state saved at ``step``, as numpy leaves (no target needed)."""
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  tree = ocp.PyTreeCheckpointer().restore(path)
  # Zero-size arrays are not written (orbax placeholders): arrays only.
  return [np.asarray(x) for x in jax.tree.leaves(tree) if x is not ocp.PLACEHOLDER]


def saved_meta(workdir: str, step: int) -> dict:
  with open(os.path.join(workdir, 'checkpoints', str(step), 'meta', 'metadata')) as f:
    return json.load(f)


def config_with(name: str = 'mnist', preset: str = 'smoke', **overrides):
  """``configs/<name>.py:<preset>`` with dotted overrides ('train.num_steps')."""
  config = importlib.import_module(f'perceiver_configs.{name}').get_config(preset)
  for key, value in overrides.items():
    target = config
    *path, leaf = key.split('.')
    for part in path:
      target = target[part]
    target[leaf] = value
  return config
