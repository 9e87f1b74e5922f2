"""Masked LM / GLUE classifier builders, encoder transfer, metrics, fill_mask.py parity."""

import json
import os
import subprocess
import sys

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perceiver import io_processors
from perceiver import language
from perceiver import tokenizer
from perceiver.checkpoints import CheckpointMismatchError, load_checkpoint
from perceiver_tools.cli import fill_mask

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(os.path.dirname(REPO), 'shared', 'golden')
ORACLE = os.path.join(GOLDEN, 'official', 'language_masked_lm.npz')
PICKLE = os.path.join(GOLDEN, 'official', 'pickles', 'language_masked_lm.pickle')
HF = os.path.join(GOLDEN, 'hf', 'language_perceiver.npz')

needs_golden = pytest.mark.skipif(not os.path.exists(PICKLE), reason='golden files not present')


def _golden():
  z = np.load(ORACLE)
  return json.loads(str(z['__config__'])), z


def _row_text(ids):
  """A golden input row as fill_mask --text: runs of [MASK] ids -> [MASK:n]."""
  out, i = '', 0
  ids = [int(t) for t in ids if t != tokenizer.PAD]
  while i < len(ids):
    if ids[i] == tokenizer.MASK:
      j = i
      while j < len(ids) and ids[j] == tokenizer.MASK:
        j += 1
      out += f'[MASK:{j - i}]'
      i = j
    else:
      out += bytes([ids[i] - tokenizer.NUM_SPECIAL]).decode('latin-1')
      i += 1
  return out


@needs_golden
def test_fill_mask_reproduces_the_reference_logits():
  """fill_mask's input path + model on the released-format pickle == reference output."""
  cfg, z = _golden()
  params, got_cfg, fmt = fill_mask.load_masked_lm(PICKLE, ORACLE)
  assert fmt == 'pickle' and got_cfg['encoder'] == cfg['encoder']
  for row in range(2):
    text = _row_text(z['input::inputs'][row])
    data, masked = fill_mask.parse_text(text, 9, require_mask=False)  # row 1 has no mask
    tokens, mask, offset = fill_mask.model_inputs(data, masked, cfg['max_seq_len'], 'none')
    np.testing.assert_array_equal(tokens[0], z['input::inputs'][row])
    np.testing.assert_array_equal(mask[0], z['input::input_mask'][row])
    logits = fill_mask.fill(params, got_cfg, tokens, mask)[0]
    ref = z['output'][row]
    err = np.abs(logits - ref).max()
    assert err <= 1e-4 and err / np.abs(ref).max() <= 1e-3, err
    lines = fill_mask.describe(data, masked, logits, offset)
    assert len(lines) == 1 + len(masked)


@needs_golden
def test_fill_mask_cli_pickle_and_hf(tmp_path):
  cfg, z = _golden()
  text = _row_text(z['input::inputs'][0])
  out = tmp_path / 'logits.npy'
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  run = subprocess.run(
    [
      sys.executable,
      os.path.join(REPO, 'scripts', 'fill_mask.py'),
      '--checkpoint',
      PICKLE,
      '--model_config',
      ORACLE,
      '--text',
      text,
      '--dump_logits',
      str(out),
    ],
    capture_output=True,
    text=True,
    env=env,
    timeout=300,
    check=False,
  )
  assert run.returncode == 0, run.stderr[-2000:]
  np.testing.assert_allclose(np.load(out), z['output'][0], atol=1e-4)
  assert 'bytes 5:9 ->' in run.stdout
  # HF weights: config from the file, [CLS]/[SEP] added (HF's tokenizer).
  run = subprocess.run(
    [
      sys.executable,
      os.path.join(REPO, 'scripts', 'fill_mask.py'),
      '--checkpoint',
      HF,
      '--text',
      'Perceiver[MASK:3]',
      '--span',
      '0:2',
    ],
    capture_output=True,
    text=True,
    env=env,
    timeout=300,
    check=False,
  )
  assert run.returncode == 0, run.stderr[-2000:]
  assert 'bytes 0:2 ->' in run.stdout and 'bytes 9:12 ->' in run.stdout


