"""GLUE in its published TSV layout (and TFDS ``glue/*`` when prepared).

The layout of the GLUE download (``{task}/{train,dev,test}.tsv``;
MNLI has ``dev_matched`` / ``dev_mismatched`` / ``test_matched`` /
``test_mismatched``):

  task   header  text columns                  label column
  CoLA   no*     3 (sentence)                  1 (0/1)        *test.tsv: header, index + sentence
  SST-2  yes     sentence                      label (0/1)
  MRPC   yes     #1 String, #2 String          Quality (0/1)
  QQP    yes     question1, question2          is_duplicate (0/1)
  STS-B  yes     sentence1, sentence2          score (float 0..5, regression)
  MNLI   yes     sentence1, sentence2          gold_label (entailment/neutral/contradiction)
  QNLI   yes     question, sentence            label (entailment/not_entailment)
  RTE    yes     sentence1, sentence2          label (entailment/not_entailment)
  WNLI   yes     sentence1, sentence2          label (0/1)

Test files have no label column (``label`` is -1 there). Fields are
tab-separated and never quoted: quote characters are text (MRPC and QQP
sentences contain unbalanced quotes, so a CSV reader with quoting would
merge rows). A row with the wrong number of columns, or a label outside the
task's set, raises ``GlueFormatError`` naming the file, line and column count,
never the row's content; ``on_malformed='skip'`` skips and counts such rows
instead (the public QQP train.tsv is known to have a few).

Model inputs follow HF's PerceiverTokenizer: [CLS] a [SEP] (single
sentence) or [CLS] a [SEP] b [SEP] (pair), bytes + 6, right-padded; pairs
longer than ``seq_len`` are cut longest-first.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from perceiver import tokenizer
from perceiver.data import registry
from perceiver.data import text
from perceiver.data.errors import MissingDataError

MAX_LINE_BYTES = 1 << 20


class GlueFormatError(ValueError):
  """A GLUE file does not have its task's layout (file and line in the message)."""


@dataclasses.dataclass(frozen=True)
class GlueTask:
  name: str  # directory name in the GLUE download
  text_columns: Tuple  # header names (or indices for header-less files)
  label_column: object  # header name or index
  labels: Optional[Tuple[str, ...]]  # label strings in id order; None: regression
  metrics: Tuple[str, ...]  # official metrics (GLUE paper, Table 1)
  header: bool = True
  test_text_columns: Optional[Tuple] = None  # when test.tsv differs
  eval_splits: Tuple[str, ...] = ('dev',)
  tfds_text: Tuple[str, ...] = ()  # TFDS glue/<name> feature names

  @property
  def num_outputs(self) -> int:
    return 1 if self.labels is None else len(self.labels)

  @property
  def is_regression(self) -> bool:
    return self.labels is None


_NLI = ('entailment', 'not_entailment')
TASKS: Dict[str, GlueTask] = {
  'cola': GlueTask(
    'CoLA', (3,), 1, ('0', '1'), ('mcc',), header=False, test_text_columns=('sentence',), tfds_text=('sentence',)
  ),
  'sst2': GlueTask('SST-2', ('sentence',), 'label', ('0', '1'), ('accuracy',), tfds_text=('sentence',)),
  'mrpc': GlueTask(
    'MRPC', ('#1 String', '#2 String'), 'Quality', ('0', '1'), ('f1', 'accuracy'), tfds_text=('sentence1', 'sentence2')
  ),
  'qqp': GlueTask(
    'QQP',
    ('question1', 'question2'),
    'is_duplicate',
    ('0', '1'),
    ('f1', 'accuracy'),
    tfds_text=('question1', 'question2'),
  ),
  'stsb': GlueTask(
    'STS-B', ('sentence1', 'sentence2'), 'score', None, ('pearson', 'spearman'), tfds_text=('sentence1', 'sentence2')
  ),
  # Label order of TFDS glue/mnli.
  'mnli': GlueTask(
    'MNLI',
    ('sentence1', 'sentence2'),
    'gold_label',
    ('entailment', 'neutral', 'contradiction'),
    ('accuracy',),
    eval_splits=('dev_matched', 'dev_mismatched'),
    tfds_text=('premise', 'hypothesis'),
  ),
  'qnli': GlueTask('QNLI', ('question', 'sentence'), 'label', _NLI, ('accuracy',), tfds_text=('question', 'sentence')),
  'rte': GlueTask(
    'RTE', ('sentence1', 'sentence2'), 'label', _NLI, ('accuracy',), tfds_text=('sentence1', 'sentence2')
  ),
  'wnli': GlueTask(
    'WNLI', ('sentence1', 'sentence2'), 'label', ('0', '1'), ('accuracy',), tfds_text=('sentence1', 'sentence2')
  ),
}


