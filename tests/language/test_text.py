"""Pre-training text: readers, byte windows, masked batches (perceiver/data/text.py, masking.py)."""

import ml_collections
import numpy as np
import pytest

from perceiver import tokenizer
from perceiver.data import masking
from perceiver.data import text
from perceiver.data.errors import CorruptDataError, MissingDataError


def _write(path, content: bytes):
  path.write_bytes(content)
  return str(path)


def test_readers_lines_jsonl_files(tmp_path):
  lines = _write(tmp_path / 'a.txt', b'first doc\n\n  second doc  \n')
  jsonl = _write(tmp_path / 'c4.json', b'{"text": "c4 doc", "url": "u"}\n\n{"text": "two"}\n')
  one = _write(tmp_path / 'wiki_00', 'an article\nwith two lines\n'.encode())
  assert list(text.read_documents([lines], 'lines')) == ['first doc', 'second doc']
  assert list(text.read_documents([jsonl], 'jsonl')) == ['c4 doc', 'two']
  assert list(text.read_documents([one], 'files')) == ['an article\nwith two lines']


@pytest.mark.parametrize(
  'fmt,content,where',
  [
    ('jsonl', b'{"text": "ok"}\n{"text": SECRET\n', 'line 2'),
    ('jsonl', b'{"body": "SECRET"}\n', 'line 1'),
    ('lines', b'ok\n\xff\xfeSECRET\n', 'line 2'),
  ],
)
def test_reader_errors_name_file_and_line_not_content(tmp_path, fmt, content, where):
  path = _write(tmp_path / 'bad', content)
  with pytest.raises(CorruptDataError) as e:
    list(text.read_documents([path], fmt))
  assert path in str(e.value) and where in str(e.value) and 'SECRET' not in str(e.value)


def test_expand_files_missing_names_field():
  with pytest.raises(MissingDataError, match='data.train_files') as missing:
    text.expand_files('/nonexistent/*.txt', 'data.train_files')
  assert missing.value.field == 'data.train_files'


def test_windows_follow_the_released_convention():
  ids, mask = text.make_windows(['ab', 'cd'], 8, packing='pack')
  # Bytes + 6, no BOS/EOS, one [SEP] between packed documents, PAD after.
  want = [ord('a') + 6, ord('b') + 6, tokenizer.SEP, ord('c') + 6, ord('d') + 6, 0, 0, 0]
  np.testing.assert_array_equal(ids, [want])
  np.testing.assert_array_equal(mask, [[1, 1, 1, 1, 1, 0, 0, 0]])
  ids, _ = text.make_windows(['abcde', 'f'], 3, packing='cut')
  assert [tokenizer.decode(r) for r in ids] == ['abc', 'de', 'f']
  ids, _ = text.make_windows(['ab'], 4, special_tokens='cls_sep')
  np.testing.assert_array_equal(ids[0], [tokenizer.CLS, ord('a') + 6, ord('b') + 6, tokenizer.SEP])
  ids, _ = text.make_windows(['abcdefgh'] * 3, 4, max_windows=5)
  assert len(ids) == 5


def _data_config(tmp_path, n_docs=40):
  docs = [f'document number {i} has a few words in it.' for i in range(n_docs)]
  (tmp_path / 'train.txt').write_text('\n'.join(docs) + '\n')
  (tmp_path / 'valid.txt').write_text('\n'.join(docs[:7]) + '\n')
  return ml_collections.ConfigDict(
    dict(
      name='text',
      train_files=str(tmp_path / 'train.txt'),
      eval_files=str(tmp_path / 'valid.txt'),
      format='lines',
      text_key='text',
      tfds_name='',
      data_dir='',
      train_split='train',
      eval_split='validation',
      seq_len=32,
      packing='pack',
      special_tokens='none',
      max_windows=0,
      masking=dict(mask_rate=0.15, mask_token_prob=0.8, random_token_prob=0.1, whole_words=True, eval_seed=1234),
    )
  )


def _batches(cfg, **kw):
  args = dict(split='train', batch_size=4, shuffle_seed=7, process_index=0, process_count=1)
  args.update(kw)
  return list(text.get_dataset(cfg, **args).as_numpy_iterator())


def test_dataset_is_a_function_of_the_seed(tmp_path):
  cfg = _data_config(tmp_path)
  a, b, c = _batches(cfg), _batches(cfg), _batches(cfg, shuffle_seed=8)
  assert len(a) == text.num_examples(cfg, 'train') // 4
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  # Another epoch's seed: another order and other masks (dynamic masking).
  assert not np.array_equal(a[0]['tokens'], c[0]['tokens'])
  first = a[0]
  assert set(first) == {'tokens', 'input_mask', 'targets', 'target_weights'}
  assert first['tokens'].dtype == np.int32 and first['target_weights'].dtype == np.float32
  # Corruption only where the loss is taken; targets are the clean bytes.
  changed = first['tokens'] != first['targets']
  assert np.all(first['target_weights'][changed] == 1)
  assert (first['tokens'] == tokenizer.MASK).sum() > 0


