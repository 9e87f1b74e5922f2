"""GLUE TSV readers on fixtures in each task's published layout (perceiver/data/glue.py)."""

import ml_collections
import numpy as np
import pytest

from perceiver import tokenizer
from perceiver.data import glue
from perceiver.data.errors import MissingDataError

T = '\t'
MNLI_TRAIN_HEADER = (
  'index promptID pairID genre sentence1_binary_parse sentence2_binary_parse '
  'sentence1_parse sentence2_parse sentence1 sentence2 label1 gold_label'
).split()
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER[:-1] + ['label2', 'label3', 'label4', 'label5', 'gold_label']

# task -> (file name, lines, expected texts, expected labels); headers and
# quirks as in the GLUE download (CoLA train/dev without header; quotes in
# MRPC/QQP are text; MNLI dev has five annotator labels; STS-B is a float).
FIXTURES = {
  'cola': (
    'dev.tsv',
    [
      'gj04\t1\t\tThe sailors rode the breeze clear of the rocks.',
      'gj04\t0\t*\tThe more we study verbs, the crazier they get get.',
    ],
    [('The sailors rode the breeze clear of the rocks.',), ('The more we study verbs, the crazier they get get.',)],
    [1, 0],
  ),
  'sst2': (
    'train.tsv',
    ['sentence\tlabel', "it 's a charming and often affecting journey . \t1", 'unflinchingly bleak and desperate \t0'],
    [("it 's a charming and often affecting journey . ",), ('unflinchingly bleak and desperate ',)],
    [1, 0],
  ),
  'mrpc': (
    'dev.tsv',
    [
      '\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String',
      '1\t1355540\t1355592\tHe said "the foodservice pie business doesn\'t fit.\tThe "pie business" doesn\'t fit',
    ],
    [('He said "the foodservice pie business doesn\'t fit.', 'The "pie business" doesn\'t fit')],
    [1],
  ),
  'qqp': (
    'train.tsv',
    [
      'id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate',
      '133273\t213221\t213222\tHow is the life of a math student? "Could you describe"\tWhich level of prepration is enough?\t0',
    ],
    [('How is the life of a math student? "Could you describe"', 'Which level of prepration is enough?')],
    [0],
  ),
  'stsb': (
    'dev.tsv',
    [
      'index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore',
      '0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man with a hard hat is dancing.\tA man wearing a hard hat is dancing.\t5.000',
    ],
    [('A man with a hard hat is dancing.', 'A man wearing a hard hat is dancing.')],
    [5.0],
  ),
  'mnli': (
    'dev_matched.tsv',
    [
      T.join(MNLI_DEV_HEADER),
      T.join(
        [
          '0',
          '63735',
          '63735n',
          'slate',
          '( ( The ...',
          '( ...',
          '(ROOT ...',
          '(ROOT ...',
          'The new rights are nice enough',
          'Everyone really likes the newest benefits',
          'neutral',
          'entailment',
          'neutral',
          'neutral',
          'neutral',
          'neutral',
        ]
      ),
    ],
    [('The new rights are nice enough', 'Everyone really likes the newest benefits')],
    [1],
  ),
  'qnli': (
    'dev.tsv',
    [
      'index\tquestion\tsentence\tlabel',
      '0\tWhat came into force after the new constitution was herald?\tAs of that day, the new constitution came into force.\tentailment',
    ],
    [
      (
        'What came into force after the new constitution was herald?',
        'As of that day, the new constitution came into force.',
      )
    ],
    [0],
  ),
  'rte': (
    'train.tsv',
    [
      'index\tsentence1\tsentence2\tlabel',
      '0\tNo Weapons of Mass Destruction Found in Iraq Yet.\tWeapons of Mass Destruction Found in Iraq.\tnot_entailment',
    ],
    [('No Weapons of Mass Destruction Found in Iraq Yet.', 'Weapons of Mass Destruction Found in Iraq.')],
    [1],
  ),
  'wnli': (
    'train.tsv',
    [
      'index\tsentence1\tsentence2\tlabel',
      '0\tI stuck a pin through a carrot. When I pulled the pin out, it had a hole.\tThe carrot had a hole.\t1',
    ],
    [('I stuck a pin through a carrot. When I pulled the pin out, it had a hole.', 'The carrot had a hole.')],
    [1],
  ),
}


def _write(tmp_path, task, name, lines):
  d = tmp_path / glue.get_task(task).name
  d.mkdir(parents=True, exist_ok=True)
  (d / name).write_bytes(('\r\n' if task == 'mrpc' else '\n').join(lines).encode('utf-8') + b'\n')
  return str(d / name)


@pytest.mark.parametrize('task', sorted(FIXTURES))
def test_every_task_layout(tmp_path, task):
  name, lines, texts, labels = FIXTURES[task]
  if task == 'mrpc':  # the published MRPC files start with a UTF-8 BOM
    lines = list(lines)
  path = _write(tmp_path, task, name, lines)
  spec = glue.get_task(task)
  if task == 'mrpc':
    with pytest.raises(glue.GlueFormatError):  # BOM before the header: refused, not misread
      glue.read_tsv(path, spec)
    lines = [lines[0].lstrip('\ufeff')] + lines[1:]
    path = _write(tmp_path, task, name, lines)
  got = glue.read_tsv(path, spec)
  assert got.texts == texts
  np.testing.assert_allclose(got.labels, labels)
  assert got.labels.dtype == (np.float32 if task == 'stsb' else np.int32)


