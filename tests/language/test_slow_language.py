"""Done-when measurements on the real sample text (Debian fortunes), CPU.

  python -m pytest -q -s -m slow tests/language/test_slow_language.py

One MLM pre-training run of the `sample` preset (whole words masked), for
the masked-byte figures, fill-in-the-blank on held-out text and the
continuation pair task; one of `sample_bytes` (single bytes masked), to
fine-tune the topic task from (against the same classifier from scratch). Figures are
printed and written to $PERCEIVER_LANG_RESULTS (default: the test's tmp dir)
as JSON; docs/language.md quotes a run.
"""

import json
import os
import time

import numpy as np
import pytest

from perceiver_configs import language as language_configs
from perceiver import tokenizer
from perceiver.data import glue
from perceiver.data import text
from perceiver.train import trainer

from tests.language import baselines

pytestmark = pytest.mark.slow
FORTUNES = '/usr/share/games/fortunes'
RESULTS = {}


def _record(name, **values):
  RESULTS[name] = values
  print(f'\n[language] {name}: {json.dumps(values)}', flush=True)
  path = os.environ.get('PERCEIVER_LANG_RESULTS')
  if path:
    with open(path, 'w') as f:
      json.dump(RESULTS, f, indent=2)


@pytest.fixture(scope='module')
def sample_dir(tmp_path_factory):
  if not os.path.isdir(FORTUNES):
    pytest.skip('Debian fortunes not installed (bash scripts/install_sample_sources.sh)')
  from perceiver_tools import sample_text

  out = str(tmp_path_factory.mktemp('fortunes'))
  sample_text.write_text_sample(out, log=lambda *_: None)
  return out


def _with_paths(config, sample_dir):
  config.unlock()
  if config.data.name == 'text':
    config.data.train_files = f'{sample_dir}/text/train.txt'
    config.data.eval_files = f'{sample_dir}/text/valid.txt'
  else:
    config.data.glue_dir = f'{sample_dir}/glue'
  config.checkpoint.async_save = False
  return config


@pytest.fixture(scope='module')
def pretrained(sample_dir, tmp_path_factory):
  return _pretrain('sample', sample_dir, tmp_path_factory)


def _pretrain(preset, sample_dir, tmp_path_factory):
  config = _with_paths(language_configs.get_config(preset), sample_dir)
  workdir = str(tmp_path_factory.mktemp(preset))
  start = time.time()
  result = trainer.train_and_evaluate(config, workdir)
  return dict(config=config, workdir=workdir, result=result, wall_s=time.time() - start)


@pytest.fixture(scope='module')
def pretrained_bytes(sample_dir, tmp_path_factory):
  return _pretrain('sample_bytes', sample_dir, tmp_path_factory)['workdir']


# Measured 2026-11-30 (docs/language.md "Measured"): with the position-aligned
# init and the copy loss the `sample` MLM (cosine over 8,000 steps, 35 min on
# the shared CPU) reaches 27.27% held-out masked-byte accuracy, against 18.93%
# (unigram), 20.06% (bigram) and 23.65% (length + offset) on the same masks.
# Over 4,000 steps it ended at 25.03%; from the reference's random init it
# stayed at 11.0% for 3,300 steps. On the pre-training text without
# near-copies of held-out entries (fifth session): 27.08% vs bigram 20.05%,
# fill-mask 39/40, 17 min alone on the box. With the byte n-gram layer on
# the embeddings (eighth session): 28.77%, fill-mask 33/40.


def _mlm_figures(pretrained):
  config = pretrained['config']
  ids, mask = text.split_windows(config.data, 'train')
  unigram, bigram = baselines.byte_counts(ids, mask)
  batches = list(
    text.get_dataset(
      config.data, split='valid', batch_size=256, shuffle_seed=None, process_index=0, process_count=1
    ).as_numpy_iterator()
  )
  cat = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  uni = baselines.unigram_accuracy(unigram, cat['tokens'], cat['targets'], cat['target_weights'])
  bi = baselines.bigram_accuracy(unigram, bigram, cat['tokens'], cat['targets'], cat['target_weights'])
  length_offset = baselines.length_offset_accuracy(ids, mask, cat['tokens'], cat['targets'], cat['target_weights'])
  ev = pretrained['result']['eval']
  _record(
    'mlm',
    masked_accuracy=ev['masked_accuracy'],
    masked_loss=ev['masked_loss'],
    unigram_accuracy=uni,
    bigram_accuracy=bi,
    length_offset_accuracy=length_offset,
    masked_bytes=ev['masked_bytes'],
    steps=config.train.num_steps,
    batch=config.train.batch_size,
    wall_s=pretrained['wall_s'],
  )
  return ev['masked_accuracy'], uni, bi


def test_mlm_beats_unigram_and_bigram(pretrained):
  accuracy, uni, bi = _mlm_figures(pretrained)
  assert bi > uni
  assert accuracy > bi + 0.02


def test_mlm_clearly_above_the_bigram(pretrained):
  # "Clearly above": bigram + 5 points. Measured 27.27% vs 20.06% (+7.2 points).
  accuracy, _, bi = _mlm_figures(pretrained)
  assert accuracy > bi + 0.05


def _finetune(sample_dir, preset, tmp_path, init_from, seed=0, **overrides):
  config = _with_paths(language_configs.get_config(preset), sample_dir)
  config.init_from = init_from
  config.seed = seed
  for key, value in overrides.items():
    section, name = key.split('.')
    config[section][name] = value
  start = time.time()
  result = trainer.train_and_evaluate(config, str(tmp_path))
  return config, result['eval'], time.time() - start