def test_parse_text():
  data, masked = fill_mask.parse_text('a[MASK]b[MASK:2]', 3)
  assert data == b'a\0\0\0b\0\0' and masked == [(1, 4), (5, 7)]
  with pytest.raises(ValueError, match='nothing to fill'):
    fill_mask.parse_text('no mask here', 3)
  with pytest.raises(ValueError, match='--span'):
    fill_mask.parse_text('abc', 3, ['2:9'])
  tokens, mask, offset = fill_mask.model_inputs(b'ab\0', [(2, 3)], 6, 'cls_sep')
  np.testing.assert_array_equal(tokens[0], [tokenizer.CLS, 103, 104, tokenizer.MASK, tokenizer.SEP, 0])
  assert offset == 1 and mask.sum() == 5
  with pytest.raises(ValueError, match='at most 4'):
    fill_mask.model_inputs(b'abcdef', [(0, 1)], 4, 'none')


@needs_golden
def test_classifier_takes_the_encoder_and_keeps_a_fresh_head():
  cfg, z = _golden()
  loaded, _, _ = load_checkpoint(PICKLE)
  inputs = dict(tokens=z['input::inputs'], input_mask=z['input::input_mask'])
  clf = language.build_classifier(cfg, 3)
  fresh, state = clf.init(jax.random.PRNGKey(0), inputs, is_training=True)
  params, report = language.transfer_encoder(fresh, loaded)
  assert report['fresh'] and all(m.startswith(language.HEAD_MODULE) for m in report['fresh'])
  assert 'embed' in report['loaded'] and 'basic_decoder/~/trainable_position_encoding' in report['dropped']
  for m in report['loaded']:
    for n in params[m]:
      np.testing.assert_array_equal(params[m][n], loaded[m][n])
  for m in report['fresh']:
    for n in params[m]:
      np.testing.assert_array_equal(params[m][n], fresh[m][n])
  logits, _ = clf.apply(params, state, None, inputs, is_training=False)
  assert logits.shape == (2, 3) and np.all(np.isfinite(logits))
  labels = language.trainable_labels(params, freeze_encoder=True)
  assert labels['embed']['embeddings'] == 'freeze'
  assert {v for m in report['fresh'] for v in labels[m].values()} == {'train'}
  # A checkpoint of another width does not fit: every mismatch is listed.
  bad = dict(loaded, embed={'embeddings': np.zeros((262, 3), np.float32)})
  with pytest.raises(CheckpointMismatchError, match=r'embed/embeddings: file \(262, 3\)'):
    language.transfer_encoder(fresh, bad)


