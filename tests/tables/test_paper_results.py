"""perceiver_tools/paper_results.py against ../shared/reference/PAPERS.md."""

import os
import re

import pytest

from perceiver_tools import paper_results as pr
from tables_testlib import REPO

PAPERS = os.path.join(os.path.dirname(REPO), 'shared', 'reference', 'PAPERS.md')

# The PAPERS.md passage each table is transcribed from (start marker, end marker).
_PASSAGES = {
  'perceiver_t1': ('Table 1 (top-1)', 'Table 2'),
  'perceiver_t2': ('Table 2 (raw', 'Permuted ImageNet'),
  'perceiver_t3': ('Table 3 (mAP', '## ModelNet40'),
  'perceiver_t4': ('Table 4 (top-1)', '## Perceiver IO'),
  'perceiver_t6': ('Table 6 (cross-attend', 'Table 5'),
  'perceiver_io_imagenet': ('Top-1: 2-D Fourier', '- Language'),
}


@pytest.fixture(scope='module')
def papers() -> str:
  if not os.path.exists(PAPERS):
    pytest.skip(f'{PAPERS} not found')
  with open(PAPERS) as f:
    return f.read()


def _numbers(text: str) -> list:
  return [float(x) for x in re.findall(r'(?<![\d.])\d+\.\d(?![\d])', text)]


@pytest.mark.parametrize('key', sorted(_PASSAGES))
def test_every_figure_is_in_its_passage_and_every_passage_figure_is_used(papers, key):
  start, end = _PASSAGES[key]
  i = papers.index(start)
  passage = papers[i : papers.index(end, i + len(start))]
  table = pr.TABLES[key]
  ours = [v for row in table.rows for v in row.paper.values() if v is not None]
  found = _numbers(passage)
  assert ours and set(ours) <= set(found), sorted(set(ours) - set(found))
  assert not set(found) - set(ours), 'figures of the passage missing from the table (forgotten rows?)'


def test_table2_drops_and_static_columns(papers):
  assert pr.paper_figure(pr.Tag('perceiver_t2', 'ResNet-50 (FF)', 'permuted')) == 39.4
  assert [r.static['input RF (px)'] for r in pr.PERCEIVER_T2.rows] == ['49', '256', '4,096', '50,176', '50,176']
  assert '4,096' in papers and '50,176' in papers


def test_tags_are_checked():
  with pytest.raises(ValueError, match='no column'):
    pr.check_tag(pr.Tag('perceiver_t1', 'ResNet-50', 'raw'))
  with pytest.raises(ValueError, match='no row'):
    pr.check_tag(pr.Tag('perceiver_t4', 'ResNet-50', 'top-1'))
  with pytest.raises(ValueError, match='unknown table'):
    pr.check_tag(pr.Tag('perceiver_t9', 'ResNet-50', 'top-1'))
  for group in pr.SAME_EXPERIMENT:
    figures = {pr.paper_figure(t) for t in group}
    assert len(figures) == 1, group  # One experiment, one published figure.
  for table in pr.TABLES.values():
    for row in table.rows:
      assert set(row.paper) <= set(table.columns)
  mnist_rows = [r.static['paper_row'] for r in pr.MNIST_PERMUTATION.rows]
  assert set(mnist_rows) == {r.name for r in pr.PERCEIVER_T2.rows}
