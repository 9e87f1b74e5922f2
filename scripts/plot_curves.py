#!/usr/bin/env python
"""Training curves (loss and accuracy vs step) from runs' `metrics.jsonl`.

  python scripts/plot_curves.py --workdirs DIR [DIR ...] --out curves.png [--metric top1]

Left panel: training loss (solid) and eval loss (markers); right panel:
training and eval `--metric` (top1, or mAP for AudioSet) in percent. One
colour per run, labelled by its table row when it has one, else by the
workdir's name.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from perceiver_tools import tables  # pylint: disable=wrong-import-position


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
      style = dict(color=colour, linestyle='-' if train else 'none', marker=None if train else 'o',
                   alpha=0.9 if train else 1.0)
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
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdirs', nargs='+', required=True)
  parser.add_argument('--out', required=True, help='PNG file')
  parser.add_argument('--metric', default='top1', help='top1, top5 or mAP')
  args = parser.parse_args(argv)
  plot(args.workdirs, args.out, args.metric)
  print(f'wrote {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
