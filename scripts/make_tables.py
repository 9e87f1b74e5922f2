#!/usr/bin/env python
"""Writes the paper tables (ours | paper | difference) from eval results.

  python scripts/make_tables.py --workdirs DIR [DIR ...] --out tables.md \\
      [--tables perceiver_t1,perceiver_t2,...]
  python scripts/make_tables.py --tag DIR TABLE 'ROW' COLUMN   # tag a workdir

Each workdir is one run of the experiment runner (its `config.json` with a
`table` section naming the cell, and `metrics.jsonl`) or an evaluation
written by scripts/eval_checkpoint.py (`result.json`). `--tag` files a run
whose config has no `table` section (writes DIR/table_row.json). Tables:
perceiver_t1, perceiver_t2, perceiver_t3, perceiver_t4, perceiver_t6,
perceiver_io_imagenet, perceiver_io_multimodal (video/audio PSNR and label
top-1 of one autoencoding run: tag it with column '*' to fill its row),
mnist_permutation (perceiver/paper_results.py). Rows
without a result show "—". Exit status 1 with a message if a workdir cannot
be read (untagged, not evaluated, unknown cell).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from perceiver import paper_results  # pylint: disable=wrong-import-position
from perceiver import tables  # pylint: disable=wrong-import-position


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdirs', nargs='+', default=[], metavar='DIR')
  parser.add_argument('--out', help='Markdown file to write (default: stdout)')
  parser.add_argument('--tables', help='comma-separated table keys (default: all paper tables '
                      'and any other table with results)')
  parser.add_argument('--tag', nargs=4, metavar=('DIR', 'TABLE', 'ROW', 'COLUMN'),
                      help='write DIR/table_row.json and exit')
  args = parser.parse_args(argv)
  try:
    if args.tag:
      workdir, *tag = args.tag
      print(tables.write_tag(workdir, paper_results.Tag(*tag)))
      return 0
    keys = [k.strip() for k in args.tables.split(',') if k.strip()] if args.tables else None
    text = tables.make_tables(args.workdirs, keys)
  except (tables.TableError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)
    print(f'wrote {args.out}')
  else:
    print(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