TOPIC_SEEDS = (0, 1, 2)


def _beats(a, b, name):
  """mean(a) > mean(b) by 2 points and by 2 standard errors of the difference (seeds)."""
  a, b = np.asarray(a, np.float64), np.atleast_1d(np.asarray(b, np.float64))
  se = np.sqrt(a.var(ddof=1) / len(a) + (b.var(ddof=1) / len(b) if len(b) > 1 else 0.0))
  gap = a.mean() - b.mean()
  assert gap > max(0.02, 2 * se), f'{name}: {a.mean():.4f} vs {b.mean():.4f} (gap {gap:.4f}, 2 s.e. {2 * se:.4f})'


def test_topic_finetuning_beats_scratch_and_bag_of_bytes(pretrained_bytes, sample_dir, tmp_path):
  # Same classifier and steps, from the MLM encoder and from the reference's
  # random init, over several seeds (head init and data order): single runs
  # differ by up to 4 points on the 338 dev sentences.
  params = os.path.join(pretrained_bytes, 'params.npz')
  tuned, scratch, walls = [], [], []
  for seed in TOPIC_SEEDS:
    config, ev, wall = _finetune(sample_dir, 'sample_topic', tmp_path / f'ft{seed}', params, seed=seed)
    tuned.append(ev['accuracy'])
    walls.append(wall)
    _, ev, wall = _finetune(sample_dir, 'sample_topic', tmp_path / f'scratch{seed}', '', seed=seed)
    scratch.append(ev['accuracy'])
    walls.append(wall)
  task = glue.get_task('sst2')
  train = glue.read_tsv(f'{sample_dir}/glue/SST-2/train.tsv', task)
  dev = glue.read_tsv(f'{sample_dir}/glue/SST-2/dev.tsv', task)
  bow = baselines.bag_of_bytes_accuracy(
    [t[0] for t in train.texts], train.labels, [t[0] for t in dev.texts], dev.labels
  )
  _record(
    'topic',
    pretrained_accuracy=tuned,
    scratch_accuracy=scratch,
    pretrained_mean=float(np.mean(tuned)),
    scratch_mean=float(np.mean(scratch)),
    bag_of_bytes_accuracy=bow,
    seeds=list(TOPIC_SEEDS),
    steps=config.train.num_steps,
    batch=config.train.batch_size,
    wall_s=walls,
    dev_examples=len(dev.texts),
  )
  # Measured on the AVX2-only 2-core box (docs/language.md, "Single bytes
  # masked, with the n-gram layer"), seeds 0-2: from the `sample_bytes`
  # encoder 78.7 80.5 81.1% (mean 80.1%), from scratch 72.8 76.0 77.5%
  # (75.4%): gap 4.6 points, 2 s.e. 3.1; bag of bytes 71.9%. From the
  # whole-word `sample` encoder the gap was 0.5-1.7 points (earlier
  # sessions there), which is why this check fine-tunes from `sample_bytes`.
  # This test end to end on that box (nineteenth session): the same figures,
  # passed, 84 min alone.
  _beats(tuned, scratch, 'from the MLM encoder vs from scratch')
  _beats(scratch, bow, 'from scratch vs bag of bytes')


def test_pair_task_end_to_end(pretrained, sample_dir, tmp_path):
  params = os.path.join(pretrained['workdir'], 'params.npz')
  config, ev, wall = _finetune(sample_dir, 'sample_pair', tmp_path, params)
  _record(
    'pair',
    accuracy=ev['accuracy'],
    glue_score=ev['glue_score'],
    steps=config.train.num_steps,
    wall_s=wall,
    dev_examples=ev['num_examples'],
  )
  assert 0 <= ev['accuracy'] <= 1 and ev['num_examples'] > 100


def test_fill_mask_predicts_a_masked_common_word(pretrained, sample_dir):
  # Measured 35/40 (0.875) top-1 "the" with the 8,000-step `sample` run (28/40 after 4,000);
  # 33/40 with the byte n-gram layer (eighth session).
  from perceiver_tools.cli import fill_mask

  params, cfg, _ = fill_mask.load_masked_lm(os.path.join(pretrained['workdir'], 'params.npz'))
  sentences = []
  with open(f'{sample_dir}/text/valid.txt', encoding='utf-8') as f:
    for line in f:
      line = line.strip()[:120]
      at = line.find(' the ', 10)
      if at > 0 and len(line.encode('utf-8')) == len(line):  # ASCII: byte = char offsets
        sentences.append((line, at + 1))
      if len(sentences) == 40:
        break
  hits, shown = 0, []
  for line, at in sentences:
    data, masked = fill_mask.parse_text(line, 3, [f'{at}:{at + 3}'])
    tokens, mask, offset = fill_mask.model_inputs(data, masked, int(cfg['max_seq_len']), 'none')
    logits = fill_mask.fill(params, cfg, tokens, mask)[0]
    guess = tokenizer.decode(np.argmax(logits[offset + at : offset + at + 3], -1))
    hits += guess == 'the'
    shown.append(guess)
  rate = hits / len(sentences)
  _record('fill_mask', word='the', sentences=len(sentences), top1_exact=rate, examples=shown[:10])
  assert rate >= 0.5
