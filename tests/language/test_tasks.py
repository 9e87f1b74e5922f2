"""The mlm and glue tasks through the production runner (tiny CPU runs)."""

import os

import numpy as np
import pytest

from perceiver_configs import language as language_configs
from perceiver import tasks
from perceiver.checkpoints import read_checkpoint
from perceiver.train import config_checks
from perceiver.train import trainer

WORDS = (
  'the cat sat on the mat and the dog ran to the park while a bird sang in the tree '
  'computers run programs and the law has rules about food'
).split()


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp('lang')
  rng = np.random.default_rng(0)
  (root / 'text').mkdir()
  for split, n in (('train', 300), ('valid', 40)):
    docs = [' '.join(rng.choice(WORDS, size=12)) for _ in range(n)]
    (root / 'text' / f'{split}.txt').write_text('\n'.join(docs) + '\n')
  glue = root / 'glue' / 'RTE'
  glue.mkdir(parents=True)
  for split, n in (('train', 64), ('dev', 16)):
    rows = ['index\tsentence1\tsentence2\tlabel']
    for i in range(n):
      a, b = ' '.join(rng.choice(WORDS, size=6)), ' '.join(rng.choice(WORDS, size=6))
      rows.append(f'{i}\t{a}\t{b}\t{"entailment" if i % 2 else "not_entailment"}')
    (glue / f'{split}.tsv').write_text('\n'.join(rows) + '\n')
  return str(root)


def _smoke(corpus, task='mlm'):
  config = language_configs.smoke()
  config.unlock()
  config.data.train_files = f'{corpus}/text/train.txt'
  config.data.eval_files = f'{corpus}/text/valid.txt'
  config.checkpoint.export_npz = True
  config.checkpoint.async_save = False
  if task == 'glue':
    model = config.model.to_dict()
    model['classifier'] = language_configs.classifier(2)
    config.task = 'glue'
    config.data = language_configs.glue_data('rte', glue_dir=f'{corpus}/glue', seq_len=32)
    config.model = model
    config.optimizer.weight_decay = 0.1  # a frozen encoder must not decay either
  config.lock()
  return config


def test_registered():
  assert {'mlm', 'glue'} <= set(tasks.names())


def test_mlm_then_glue_from_its_encoder(corpus, tmp_path):
  mlm_dir = str(tmp_path / 'mlm')
  result = trainer.train_and_evaluate(_smoke(corpus), mlm_dir)
  ev = result['eval']
  assert 0 <= ev['masked_accuracy'] <= 1 and ev['masked_bytes'] > 0 and np.isfinite(ev['masked_loss'])
  pretrained, _, _ = read_checkpoint(os.path.join(mlm_dir, 'params.npz'))

  # Frozen encoder: encoder weights stay exactly the pre-trained ones, head trains.
  config = _smoke(corpus, 'glue')
  config.unlock()
  config.init_from = os.path.join(mlm_dir, 'params.npz')
  config.model.classifier.freeze_encoder = True
  config.lock()
  result = trainer.train_and_evaluate(config, str(tmp_path / 'frozen'))
  assert {'accuracy', 'glue_score'} <= set(result['eval'])
  tuned, _, _ = read_checkpoint(str(tmp_path / 'frozen' / 'params.npz'))
  encoder = [m for m in tuned if not m.startswith('classification_decoder')]
  assert encoder and 'embed' in encoder
  for m in encoder:
    for n in tuned[m]:
      np.testing.assert_array_equal(tuned[m][n], pretrained[m][n])
  head = [m for m in tuned if m.startswith('classification_decoder')]
  assert head and not any(m in pretrained for m in head)

  # Not frozen: the encoder moves away from the pre-trained weights.
  config = _smoke(corpus, 'glue')
  config.unlock()
  config.init_from = os.path.join(mlm_dir, 'params.npz')
  config.lock()
  trainer.train_and_evaluate(config, str(tmp_path / 'tuned'))
  tuned, _, _ = read_checkpoint(str(tmp_path / 'tuned' / 'params.npz'))
  assert not np.array_equal(tuned['embed']['embeddings'], pretrained['embed']['embeddings'])


def test_config_errors_name_the_field(corpus):
  config = _smoke(corpus, 'glue')
  config.unlock()
  config.model.classifier.num_outputs = 3
  with pytest.raises(config_checks.ConfigError, match='model.classifier.num_outputs=3'):
    config_checks.check_config(config, 'train')
  config = _smoke(corpus)
  config.unlock()
  config.data.seq_len = 64
  with pytest.raises(config_checks.ConfigError, match='data.seq_len=64 exceeds model.max_seq_len=32'):
    config_checks.check_config(config, 'train')
  # Masking rates fail before compiling, not when the first batch is masked.
  for field, value in (('byte_fraction', 1.5), ('mask_rate', 0.0)):
    config = _smoke(corpus)
    config.unlock()
    config.data.masking[field] = value
    with pytest.raises(config_checks.ConfigError, match=f'data.masking.{field} must be'):
      config_checks.check_config(config, 'train')