def test_eval_masks_are_fixed_and_hosts_partition(tmp_path):
  cfg = _data_config(tmp_path)
  kw = dict(split='valid', shuffle_seed=None)
  a, b = _batches(cfg, **kw), _batches(cfg, **kw)
  np.testing.assert_array_equal(a[0]['tokens'], b[0]['tokens'])
  n = text.num_examples(cfg, 'valid')
  assert sum(len(x['tokens']) for x in a) == n
  order = [
    text.example_order(10, train=True, shuffle_seed=3, batch_size=2, process_index=i, process_count=2) for i in range(2)
  ]
  assert len(set(order[0]) | set(order[1])) == 8 and not set(order[0]) & set(order[1])


def test_whole_word_masking():
  ids = np.asarray(tokenizer.encode('the quick brown fox jumps over the lazy dog ' * 20, add_bos_eos=False), np.int32)
  cfg = masking.MaskingConfig()
  rng = np.random.default_rng(0)
  words = masking.word_ids(ids)
  inputs, weights = masking.mask_window(ids, rng, cfg)
  chosen = np.unique(words[weights > 0])
  for w in chosen:  # every byte of a chosen word is predicted, nothing else
    assert np.all(weights[words == w] == 1)
  assert np.all(weights[words < 0] == 0)
  content = (words >= 0).sum()
  assert 0.10 * content <= weights.sum() <= 0.15 * content + 1
  # 80/10/10 over many windows.
  stats = np.zeros(3)
  for seed in range(200):
    inp, wt = masking.mask_window(ids, np.random.default_rng(seed), cfg)
    sel = wt > 0
    stats += [
      (inp[sel] == tokenizer.MASK).sum(),
      ((inp[sel] != tokenizer.MASK) & (inp[sel] != ids[sel])).sum(),
      (inp[sel] == ids[sel]).sum(),
    ]
  frac = stats / stats.sum()
  assert abs(frac[0] - 0.8) < 0.02 and abs(frac[2] - 0.1 - 0.1 / 250) < 0.02, frac
  with pytest.raises(ValueError, match='mask_rate'):
    masking.MaskingConfig(mask_rate=0.0)


def _is_whole_word(words, weights):
  chosen = np.unique(words[weights > 0])
  return all(np.all(weights[words == w] == 1) for w in chosen)


def test_byte_fraction_mixes_single_byte_windows_into_training_only(tmp_path):
  ids = np.asarray(tokenizer.encode('the quick brown fox jumps over the lazy dog ' * 20, add_bos_eos=False), np.int32)
  words = masking.word_ids(ids)
  # Default (0): the random stream and so the masks are those of plain whole-word masking.
  plain = masking.mask_window(ids, np.random.default_rng(5), masking.MaskingConfig())
  zero = masking.mask_window(ids, np.random.default_rng(5), masking.MaskingConfig(byte_fraction=0.0))
  np.testing.assert_array_equal(plain[0], zero[0])
  np.testing.assert_array_equal(plain[1], zero[1])
  mixed = masking.MaskingConfig(byte_fraction=0.5)
  kinds = [_is_whole_word(words, masking.mask_window(ids, np.random.default_rng(s), mixed)[1]) for s in range(200)]
  # A single-byte selection of ~90 bytes at 15% is whole words only by accident (never, in practice).
  assert 0.35 < np.mean(kinds) < 0.65, np.mean(kinds)
  every = masking.MaskingConfig(byte_fraction=1.0)
  assert not any(_is_whole_word(words, masking.mask_window(ids, np.random.default_rng(s), every)[1]) for s in range(20))
  with pytest.raises(ValueError, match='byte_fraction'):
    masking.MaskingConfig(byte_fraction=1.5)
  # Through the pipeline: training batches mix, evaluation masks stay the whole-word ones.
  cfg = _data_config(tmp_path)
  base = _batches(cfg, split='valid', shuffle_seed=None)
  cfg.masking.byte_fraction = 1.0
  np.testing.assert_array_equal(_batches(cfg, split='valid', shuffle_seed=None)[0]['tokens'], base[0]['tokens'])
  train = _batches(cfg)[0]
  assert not all(_is_whole_word(masking.word_ids(t), w) for t, w in zip(train['targets'], train['target_weights']))


def test_tfds_text_needs_a_prepared_dataset(tmp_path):
  pytest.importorskip('tensorflow_datasets')
  docs = text._tfds_documents('c4/en', 'train', str(tmp_path), 'text')  # pylint: disable=protected-access
  with pytest.raises(MissingDataError) as missing:
    next(docs)
  assert missing.value.field == 'data.data_dir'
