"""Writes the paper tables (ours | paper | difference) from eval results.

  python scripts/make_tables.py DIR [DIR ...] [--out=tables.md] \\
      [--tables=perceiver_t1,perceiver_t2,...]
  python scripts/make_tables.py --tag=DIR --table=TABLE --row='ROW' --column=COLUMN
  perceiver-tables ...   # installed

Each workdir is one run of the experiment runner (its `config.json` with a
`table` section naming the cell, and `metrics.jsonl`) or an evaluation
written by scripts/eval_checkpoint.py (`result.json`). The workdirs are
the arguments (or `--workdirs=A,B`). `--tag` files a run whose config has
no `table` section (writes DIR/table_row.json). Tables:
perceiver_t1, perceiver_t2, perceiver_t3, perceiver_t4, perceiver_t6,
perceiver_io_imagenet, perceiver_io_glue, perceiver_io_flow,
perceiver_io_multimodal (video/audio PSNR and label top-1 of one
autoencoding run: tag it with column '*' to fill its row), mnist_permutation (perceiver_tools/paper_results.py). Rows
without a result show "—". Exit status 1 with a message if a workdir cannot
be read (untagged, not evaluated, unknown cell).
"""

from __future__ import annotations

import sys
from typing import List, Optional

from absl import flags

from perceiver_tools import paper_results
from perceiver_tools import tables
from perceiver_tools.cli import _flags

FLAGS = flags.FlagValues()
_WORKDIRS = flags.DEFINE_list('workdirs', [], 'workdirs (also taken as arguments)', flag_values=FLAGS)
_OUT = flags.DEFINE_string('out', None, 'Markdown file to write (default: stdout)', flag_values=FLAGS)
_TABLES = flags.DEFINE_list(
  'tables', None, 'table keys (default: all paper tables and any other table with results)', flag_values=FLAGS
)
_TAG = flags.DEFINE_string(
  'tag', None, 'write TAG/table_row.json (with --table, --row, --column) and exit', flag_values=FLAGS
)
_TABLE = flags.DEFINE_string('table', None, 'with --tag: the table key', flag_values=FLAGS)
_ROW = flags.DEFINE_string('row', None, 'with --tag: the row', flag_values=FLAGS)
_COLUMN = flags.DEFINE_string('column', None, 'with --tag: the column', flag_values=FLAGS)


def main(argv: Optional[List[str]] = None) -> int:
  positional = _flags.parse(FLAGS, argv, __doc__, max_positional=None)
  workdirs = list(_WORKDIRS.value) + positional
  try:
    if _TAG.value:
      missing = [f'--{f.name}' for f in (_TABLE, _ROW, _COLUMN) if f.value is None]
      if missing:
        raise ValueError(f'--tag needs {", ".join(missing)}')
      print(tables.write_tag(_TAG.value, paper_results.Tag(_TABLE.value, _ROW.value, _COLUMN.value)))
      return 0
    text = tables.make_tables(workdirs, _TABLES.value or None)
  except (tables.TableError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      f.write(text)
    print(f'wrote {_OUT.value}')
  else:
    print(text)
  return 0


def run() -> None:
  sys.exit(main())


if __name__ == '__main__':
  run()