@pytest.mark.parametrize('preset', sorted(language_configs.PRESETS))
def test_presets_pass_the_checks(preset, corpus, monkeypatch):
  config = language_configs.get_config(preset)
  assert config.task in ('mlm', 'glue')
  task = tasks.get_task(config)
  task.check_config(config)
  if preset == 'paper_mlm':
    from perceiver.checkpoints import published_config

    want = published_config('language_masked_lm')
    assert config.model.encoder.num_self_attends_per_block == 26
    assert config.model.encoder.z_index_dim == 256 and config.model.encoder.num_z_channels == 1280
    assert config.model.vocab_size == 262 and config.model.max_seq_len == 2048 == config.data.seq_len
    assert config.model.decoder.to_dict() == want['decoder']


def test_sample_bytes_is_sample_with_single_bytes_masked():
  # The topic task's encoder: the slow test compares fine-tuning from it
  # with `sample`-architecture classifiers, so nothing else may differ.
  a, b = language_configs.get_config('sample').to_dict(), language_configs.get_config('sample_bytes').to_dict()
  assert a['data']['masking'].pop('whole_words') is True
  assert b['data']['masking'].pop('whole_words') is False
  assert a == b


def test_paper_mlm_is_the_released_model_with_its_parameter_count():
  import jax
  import jax.numpy as jnp
  from perceiver import language

  config = language_configs.get_config('paper_mlm')
  with pytest.raises(AttributeError, match='locked'):
    config.train.batchsize = 3  # a typo of batch_size
  net = language.build_masked_lm(config.model)
  spec = jax.ShapeDtypeStruct((1, 2048), jnp.int32)
  params, _ = jax.eval_shape(
    lambda t: net.init(jax.random.PRNGKey(0), dict(tokens=t, input_mask=t), is_training=False), spec
  )
  count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  assert count == pytest.approx(201e6, rel=0.01)  # PAPERS.md: "~201M parameters"


def test_copy_loss_adds_the_weighted_cross_entropy_of_the_unselected_bytes(corpus):
  import jax

  config = _smoke(corpus)
  task = tasks.get_task(config)
  net = task.build_model(config)
  rng = np.random.default_rng(0)
  tokens = rng.integers(6, 262, (2, 32)).astype(np.int32)
  weights = (rng.random((2, 32)) < 0.3).astype(np.float32)
  input_mask = np.ones((2, 32), np.int32)
  input_mask[1, 20:] = 0
  batch = dict(tokens=tokens, input_mask=input_mask, targets=tokens, target_weights=weights * input_mask)
  params, state = net.init(jax.random.PRNGKey(0), task.model_inputs(batch), is_training=True)
  logits, _ = net.apply(params, state, None, task.model_inputs(batch), is_training=True)
  logp = np.asarray(jax.nn.log_softmax(logits))
  nll = -np.take_along_axis(logp, tokens[..., None], -1)[..., 0]
  copy_w = input_mask * (1 - weights)
  want_copy = float((nll * copy_w).sum() / copy_w.sum())
  want_masked = float((nll * batch['target_weights']).sum() / batch['target_weights'].sum())
  losses = {}
  for w in (0.0, 0.5):
    config.unlock()
    config.train.mlm_loss = dict(copy_loss_weight=w)
    config.lock()
    loss, (_, metrics) = task.train_loss(net, params, state, None, batch, config)
    losses[w] = float(loss)
    assert ('copy_loss' in metrics) == (w > 0)
  np.testing.assert_allclose(losses[0.0], want_masked, rtol=1e-5)
  np.testing.assert_allclose(losses[0.5], want_masked + 0.5 * want_copy, rtol=1e-5)
  config.unlock()
  config.train.mlm_loss = dict(copy_loss_weight=-1.0)
  with pytest.raises(config_checks.ConfigError, match='train.mlm_loss.copy_loss_weight must be >= 0'):
    config_checks.check_config(config, 'train')


def test_encoder_lr_scale_and_frozen_steps():
  import jax.numpy as jnp
  import optax

  config = language_configs.get_config('sample_topic')
  config.unlock()
  config.model.classifier.encoder_lr_scale = 0.25
  config.model.classifier.encoder_frozen_steps = 2
  params = {'embed': {'embeddings': jnp.ones(3)}, 'classification_decoder/~/x': {'w': jnp.ones(3)}}
  grads = {'embed': {'embeddings': jnp.full(3, 0.5)}, 'classification_decoder/~/x': {'w': jnp.full(3, 0.5)}}
  tx = tasks.get('glue').wrap_optimizer(optax.sgd(1.0), config)
  state = tx.init(params)
  seen = []
  for _ in range(3):
    updates, state = tx.update(grads, state, params)
    seen.append((float(updates['embed']['embeddings'][0]), float(updates['classification_decoder/~/x']['w'][0])))
  assert seen == [(0.0, -0.5), (0.0, -0.5), (-0.125, -0.5)]
  config.model.classifier.encoder_lr_scale = -1.0
  with pytest.raises(config_checks.ConfigError, match='model.classifier.encoder_lr_scale must be >= 0'):
    tasks.get('glue').check_config(config)