def test_mnli_train_layout_and_test_files(tmp_path):
  row = [
    '1',
    '2',
    '3n',
    'fiction',
    '(',
    '(',
    '(',
    '(',
    'premise here',
    'hypothesis here',
    'contradiction',
    'contradiction',
  ]
  path = _write(tmp_path, 'mnli', 'train.tsv', [T.join(MNLI_TRAIN_HEADER), T.join(row)])
  got = glue.read_tsv(path, glue.get_task('mnli'))
  assert got.texts == [('premise here', 'hypothesis here')] and list(got.labels) == [2]
  path = _write(tmp_path, 'cola', 'test.tsv', ['index\tsentence', '0\tBill whistled past the house.'])
  got = glue.read_tsv(path, glue.get_task('cola'), labelled=False)
  assert got.texts == [('Bill whistled past the house.',)] and list(got.labels) == [-1]
  assert glue.split_file(str(tmp_path), glue.get_task('mnli'), 'dev')[0].endswith('MNLI/dev_matched.tsv')
  assert glue.split_file(str(tmp_path), glue.get_task('mnli'), 'test')[1] is False


@pytest.mark.parametrize(
  'bad_line,why',
  [
    ('5\tSECRET text\t0\textra\tmore', 'expected 4 tab-separated columns, got 5'),
    ('5\tSECRET\tfoo\tmaybe', 'column 4 is not one of'),
    ('5\tSECRET', 'expected 4 tab-separated columns, got 2'),
  ],
)
def test_malformed_rows_name_file_and_line(tmp_path, bad_line, why):
  lines = ['index\tsentence1\tsentence2\tlabel', '0\ta\tb\tentailment', bad_line, '1\tc\td\tnot_entailment']
  path = _write(tmp_path, 'rte', 'dev.tsv', lines)
  with pytest.raises(glue.GlueFormatError) as e:
    glue.read_tsv(path, glue.get_task('rte'))
  msg = str(e.value)
  assert f'{path}:3:' in msg and why in msg and 'SECRET' not in msg and 'maybe' not in msg
  got = glue.read_tsv(path, glue.get_task('rte'), on_malformed='skip')
  assert got.skipped_lines == [3] and len(got.texts) == 2


def test_bad_header_and_numbers(tmp_path):
  path = _write(tmp_path, 'sst2', 'dev.tsv', ['text\tlabel', 'x\t1'])
  with pytest.raises(glue.GlueFormatError, match=r'dev.tsv:1: header lacks'):
    glue.read_tsv(path, glue.get_task('sst2'))
  name, lines, _, _ = FIXTURES['stsb']
  path = _write(tmp_path, 'stsb', name, [lines[0], lines[1].replace('5.000', 'nan')])
  with pytest.raises(glue.GlueFormatError, match=r':2: column 10 is not a number'):
    glue.read_tsv(path, glue.get_task('stsb'))
  with pytest.raises(MissingDataError) as missing:
    glue.read_tsv(str(tmp_path / 'nope.tsv'), glue.get_task('sst2'))
  assert missing.value.field == 'data.glue_dir'  # the field the launcher tells the user to set
  with pytest.raises(ValueError, match='data.task'):
    glue.get_task('squad')


def test_encoding_is_cls_a_sep_b_sep_with_longest_first_truncation():
  ids, mask = glue.encode_examples([('ab', 'cdef')], 8)
  want = [tokenizer.CLS, 103, 104, tokenizer.SEP, 105, 106, 107, tokenizer.SEP]
  np.testing.assert_array_equal(ids[0], want)
  assert mask.sum() == 8
  ids, mask = glue.encode_examples([('abcdefgh', 'xy')], 8)  # 'abcdefgh' loses bytes first
  assert tokenizer.decode(ids[0]) == 'abcxy' and mask.sum() == 8
  ids, mask = glue.encode_examples([('hi',)], 6)
  np.testing.assert_array_equal(ids[0], [tokenizer.CLS, 110, 111, tokenizer.SEP, 0, 0])


def test_dataset_batches(tmp_path):
  lines = ['sentence\tlabel'] + [f'sentence {i}\t{i % 2}' for i in range(10)]
  _write(tmp_path, 'sst2', 'train.tsv', lines)
  _write(tmp_path, 'sst2', 'dev.tsv', lines[:4])
  cfg = ml_collections.ConfigDict(
    dict(
      name='glue',
      task='sst2',
      source='tsv',
      glue_dir=str(tmp_path),
      data_dir='',
      eval_split='dev',
      seq_len=16,
      on_malformed='raise',
    )
  )
  train = list(
    glue.get_dataset(
      cfg, split='train', batch_size=4, shuffle_seed=1, process_index=0, process_count=1
    ).as_numpy_iterator()
  )
  assert len(train) == 2 and set(train[0]) == {'tokens', 'input_mask', 'label'}
  assert glue.num_examples(cfg, 'valid') == 3
