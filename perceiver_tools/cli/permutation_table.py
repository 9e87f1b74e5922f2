"""Table 2's finding at CPU scale: train every row on raw and permuted MNIST.

  python scripts/permutation_table.py --out=DIR [--rows=perceiver_ff,resnet_ff,...]
      [--epochs=6] [--fresh]
  perceiver-permutation-table --out=DIR ...   # installed

Trains the presets of configs/mnist_permutation.py one after another in this
process (one training process at a time; about 25 minutes on 2 CPU cores),
each in DIR/runs/<preset>, then writes DIR/table.md with
scripts/make_tables.py's renderer and DIR/timing.json (wall seconds per run
and in total). A run whose workdir already holds its final evaluation is
not repeated unless --fresh, so an interrupted invocation resumes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from typing import List, Optional

from absl import flags

from perceiver_configs import mnist_permutation
from perceiver_tools import tables
from perceiver_tools.cli import _flags

DEFAULT_ROWS = tuple(mnist_permutation.ROWS)

FLAGS = flags.FlagValues()
_OUT = flags.DEFINE_string('out', None, 'output directory', flag_values=FLAGS)
_ROWS = flags.DEFINE_list('rows', list(DEFAULT_ROWS), 'subset of the rows', flag_values=FLAGS)
_EPOCHS = flags.DEFINE_float('epochs', None, 'override the shared number of epochs', flag_values=FLAGS)
_NUM_STEPS = flags.DEFINE_integer('num_steps', None, 'override with a step count (tests)', flag_values=FLAGS)
_FRESH = flags.DEFINE_bool('fresh', False, 'retrain runs that are already done', flag_values=FLAGS)
flags.mark_flag_as_required('out', flag_values=FLAGS)


def _total_steps(config) -> int:
  """The runner's step count for `config` (perceiver/train/trainer.py)."""
  from perceiver.train import input_pipeline  # pylint: disable=g-import-not-at-top

  if config.train.num_steps > 0:
    return int(config.train.num_steps)
  steps_per_epoch = input_pipeline.num_examples(config.data, 'train') // config.train.batch_size
  return int(round(config.train.num_epochs * steps_per_epoch))


def _finished(workdir: str, total_steps: int) -> bool:
  """True if the workdir holds the evaluation made at the run's last step."""
  try:
    _, step = tables.last_eval(workdir)
  except tables.TableError:
    return False
  return step == total_steps


def run_rows(
  out: str, rows: List[str], epochs: Optional[float] = None, fresh: bool = False, num_steps: Optional[int] = None
) -> dict:
  """Trains the raw and permuted preset of every row; returns the timing record."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  from perceiver import train  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.WARNING)
  start = time.time()
  timing = {'runs': {}}
  workdirs = []
  for row in rows:
    for preset in (row, f'{row}_permuted'):
      config = mnist_permutation.get_config(preset)
      with config.unlocked():
        if epochs is not None:
          config.train.num_epochs = float(epochs)
        if num_steps is not None:
          config.train.num_steps = int(num_steps)
      workdir = os.path.join(out, 'runs', preset)
      workdirs.append(workdir)
      if fresh:
        shutil.rmtree(workdir, ignore_errors=True)
      t0 = time.time()
      result = None
      if not _finished(workdir, _total_steps(config)):
        result = train.train_and_evaluate(config, workdir, 'train_and_eval')
        if not _finished(workdir, _total_steps(config)):
          raise RuntimeError(f'{preset}: the run ended without its final evaluation ({result})')
      seconds = time.time() - t0
      timing['runs'][preset] = round(seconds, 1)
      top1 = tables.last_eval(workdir)[0].get('top1')
      print(
        f'[permutation_table] {preset}: top-1 {100 * top1:.1f}% '
        f'({"trained" if result else "already done"}, {seconds:.0f} s)',
        flush=True,
      )
  timing['total_s'] = round(time.time() - start, 1)
  text = tables.make_tables(workdirs, ['mnist_permutation'])
  with open(os.path.join(out, 'table.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(out, 'timing.json'), 'w') as f:
    json.dump(timing, f, indent=2)
  return timing


def main(argv: Optional[List[str]] = None) -> int:
  _flags.parse(FLAGS, argv, __doc__)
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  rows = [r.strip() for r in _ROWS.value if r.strip()]
  unknown = sorted(set(rows) - set(DEFAULT_ROWS))
  if unknown:
    print(f'error: --rows: unknown row(s) {unknown}; choose from {DEFAULT_ROWS}', file=sys.stderr)
    return 2
  timing = run_rows(_OUT.value, rows, _EPOCHS.value, _FRESH.value, _NUM_STEPS.value)
  with open(os.path.join(_OUT.value, 'table.md')) as f:
    print(f.read())
  print(f'total wall time: {timing["total_s"]:.0f} s')
  return 0


def run() -> None:
  sys.exit(main())


if __name__ == '__main__':
  run()