def test_metrics_match_definitions():
  out = language.masked_lm_outputs(
    np.log(np.array([[[0.7, 0.3], [0.2, 0.8]]], np.float32)), np.array([[0, 0]]), np.array([[1.0, 1.0]])
  )
  np.testing.assert_allclose(out['loss_sum'], [-np.log(0.7) - np.log(0.2)], rtol=1e-5)
  np.testing.assert_allclose(out['correct'], [1.0])
  np.testing.assert_allclose(out['count'], [2.0])
  m = language.glue_metrics(('mcc', 'f1', 'accuracy'), np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
  assert m['accuracy'] == 0.75 and abs(m['f1'] - 2 / 3) < 1e-9 and abs(m['mcc'] - 0.57735) < 1e-5
  r = language.glue_metrics(('pearson', 'spearman'), np.array([1.0, 2, 3, 4]), np.array([1.0, 2, 3, 5]))
  assert r['spearman'] == pytest.approx(1.0) and 0.95 < r['pearson'] < 1.0
  assert language.glue_score({'f1': 0.8, 'accuracy': 0.7}) == pytest.approx(0.75)
  assert language.glue_average({'mnli_m': 80, 'mnli_mm': 82, 'sst2': 90, 'wnli': 10}) == 85.5


def test_embed_init_scale_changes_only_the_embedding_init():
  from perceiver_configs import language as language_configs

  cfg = language_configs.tiny_model(16, d_model=8, latents=4, channels=8, self_attends=1, heads=2)
  inputs = dict(tokens=np.full((1, 16), 40, np.int32), input_mask=np.ones((1, 16), np.int32))
  scaled, _ = language.build_masked_lm(cfg).init(jax.random.PRNGKey(0), inputs, is_training=False)
  cfg.pop('embed_init_scale')
  default, _ = language.build_masked_lm(cfg).init(jax.random.PRNGKey(0), inputs, is_training=False)
  np.testing.assert_allclose(scaled['embed']['embeddings'], 0.02 * default['embed']['embeddings'], rtol=1e-6)
  np.testing.assert_array_equal(scaled['embedding_decoder']['bias'], default['embedding_decoder']['bias'])
  with pytest.raises(ValueError, match='embed_init_scale'):
    language.reference_config(dict(cfg, embed_init_scale=-1.0))


@needs_golden
def test_hf_weights_fill_the_classifier_encoder():
  """init_from HF `deepmind/language-perceiver` layout: same modules as the pickle."""
  loaded, _, hf_cfg = load_checkpoint(HF)
  assert hf_cfg['model'] == 'masked_lm'
  inputs = dict(tokens=np.full((1, 8), 40, np.int32), input_mask=np.ones((1, 8), np.int32))
  clf = language.build_classifier(hf_cfg, 2)
  fresh, _ = clf.init(jax.random.PRNGKey(0), inputs, is_training=True)
  params, report = language.transfer_encoder(fresh, loaded)
  np.testing.assert_array_equal(params['embed']['embeddings'], loaded['embed']['embeddings'])
  assert all(m.startswith(language.HEAD_MODULE) for m in report['fresh'])


def test_sinusoid_table_pairs_make_head_dot_products_a_function_of_distance():
  table = language.sinusoid_table(32, 16)  # [T, C]
  assert table.shape == (32, 16) and table.dtype == np.float32
  assert abs(float(table.std()) - 1.0) < 1e-5
  for head in range(4):  # 4 heads of 4 channels: two (sin, cos) pairs each
    s = table[:, 4 * head : 4 * head + 4]
    near = [float(s[t] @ s[t + 3]) for t in range(0, 28, 5)]
    np.testing.assert_allclose(near, near[0], rtol=1e-4, atol=1e-4)


def _aligned_tiny(**aligned):
  from perceiver_configs import language as language_configs

  cfg = language_configs.tiny_model(32, d_model=16, latents=8, channels=32, self_attends=2, heads=2)
  cfg['aligned_init'] = dict(enabled=True, **aligned)
  return cfg


def test_aligned_init_routes_positions_and_changes_only_init_params():
  cfg = _aligned_tiny()
  inputs = dict(tokens=np.full((1, 32), 40, np.int32), input_mask=np.ones((1, 32), np.int32))
  aligned, state = language.build_masked_lm(cfg).init(jax.random.PRNGKey(0), inputs, is_training=False)
  plain_cfg = dict(cfg, aligned_init=dict(enabled=False))
  plain, _ = language.build_masked_lm(plain_cfg).init(jax.random.PRNGKey(0), inputs, is_training=False)
  del cfg['aligned_init']  # absent = disabled: the reference init, bit for bit
  absent, _ = language.build_masked_lm(cfg).init(jax.random.PRNGKey(0), inputs, is_training=False)
  jax.tree_util.tree_map(np.testing.assert_array_equal, plain, absent)
  changed = {
    f'{m}/{n}'
    for m in plain
    for n in plain[m]
    if not np.array_equal(np.asarray(plain[m][n]), np.asarray(aligned[m][n]))
  }
  assert changed == {
    'trainable_position_encoding/pos_embs',
    'basic_decoder/~/trainable_position_encoding/pos_embs',
    'perceiver_encoder/~/trainable_position_encoding/pos_embs',
    *(
      f'{m}/linear{k}/w'
      for m in ('perceiver_encoder/~/cross_attention/attention', 'basic_decoder/cross_attention/attention')
      for k in ('', '_1')
    ),
    *(f'perceiver_encoder/~/self_attention{s}/attention/linear{k}/w' for s in ('', '_1') for k in ('', '_1')),
  }
  latents = np.asarray(aligned['perceiver_encoder/~/trainable_position_encoding']['pos_embs'])  # [8, 32]
  table = language.sinusoid_table(32, 16)
  np.testing.assert_allclose(latents[:, :16], 3.0 * table[::4], rtol=1e-6)  # latent n at byte 4n
  assert not latents[:, 16:].any()
  # A window of one repeated byte: only positions tell the outputs apart. The
  # random init gives (nearly) the same logits everywhere, the aligned one not.
  net = language.build_masked_lm(plain_cfg)
  spread = lambda p: float(np.asarray(net.apply(p, state, None, inputs, is_training=False)[0]).std(1).mean())
  assert spread(aligned) > 20 * spread(plain)  # measured 37x


def test_aligned_init_fits_the_classifier_and_rejects_bad_fields():
  cfg = _aligned_tiny(self_attend_gain=0.0)
  inputs = dict(tokens=np.full((1, 32), 40, np.int32), input_mask=np.ones((1, 32), np.int32))
  params, _ = language.build_classifier(cfg, 2).init(jax.random.PRNGKey(0), inputs, is_training=False)
  w = np.asarray(params['perceiver_encoder/~/cross_attention/attention/linear_1']['w'])
  np.testing.assert_array_equal(w, 2.0 * np.eye(*w.shape))
  with pytest.raises(ValueError, match='aligned_init.latent_scale must be >= 0'):
    language.reference_config(_aligned_tiny(latent_scale=-1.0))
  with pytest.raises(ValueError, match=r"aligned_init: unknown key\(s\) \['gain'\]"):
    language.build_masked_lm(_aligned_tiny(gain=1.0))


def _conv_tiny(**conv):
  from perceiver_configs import language as language_configs

  cfg = language_configs.tiny_model(32, d_model=16, latents=8, channels=32, self_attends=1, heads=2)
  if conv:
    cfg['byte_conv'] = dict(conv)
  return cfg


def test_byte_ngrams_sees_its_kernel_and_not_padding():
  net = hk.without_apply_rng(
    hk.transform(lambda x, m: io_processors.ByteNgrams(5, 8)(x, m))  # kernel 5: t-2 .. t+2
  )
  x = np.random.default_rng(0).normal(size=(1, 16, 4)).astype(np.float32)  # [B, T, C]
  mask = np.ones((1, 16), np.int32)
  params = net.init(jax.random.PRNGKey(0), x, mask)
  np.testing.assert_array_equal(net.apply(params, x, mask), x)  # zero-initialised output: the identity at init
  w = params['byte_ngrams/linear']['w']
  params = dict(params, **{'byte_ngrams/linear': dict(params['byte_ngrams/linear'], w=jnp.ones_like(w))})
  base = np.asarray(net.apply(params, x, mask))
  moved = x.copy()
  moved[0, 10] += 1.0
  changed = np.abs(np.asarray(net.apply(params, moved, mask)) - base).sum(-1)[0] > 0  # [T]
  assert changed.nonzero()[0].tolist() == [8, 9, 10, 11, 12]
  # A padded byte (mask 0) does not reach its neighbours, whatever it holds.
  pad_mask = mask.copy()
  pad_mask[0, 13:] = 0
  noisy = x.copy()
  noisy[0, 13:] = 100.0
  np.testing.assert_array_equal(
    np.asarray(net.apply(params, noisy, pad_mask))[0, :13], np.asarray(net.apply(params, x, pad_mask))[0, :13]
  )


@pytest.mark.parametrize('which', ['masked_lm', 'classifier'])
def test_byte_ngrams_reads_the_embeddings_before_positions(which):
  # The layer's input is each byte's embedding row alone: a convolution over
  # embeddings plus positions kept the masked LM on its plateau (ByteConvConfig).
  cfg = _conv_tiny(kernel_size=3)
  net = language.build_masked_lm(cfg) if which == 'masked_lm' else language.build_classifier(cfg, 2)
  tokens = np.arange(32, dtype=np.int32)[None] + 3
  inputs = dict(tokens=tokens, input_mask=np.ones((1, 32), np.int32))
  params, state = net.init(jax.random.PRNGKey(0), inputs, is_training=False)
  seen = []

  def spy(next_f, args, kwargs, context):
    if isinstance(context.module, io_processors.ByteNgrams) and context.method_name == '__call__':
      seen.append(np.asarray(args[0]))
    return next_f(*args, **kwargs)

  with hk.intercept_methods(spy):
    net.apply(params, state, None, inputs, is_training=False)
  assert len(seen) == 1
  table = np.asarray(params['embed']['embeddings'])  # [V, C]
  np.testing.assert_array_equal(seen[0], table[tokens])  # no position in it
  assert np.abs(np.asarray(params['trainable_position_encoding']['pos_embs'])).max() > 0


def test_byte_conv_off_is_the_released_graph_and_on_transfers_to_the_classifier():
  inputs = dict(tokens=np.arange(32, dtype=np.int32)[None] + 3, input_mask=np.ones((1, 32), np.int32))
  init = lambda cfg: language.build_masked_lm(cfg).init(jax.random.PRNGKey(0), inputs, is_training=False)[0]
  absent, zero = init(_conv_tiny()), init(_conv_tiny(kernel_size=0))
  jax.tree_util.tree_map(np.testing.assert_array_equal, absent, zero)  # kernel 0: bit for bit the reference's
  assert not any('byte_ngrams' in m for m in absent)
  mlm = init(_conv_tiny(kernel_size=3))
  assert {m for m in mlm if 'byte_ngrams' in m} == {'byte_ngrams/conv1_d', 'byte_ngrams/linear'}
  assert mlm['byte_ngrams/conv1_d']['w'].shape == (3, 16, 64)  # channels 0: 4 x d_model
  classifier = language.build_classifier(_conv_tiny(kernel_size=3), 2)
  fresh, _ = classifier.init(jax.random.PRNGKey(1), inputs, is_training=False)
  params, report = language.transfer_encoder(fresh, mlm)
  assert 'byte_ngrams/conv1_d' in report['loaded']
  np.testing.assert_array_equal(params['byte_ngrams/conv1_d']['w'], mlm['byte_ngrams/conv1_d']['w'])
  # From an encoder pre-trained without the layer, the layer stays fresh: its
  # zero output makes the classifier start as that encoder.
  params, report = language.transfer_encoder(fresh, absent)
  assert {'byte_ngrams/conv1_d', 'byte_ngrams/linear'} <= set(report['fresh'])
  np.testing.assert_array_equal(params['byte_ngrams/linear']['w'], 0.0)
  plain = language.build_classifier(_conv_tiny(), 2)
  plain_params = {m: v for m, v in params.items() if not m.startswith('byte_ngrams')}
  np.testing.assert_array_equal(
    classifier.apply(params, {}, None, inputs, is_training=False)[0],
    plain.apply(plain_params, {}, None, inputs, is_training=False)[0],
  )
  # A file with the layer does not load into a classifier without it (its
  # encoder learned on the layer's output).
  with pytest.raises(CheckpointMismatchError, match=r'has the byte n-gram layer .* config\.model\.byte_conv'):
    language.transfer_encoder(plain.init(jax.random.PRNGKey(1), inputs, is_training=False)[0], mlm)
  # Other encoder modules must still be in the file.
  partial = {m: v for m, v in mlm.items() if m != 'trainable_position_encoding'}
  with pytest.raises(CheckpointMismatchError, match='missing module trainable_position_encoding'):
    language.transfer_encoder(fresh, partial)
  with pytest.raises(ValueError, match='byte_conv.kernel_size must be >= 0'):
    language.reference_config(_conv_tiny(kernel_size=-1))
  with pytest.raises(ValueError, match=r"byte_conv: unknown key\(s\) \['width'\]"):
    language.build_masked_lm(_conv_tiny(kernel_size=3, width=8))