def get_task(name: str) -> GlueTask:
  key = name.lower().replace('-', '')
  if key not in TASKS:
    raise ValueError(f'data.task must be one of {sorted(TASKS)}, got {name!r}')
  return TASKS[key]


@dataclasses.dataclass
class GlueExamples:
  texts: List[Tuple[str, ...]]  # one tuple (1 or 2 texts) per example
  labels: np.ndarray  # int32 [N] (class id, -1 unlabelled) or float32 [N] (STS-B)
  skipped_lines: List[int]


def _split_line(raw: bytes, path: str, lineno: int) -> List[str]:
  if len(raw) > MAX_LINE_BYTES:
    raise GlueFormatError(f'{path}:{lineno}: line longer than {MAX_LINE_BYTES} bytes')
  try:
    text = raw.decode('utf-8')
  except UnicodeDecodeError:
    raise GlueFormatError(f'{path}:{lineno}: not valid UTF-8') from None
  return text.rstrip('\r\n').split('\t')


def read_tsv(path: str, task: GlueTask, *, labelled: bool = True, on_malformed: str = 'raise') -> GlueExamples:
  """One GLUE TSV file of ``task``. ``labelled=False`` for test files."""
  if on_malformed not in ('raise', 'skip'):
    raise ValueError(f"data.on_malformed must be 'raise' or 'skip', got {on_malformed!r}")
  if not os.path.isfile(path):
    raise MissingDataError(
      f'GLUE {task.name}',
      [path],
      'the GLUE data (https://gluebenchmark.com/tasks) unpacked as {task}/{train,dev,test}.tsv under data.glue_dir',
      field='data.glue_dir',
    )
  has_header = task.header or not labelled
  text_cols = task.text_columns if labelled else (task.test_text_columns or task.text_columns)
  texts: List[Tuple[str, ...]] = []
  labels: List = []
  skipped: List[int] = []
  width = None
  for lineno, raw in text.numbered_lines(path, MAX_LINE_BYTES):
    fields = _split_line(raw, path, lineno)
    if lineno == 1 and has_header:
      missing = [c for c in text_cols + ((task.label_column,) if labelled else ()) if c not in fields]
      if missing:
        raise GlueFormatError(f'{path}:1: header lacks the {task.name} column(s) {missing}')
      width = len(fields)
      index = {name: i for i, name in enumerate(fields)}
      cols = [index[c] for c in text_cols]
      label_col = index[task.label_column] if labelled else None
      continue
    if lineno == 1:  # header-less CoLA: four columns.
      width, cols, label_col = 4, list(text_cols), task.label_column
    if not raw.strip():
      continue
    try:
      if len(fields) != width:
        raise GlueFormatError(f'{path}:{lineno}: expected {width} tab-separated columns, got {len(fields)}')
      example = tuple(fields[c] for c in cols)
      if labelled:
        value = fields[label_col].strip()
        if task.is_regression:
          try:
            label = float(value)
          except ValueError:
            label = float('nan')
          if not np.isfinite(label):
            raise GlueFormatError(f'{path}:{lineno}: column {label_col + 1} is not a number')
        elif value in task.labels:
          label = task.labels.index(value)
        else:
          raise GlueFormatError(
            f'{path}:{lineno}: column {label_col + 1} is not one of the {task.name} labels {list(task.labels)}'
          )
      else:
        label = -1
    except GlueFormatError:
      if on_malformed == 'raise':
        raise
      skipped.append(lineno)
      continue
    texts.append(example)
    labels.append(label)
  if width is None:
    raise GlueFormatError(f'{path}: empty file')
  dtype = np.float32 if task.is_regression else np.int32
  return GlueExamples(texts, np.asarray(labels, dtype), skipped)


def split_file(glue_dir: str, task: GlueTask, split: str) -> Tuple[str, bool]:
  """(path, labelled) of ``split``: train, dev (MNLI: dev_matched), dev_*, test, test_*."""
  if split in ('validation', 'valid', 'eval'):
    split = 'dev'
  if split == 'dev' and task.name == 'MNLI':
    split = 'dev_matched'
  if split == 'test' and task.name == 'MNLI':
    split = 'test_matched'
  known = ('train',) + task.eval_splits + (('test_matched', 'test_mismatched') if task.name == 'MNLI' else ('test',))
  if split not in known:
    raise ValueError(f'GLUE {task.name} has splits {list(known)}, got {split!r}')
  return os.path.join(glue_dir, task.name, f'{split}.tsv'), not split.startswith('test')


