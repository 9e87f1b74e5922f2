"""scripts/make_tables.py on the eval outputs of small real runs."""

import json
import os
import shutil

import pytest

from tables_testlib import mnist_steps, permuted, script  # pylint: disable=wrong-import-order
from perceiver_tools import paper_results as pr
from perceiver_tools import tables


def _final_eval(workdir: str) -> dict:
  """The last eval line of the run, read here independently of perceiver_tools.tables."""
  with open(os.path.join(workdir, 'config.json')) as f:
    split = json.load(f)['eval']['split']
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    evals = [r for r in map(json.loads, f) if r['split'] == split]
  assert evals, f'{workdir} was not evaluated'
  return max(evals, key=lambda r: r['step'])


def _parse(markdown: str) -> dict:
  """{table title: {row name: [cells]}} of the Markdown tables."""
  out, title = {}, None
  for line in markdown.splitlines():
    if line.startswith('### '):
      title = line[4:]
      out[title] = {}
    elif line.startswith('| ') and title and not line.startswith('| model'):
      cells = [c.strip() for c in line.strip().strip('|').split('|')]
      out[title][cells[0]] = cells[1:]
  return out


def _fmt(x: float, signed: bool = False) -> str:
  return (f'{x:+.1f}' if signed else f'{x:.1f}').replace('-', '−')


def _check_paper_cell(grid: dict, tag: pr.Tag, workdir: str) -> None:
  """ours = the run's final eval, paper = the published figure, Δ = their difference."""
  table = pr.TABLES[tag.table]
  ours = 100 * _final_eval(workdir)[table.metric]
  i = 3 * table.columns.index(tag.column)
  paper = table.row(tag.row).paper[tag.column]
  assert grid[table.title][tag.row][i : i + 3] == [_fmt(ours), _fmt(paper), _fmt(ours - paper, signed=True)], (
    tag,
    grid[table.title][tag.row],
  )


def _filled(grid: dict, table: pr.Table) -> set:
  """(row, column) cells of `table` that show a figure of ours."""
  filled = set()
  for row in table.rows:
    cells = grid[table.title][row.name]
    for j, column in enumerate(table.columns):
      if cells[3 * j] != tables.MISSING:
        filled.add((row.name, column))
  return filled


@pytest.fixture(scope='module')
def mnist_runs(runs):
  """The quickstart Perceiver on real MNIST digits, raw and permuted, a few steps."""
  spec = 'configs/mnist_permutation.py:smoke'

  def modify(config, column):
    mnist_steps(4)(config)
    if column == 'permuted':
      permuted(config)

  return {
    column: runs.get(
      f'mnist_{column}', spec, ('mnist_permutation', 'Perceiver (FF)', column), lambda c, col=column: modify(c, col)
    )
    for column in ('raw', 'permuted')
  }


def _tag_args(workdir, tag):
  table, row, column = tag
  return [f'--tag={workdir}', f'--table={table}', f'--row={row}', f'--column={column}']


def test_tables_from_small_runs(runs, mnist_runs, tmp_path):
  """Every figure comes from a run; cells that are one experiment agree; the rest are missing."""
  vit = runs.get('vit_smoke', 'configs/baselines.py:smoke', ('perceiver_t2', 'ViT-B-16 (FF)', 'raw'))
  out = tmp_path / 'tables.md'
  script('make_tables.py', '--workdirs', vit, *mnist_runs.values(), '--out', str(out))
  grid = _parse(out.read_text())
  # Table 2 (and Table 1 through SAME_EXPERIMENT) hold the ViT run and nothing else.
  _check_paper_cell(grid, pr.Tag('perceiver_t2', 'ViT-B-16 (FF)', 'raw'), vit)
  _check_paper_cell(grid, pr.Tag('perceiver_t1', 'ViT-B-16 (FF)', 'top-1'), vit)
  assert _filled(grid, pr.PERCEIVER_T2) == {('ViT-B-16 (FF)', 'raw')}
  assert _filled(grid, pr.PERCEIVER_T1) == {('ViT-B-16 (FF)', 'top-1')}
  for key in ('perceiver_t3', 'perceiver_t4', 'perceiver_t6', 'perceiver_io_imagenet'):
    assert not _filled(grid, pr.TABLES[key]), key
    assert len(grid[pr.TABLES[key].title]) == len(pr.TABLES[key].rows)
  # The MNIST permutation table: raw, permuted and their difference.
  row = grid[pr.MNIST_PERMUTATION.title]['Perceiver (FF)']
  raw, perm = (100 * _final_eval(mnist_runs[c])['top1'] for c in ('raw', 'permuted'))
  assert row[:3] == [_fmt(raw), _fmt(perm), _fmt(perm - raw, signed=True)]
  assert row[3] == '+0.0'  # The paper's drop for the Perceiver.
  assert grid[pr.MNIST_PERMUTATION.title]['ResNet (FF)'][:3] == [tables.MISSING] * 3
  assert grid[pr.MNIST_PERMUTATION.title]['ResNet (FF)'][3] == _fmt(39.4 - 73.5, signed=True)


