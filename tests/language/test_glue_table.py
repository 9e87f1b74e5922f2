"""The Perceiver IO GLUE table of scripts/make_tables.py."""

import os
import subprocess
import sys

from perceiver_tools import paper_results as pr
from perceiver_tools import tables

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TASKS = ('CoLA', 'SST-2', 'MRPC', 'QQP', 'STS-B', 'MNLI-m', 'MNLI-mm', 'QNLI', 'RTE')


def _run(tmp_path, task, score):
  workdir = str(tmp_path / task)
  tables.write_result(workdir, pr.Tag('perceiver_io_glue', task, 'score'), {'glue_score': score})
  return workdir


def test_missing_rows_and_the_average(tmp_path):
  one = _run(tmp_path, 'RTE', 0.6)
  text = tables.make_tables([one], ['perceiver_io_glue'])
  assert '| RTE | 60.0 | — | — |' in text and '| CoLA | — | — | — |' in text
  assert '| 81.0 |' in text and 'GLUE average' in text
  average_line = [l for l in text.splitlines() if l.startswith('| GLUE average')][0]
  assert average_line.split('|')[2].strip() == '—'  # not every task ran
  # All tasks: MNLI-m/mm averaged into one entry, WNLI left out.
  scores = {t: 0.8 for t in TASKS}
  scores.update({'MNLI-m': 0.7, 'MNLI-mm': 0.9, 'CoLA': 0.4})
  dirs = [_run(tmp_path, t, s) for t, s in scores.items()] + [_run(tmp_path, 'WNLI', 0.1)]
  text = tables.make_tables(dirs, ['perceiver_io_glue'])
  average_line = [l for l in text.splitlines() if l.startswith('| GLUE average')][0]
  want = (40 + 80 * 7) / 8
  assert f'| {want:.1f} | 81.0 | ' in average_line


def test_make_tables_prints_the_glue_table():
  run = subprocess.run(
    [sys.executable, os.path.join(REPO, 'scripts', 'make_tables.py'), '--tables', 'perceiver_io_glue'],
    capture_output=True,
    text=True,
    check=False,
    timeout=120,
  )
  assert run.returncode == 0 and 'Perceiver IO: GLUE' in run.stdout and '| QQP | — |' in run.stdout