def encode_examples(texts: Sequence[Tuple[str, ...]], seq_len: int) -> Tuple[np.ndarray, np.ndarray]:
  """[CLS] a [SEP] (b [SEP]) as ids int32 [N, seq_len] + input_mask int32 [N, seq_len]."""
  ids = np.full((len(texts), seq_len), tokenizer.PAD, np.int32)
  mask = np.zeros((len(texts), seq_len), np.int32)
  for i, parts in enumerate(texts):
    pieces = [tokenizer.encode(p, add_bos_eos=False) for p in parts]
    budget = seq_len - 1 - len(pieces)  # [CLS] + one [SEP] per text
    if budget < len(pieces):
      raise ValueError(f'data.seq_len={seq_len} is too short for {len(pieces)} text(s)')
    while sum(len(p) for p in pieces) > budget:  # longest-first truncation
      longest = max(range(len(pieces)), key=lambda j: len(pieces[j]))
      pieces[longest] = pieces[longest][:-1]
    row = [tokenizer.CLS]
    for p in pieces:
      row += p + [tokenizer.SEP]
    ids[i, : len(row)] = row
    mask[i, : len(row)] = 1
  return ids, mask


def read_tfds(task: GlueTask, split: str, data_dir: Optional[str]) -> GlueExamples:
  """TFDS ``glue/<task>`` when prepared (never downloads)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  name = 'glue/' + [k for k, v in TASKS.items() if v is task][0]
  builder = tfds.builder(name, data_dir=data_dir)
  if not os.path.isdir(builder.data_dir):
    raise MissingDataError(
      f'tfds {name}',
      [builder.data_dir],
      'prepare it with `tfds build` (this pipeline never downloads)',
      field='data.data_dir',
    )
  split = {'dev': 'validation', 'dev_matched': 'validation_matched', 'dev_mismatched': 'validation_mismatched'}.get(
    split, split
  )
  texts, labels = [], []
  for ex in builder.as_dataset(split=split, shuffle_files=False).as_numpy_iterator():
    texts.append(tuple(ex[k].decode('utf-8', errors='replace') for k in task.tfds_text))
    labels.append(ex['label'])
  dtype = np.float32 if task.is_regression else np.int32
  return GlueExamples(texts, np.asarray(labels, dtype), [])


_CACHE: dict = {}


def load_split(data_config, split: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(ids [N, T], input_mask [N, T], labels [N]) of ``split``, cached per process."""
  key = (data_config.to_json(), split)
  if key not in _CACHE:
    task = get_task(data_config.task)
    if data_config.source == 'tfds':
      examples = read_tfds(task, 'dev' if split != 'train' and split != 'test' else split, data_config.data_dir or None)
    elif data_config.source == 'tsv':
      path, labelled = split_file(
        data_config.glue_dir, task, data_config.eval_split if split not in ('train', 'test') else split
      )
      examples = read_tsv(path, task, labelled=labelled, on_malformed=data_config.on_malformed)
    else:
      raise ValueError(f"data.source must be 'tsv' or 'tfds', got {data_config.source!r}")
    ids, mask = encode_examples(examples.texts, data_config.seq_len)
    _CACHE.clear() if len(_CACHE) > 8 else None
    _CACHE[key] = (ids, mask, examples.labels)
  return _CACHE[key]


def get_dataset(
  data_config, *, split: str, batch_size: int, shuffle_seed: Optional[int], process_index: int, process_count: int
):
  """tf.data batches {tokens, input_mask, label}; train: one epoch in shuffle_seed's order."""
  from perceiver.data._tf import tf  # pylint: disable=g-import-not-at-top

  ids, mask, labels = load_split(data_config, split)
  train = split == 'train'
  order = text.example_order(
    len(ids),
    train=train,
    shuffle_seed=shuffle_seed,
    batch_size=batch_size,
    process_index=process_index,
    process_count=process_count,
  )
  ds = tf.data.Dataset.from_tensor_slices(dict(tokens=ids[order], input_mask=mask[order], label=labels[order]))
  return ds.batch(batch_size, drop_remainder=train)


def num_examples(data_config, split: str) -> int:
  return len(load_split(data_config, split)[0])


SOURCE = registry.DataSource('glue', get_dataset, num_examples)