def test_seeds_of_one_cell_are_averaged(runs, mnist_runs, tmp_path):
  """A second run of the same cell (another seed) is averaged with the first and counted."""
  other = runs.get(
    'mnist_raw_seed1',
    'configs/mnist_permutation.py:smoke',
    ('mnist_permutation', 'Perceiver (FF)', 'raw'),
    lambda c: (mnist_steps(4)(c), setattr(c, 'seed', 1)),
  )
  text = tables.make_tables([mnist_runs['raw'], other], ['mnist_permutation'])
  mean = 100 * (_final_eval(mnist_runs['raw'])['top1'] + _final_eval(other)['top1']) / 2
  assert _parse(text)[pr.MNIST_PERMUTATION.title]['Perceiver (FF)'][0] == f'{_fmt(mean)} (n=2)'


def test_unusable_workdirs_are_errors_not_blanks(runs, mnist_runs, tmp_path):
  untagged = runs.get('vit_smoke_untagged', 'configs/baselines.py:smoke')  # config.table is empty.
  proc = script('make_tables.py', '--workdirs', untagged, check=False)
  assert proc.returncode == 1 and 'no table tag' in proc.stderr
  # Tagging it by hand (for presets without a `table` section) makes it count.
  script('make_tables.py', f'--tag={untagged}', '--table=perceiver_t2', '--row=ViT-B-16 (FF)', '--column=permuted')
  assert tables.read_workdir(untagged).tag == pr.Tag('perceiver_t2', 'ViT-B-16 (FF)', 'permuted')
  proc = script(
    'make_tables.py', f'--tag={untagged}', '--table=perceiver_t2', '--row=ViT-B-99', '--column=raw', check=False
  )
  assert proc.returncode == 1 and 'no row' in proc.stderr
  # A run that was never evaluated has no figure to show.
  not_evaluated = str(tmp_path / 'not_evaluated')
  shutil.copytree(mnist_runs['raw'], not_evaluated)
  with open(os.path.join(not_evaluated, 'metrics.jsonl')) as f:
    kept = [line for line in f if json.loads(line)['split'] == 'train']
  with open(os.path.join(not_evaluated, 'metrics.jsonl'), 'w') as f:
    f.writelines(kept)
  proc = script('make_tables.py', '--workdirs', not_evaluated, check=False)
  assert proc.returncode == 1 and 'no eval line' in proc.stderr


def test_result_json_from_an_outside_evaluation(tmp_path):
  """eval_checkpoint.py's result.json (fractions) goes into the table as percent."""
  tag = pr.Tag('perceiver_io_imagenet', '2-D Fourier features', 'released checkpoint')
  tables.write_result(str(tmp_path), tag, {'top1': 0.5, 'top5': 0.75})
  result = tables.read_workdir(str(tmp_path))
  assert result.tag == tag and result.value == pytest.approx(50.0)
  with pytest.raises(ValueError, match='unknown table'):
    tables.write_result(str(tmp_path), pr.Tag('table_99', 'x', 'y'), {'top1': 0.5})


