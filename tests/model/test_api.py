"""`import perceiver`: Model (jit-safe apply), constructors, load_pretrained."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import perceiver
from perceiver import checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RNG = jax.random.PRNGKey(0)


def _tiny(**kwargs):
  return perceiver.image_classifier(
    num_classes=5,
    input_channels=3,
    num_bands=2,
    num_latents=4,
    latent_channels=16,
    num_blocks=2,
    num_self_attends_per_block=1,
    num_cross_attends=2,
    self_attend_heads=2,
    **kwargs,
  )


def test_import_is_cheap_and_lazy():
  code = (
    'import sys, perceiver; assert "jax" not in sys.modules and "haiku" not in sys.modules, '
    'sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "haiku")); '
    'assert callable(perceiver.PerceiverEncoder) and "haiku" in sys.modules'
  )
  subprocess.run([sys.executable, '-c', code], check=True, cwd=REPO)


def test_plain_jit_of_apply_needs_no_static_argnames():
  model = _tiny(dropout_prob=0.5)
  x = jax.random.normal(RNG, (2, 6, 6, 3))
  params, state = model.init(RNG, x)
  # Noise on every parameter: the zero-initialised head would make all logits 0.
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(RNG, p.shape), params)
  apply = jax.jit(model.apply)
  eval_out, _ = apply(params, state, None, x)
  np.testing.assert_allclose(eval_out, model(params, state, x), rtol=1e-5, atol=1e-6)
  train_a, _ = apply(params, state, jax.random.PRNGKey(1), x, is_training=True)  # traced flag
  train_b, _ = apply(params, state, jax.random.PRNGKey(2), x, is_training=True)
  assert not np.allclose(train_a, train_b)  # dropout acts: the training branch ran
  same, _ = apply(params, state, jax.random.PRNGKey(1), x, is_training=False)
  np.testing.assert_allclose(same, eval_out, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    model.apply_train(params, state, jax.random.PRNGKey(1), x)[0], train_a, rtol=1e-5, atol=1e-6
  )


def test_channels_first_input_raises():
  model = _tiny()
  params, state = model.init(RNG, jnp.zeros((1, 8, 8, 3)))
  with pytest.raises(ValueError, match=r'channels-last.*got shape \(1, 3, 32, 32\).*channels-first'):
    model(params, state, jnp.zeros((1, 3, 32, 32)))
  with pytest.raises(ValueError, match='channels-first'):
    model.init(RNG, jnp.zeros((1, 3, 32, 32)))


def test_constructors_build_the_papers_models():
  img = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  params, _ = jax.eval_shape(lambda x: perceiver.image_classifier(num_classes=1000).init(RNG, x), img)
  assert 44.0e6 < sum(np.prod(p.shape) for p in jax.tree.leaves(params)) < 46.0e6  # paper: 44.9M
  io = perceiver.io_classifier()
  assert io.config.encoder.num_cross_attends == 1 and io.config.decoder.name == 'classification'
  points = perceiver.point_cloud_classifier(num_latents=8, latent_channels=16, self_attend_heads=2)
  assert points.config.input.modality == 'points' and points.config.encoder.num_cross_attends == 2
  assert perceiver.masked_lm().input_names == ('inputs', 'input_mask')
  assert perceiver.optical_flow().input_names == ('images',)


def test_load_pretrained_reads_a_deepmind_pickle_and_reproduces_its_golden(golden_dir):
  golden = os.path.join(golden_dir, 'official', 'imagenet_fourier_position_encoding.npz')
  _, _, config = checkpoints.load_checkpoint(golden)
  model, params, state = perceiver.load_pretrained(
    os.path.join(golden_dir, 'official', 'pickles', 'imagenet_fourier_position_encoding.pystate'), config=config
  )
  with np.load(golden) as data:
    images, expected = data['input::images'], data['output']
  out = jax.jit(model.apply)(params, state, None, images)[0]
  np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)
  with pytest.raises(ValueError, match='channels-first'):
    model(params, state, images.transpose(0, 3, 1, 2))


def test_load_pretrained_reads_hugging_face_weights(golden_dir):
  model, params, state = perceiver.load_pretrained(os.path.join(golden_dir, 'hf', 'vision_perceiver_learned.npz'))
  assert model.config['model'] == 'image_classifier'
  x = jnp.zeros((1, *model.config['image_shape']))
  assert model(params, state, x).shape == (1, model.config['num_classes'])


def test_load_pretrained_without_a_config_says_what_to_pass(tmp_path, golden_dir):
  src = os.path.join(golden_dir, 'official', 'pickles', 'imagenet_fourier_position_encoding.pystate')
  renamed = tmp_path / 'mine.pystate'
  renamed.write_bytes(open(src, 'rb').read())
  with pytest.raises(checkpoints.CheckpointFormatError, match='pass config='):
    perceiver.load_pretrained(str(renamed))


# --- runner export -> load_pretrained / eval_checkpoint / init_from --------------------


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """The mnist smoke preset, trained with params.npz exported: (path, eval)."""
  from perceiver_configs import mnist  # pylint: disable=import-outside-toplevel
  from perceiver import train  # pylint: disable=import-outside-toplevel

  config = mnist.get_config('smoke')
  config.checkpoint.export_npz = True
  workdir = str(tmp_path_factory.mktemp('run'))
  result = train.train_and_evaluate(config, workdir, 'train_and_eval')
  return result['exported'], result['eval'], config


def test_runner_export_loads_with_load_pretrained_and_reproduces_the_eval(exported):
  from perceiver.train import input_pipeline  # pylint: disable=import-outside-toplevel

  path, metrics, config = exported
  model, params, state = perceiver.load_pretrained(path)
  assert model.config == perceiver.parse_model_config(config.model)
  apply = jax.jit(model.apply)
  correct = count = 0
  for batch in input_pipeline.eval_batches(
    config.data, split=config.eval.split, host_batch=config.eval.batch_size, process_index=0, process_count=1
  ):
    logits = np.asarray(apply(params, state, None, batch['image'])[0])
    mask = batch['mask'] > 0
    correct += int((logits.argmax(-1) == batch['label'])[mask].sum())
    count += int(mask.sum())
  assert count == metrics['num_examples']
  assert correct / count == pytest.approx(metrics['top1'], abs=1e-9)


def test_runner_export_evaluates_with_eval_checkpoint(exported, capsys):
  from perceiver_tools.cli import eval_checkpoint  # pylint: disable=import-outside-toplevel

  path, metrics, _ = exported
  assert eval_checkpoint.main(['--checkpoint', path]) == 0
  printed = capsys.readouterr().out
  for key in ('loss', 'top1', 'top5'):
    assert f'{key} {metrics[key]:.4f}' in printed, (key, printed)


def test_runner_export_initialises_a_run_with_init_from(exported, tmp_path):
  from perceiver import train  # pylint: disable=import-outside-toplevel

  path, metrics, config = exported
  config.init_from = path
  config.seed = 11  # a random init would differ
  evaluated = train.train_and_evaluate(config, str(tmp_path), 'eval')['eval']
  for key in ('loss', 'top1', 'top5', 'num_examples'):
    assert evaluated[key] == metrics[key], key
