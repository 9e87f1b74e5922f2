"""Training curves (loss and accuracy vs step) from runs' `metrics.jsonl`.

  python scripts/plot_curves.py DIR [DIR ...] --out=curves.png [--metric=top1]
  perceiver-plot-curves DIR [DIR ...] --out=curves.png   # installed

Left panel: training loss (solid) and eval loss (markers); right panel:
training and eval `--metric` (top1, or mAP for AudioSet) in percent. One
colour per run, labelled by its table row when it has one, else by the
workdir's name.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

from absl import flags

from perceiver_tools import tables
from perceiver_tools.cli import _flags

FLAGS = flags.FlagValues()
_WORKDIRS = flags.DEFINE_list('workdirs', [], 'run workdirs (also taken as arguments)', flag_values=FLAGS)
_OUT = flags.DEFINE_string('out', None, 'PNG file', flag_values=FLAGS)
_METRIC = flags.DEFINE_string('metric', 'top1', 'top1, top5 or mAP', flag_values=FLAGS)
flags.mark_flag_as_required('out', flag_values=FLAGS)


def label_of(workdir: str) -> str:
  try:
    tag = tables.read_tag(workdir)
  except tables.TableError:
    tag = None
  name = os.path.basename(os.path.normpath(workdir))
  return f'{tag.row} ({tag.column})' if tag else name


def plot(workdirs: List[str], out: str, metric: str = 'top1') -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
  colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
  for i, workdir in enumerate(workdirs):
    colour = colours[i % len(colours)]
    label = label_of(workdir)
    for split, records in tables.read_metrics(workdir).items():
      steps = [r['step'] for r in records]
      train = split == 'train'
      style = dict(
        color=colour, linestyle='-' if train else 'none', marker=None if train else 'o', alpha=0.9 if train else 1.0
      )
      name = f'{label}, {"train" if train else split}'
      if all('loss' in r for r in records):
        ax_loss.plot(steps, [r['loss'] for r in records], label=name, **style)
      if all(metric in r for r in records):
        ax_acc.plot(steps, [100 * r[metric] for r in records], label=name, **style)
  ax_loss.set(xlabel='step', ylabel='loss', title='loss')
  ax_acc.set(xlabel='step', ylabel=f'{metric} (%)', title=metric)
  for ax in (ax_loss, ax_acc):
    ax.grid(alpha=0.3)
  ax_acc.legend(fontsize=7, loc='lower right')
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
  positional = _flags.parse(FLAGS, argv, __doc__, max_positional=None)
  workdirs = list(_WORKDIRS.value) + positional
  if not workdirs:
    print('error: no workdirs given (arguments or --workdirs)', file=sys.stderr)
    return 1
  plot(workdirs, _OUT.value, _METRIC.value)
  print(f'wrote {_OUT.value}')
  return 0


def run() -> None:
  sys.exit(main())


if __name__ == '__main__':
  run()