@pytest.mark.slow
def test_every_table_from_small_runs(runs, mnist_runs, golden_dir, imagenet_sample, tmp_path):
  """Tables 1, 2, 3, 4, 6 and the Perceiver IO table, each from real eval outputs.

  Tiny versions of the paper presets (synthetic data where the real set is
  not available offline), each tagged with the cell its full-size preset
  fills; the Perceiver IO released-checkpoint cell comes from
  scripts/eval_checkpoint.py on a scaled-down released-format pickle.
  """

  def start(c):
    c.model.encoder.cross_attend_placement = 'start'

  def perceiver_io(c):
    c.model.name = 'perceiver_io'
    c.model.decoder.name = 'classification'
    c.model.encoder.num_cross_attends = 1
    start(c)

  cells = {
    pr.Tag('perceiver_t1', 'ResNet-50', 'top-1'): runs.get('resnet_smoke', 'configs/baselines.py:smoke_resnet'),
    pr.Tag('perceiver_t2', 'Perceiver (FF)', 'raw'): runs.get('imagenet_smoke', 'configs/imagenet.py:smoke'),
    pr.Tag('perceiver_t2', 'Perceiver (FF)', 'permuted'): runs.get(
      'imagenet_smoke_permuted', 'configs/imagenet.py:smoke', modify=permuted
    ),
    pr.Tag('perceiver_t3', 'Perceiver (raw audio)', 'audio+video'): runs.get(
      'audioset_smoke', 'configs/audioset.py:smoke'
    ),
    pr.Tag('perceiver_t4', 'Perceiver', 'top-1'): runs.get('modelnet_smoke', 'configs/modelnet40.py:smoke'),
    pr.Tag('perceiver_t4', 'Transformer (44x44, FF)', 'top-1'): runs.get(
      'points_smoke', 'configs/baselines.py:smoke_points'
    ),
    pr.Tag('perceiver_t6', '2 at start', 'top-1'): runs.get(
      'imagenet_smoke_start', 'configs/imagenet.py:smoke', modify=start
    ),
    pr.Tag('perceiver_io_imagenet', '2-D Fourier features', 'trained here'): runs.get(
      'imagenet_io_smoke', 'configs/imagenet.py:smoke', modify=perceiver_io
    ),
  }
  for tag, workdir in cells.items():  # Presets without a `table` section: tag by hand.
    script('make_tables.py', *_tag_args(workdir, tag))
  released = str(tmp_path / 'released_fourier')
  script(
    'eval_checkpoint.py',
    '--checkpoint',
    os.path.join(golden_dir, 'pickles', 'imagenet_fourier_position_encoding.pystate'),
    '--config',
    os.path.join(golden_dir, 'imagenet_fourier_position_encoding.npz'),
    '--manual_dir',
    imagenet_sample['manual_dir'],
    '--data_dir',
    imagenet_sample['data_dir'],
    '--workdir',
    released,
  )
  released_tag = pr.Tag('perceiver_io_imagenet', '2-D Fourier features', 'released checkpoint')
  script('make_tables.py', *_tag_args(released, released_tag))
  out = tmp_path / 'tables.md'
  script('make_tables.py', '--workdirs', *cells.values(), released, *mnist_runs.values(), '--out', str(out))
  grid = _parse(out.read_text())

  for tag, workdir in cells.items():
    for same in pr.equivalent_cells(tag):
      _check_paper_cell(grid, same, workdir)
  with open(os.path.join(released, 'result.json')) as f:
    top1 = 100 * json.load(f)['metrics']['top1']
  assert grid[pr.PERCEIVER_IO_IMAGENET.title]['2-D Fourier features'][:3] == [
    _fmt(top1),
    '79.0',
    _fmt(top1 - 79.0, signed=True),
  ]
  expected = {}
  for tag in [*cells, released_tag]:
    for same in pr.equivalent_cells(tag):
      expected.setdefault(same.table, set()).add((same.row, same.column))
  for key in pr.PAPER_TABLES:
    assert _filled(grid, pr.TABLES[key]) == expected.get(key, set()), key
  # Cells the paper leaves empty stay empty on the paper side.
  assert grid[pr.PERCEIVER_T3.title]['CNN-14'][3:6] == [tables.MISSING] * 3
