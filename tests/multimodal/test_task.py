"""The autoencoding task through the runner: presets, smoke run, init_from."""

import importlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from perceiver import checkpoints
from perceiver import multimodal
from perceiver import tasks
from perceiver import train
from perceiver.tasks import autoencoding
from perceiver.train import config_checks
from perceiver.train import input_pipeline


def _preset(name):
  return importlib.import_module('configs.multimodal_autoencoding').get_config(name)


@pytest.mark.parametrize('preset', ['paper', 'sample', 'smoke'])
def test_presets_are_locked_and_valid(preset):
  config = _preset(preset)
  config_checks.check_config(config, 'train_and_eval')
  assert isinstance(tasks.get_task(config), autoencoding.AutoencodingTask)
  with pytest.raises(AttributeError, match='locked'):
    config.autoencoding.label_mask_rate = 0.1  # A typo.


def test_paper_preset_fits_the_released_checkpoint():
  """`--config.init_from=video_autoencoding_checkpoint.pystate` needs the
  preset's parameters to have the released model's names and shapes."""
  config = _preset('paper')
  net = tasks.get_task(config).build_model(config)
  inputs = {
    'video': jax.ShapeDtypeStruct((1, 16, 224, 224, 3), jnp.float32),
    'audio': jax.ShapeDtypeStruct((1, 30_720, 1), jnp.float32),
    'subsample_image': jax.ShapeDtypeStruct((64,), jnp.int32),
    'subsample_audio': jax.ShapeDtypeStruct((8,), jnp.int32),
  }
  params, _ = jax.eval_shape(lambda x: net.init(jax.random.PRNGKey(0), x, is_training=True), inputs)
  assert config.data.video_size == 224 and config.data.num_frames == 16
  ref = multimodal.build_autoencoder(checkpoints.published_config('video_autoencoding')).net
  ref_params, _ = jax.eval_shape(lambda x: ref.init(jax.random.PRNGKey(0), x, is_training=True), inputs)
  checkpoints.check_compatible(params, ref_params)
  n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  assert n == 19_858_855  # tests/checkpoints/test_published.py: the released file.


@pytest.mark.parametrize(
  'field, value, fragment',
  [
    ('autoencoding.train_image_queries', 10**9, 'train_image_queries=1000000000 must be in'),
    ('autoencoding.label_mask_prob', 1.5, 'label_mask_prob=1.5 not in'),
    ('data.num_frames', 8, 'data.num_frames=8 but model.num_frames=4'),
    ('data.video_size', 64, 'data.video_size=64'),
  ],
)
def test_bad_fields_are_named(field, value, fragment):
  config = _preset('sample')
  section, key = field.split('.')
  config[section][key] = value
  with pytest.raises(config_checks.ConfigError, match=fragment):
    config_checks.check_config(config, 'train_and_eval')


def test_smoke_run_trains_and_evaluates(tmp_path):
  result = train.train_and_evaluate(_preset('smoke'), str(tmp_path), 'train_and_eval')
  assert result['step'] == 3
  ev = result['eval']
  for key in (
    'video_psnr',
    'audio_psnr',
    'top1',
    'baseline_silence_psnr',
    'baseline_clip_mean_frame_psnr',
    'baseline_mean_frame_psnr',
    'chance_top1',
    'audio_psnr_pooled',
    'baseline_silence_psnr_pooled',
  ):
    assert np.isfinite(ev[key]), key
  assert ev['num_examples'] == 8
  assert {'video_l1', 'audio_l1', 'label_xent', 'top1'} <= set(result['train'])


def _golden_config(golden_case):
  config = _preset('smoke')
  with config.unlocked():
    config.model = ml_collections.ConfigDict(dict(golden_case.config, frame_size=8))
    config.data = input_pipeline.synthetic_config(
      {'video': (2, 8, 8, 3), 'audio': (64, 1)}, num_classes=5, num_train=8, num_eval=6
    )
    config.autoencoding.train_audio_queries = 4
    config.autoencoding.eval_chunks = 3
  return config


def test_init_from_the_released_format_evaluates_those_weights(golden_case, golden_pystate, tmp_path):
  config = _golden_config(golden_case)
  config.init_from = golden_pystate
  result = train.train_and_evaluate(config, str(tmp_path), 'eval')
  # The same numbers straight from the golden parameters.
  batch = next(
    input_pipeline.get_dataset(
      config.data, split='valid', batch_size=6, shuffle_seed=None, process_index=0, process_count=1
    ).as_numpy_iterator()
  )
  ae = multimodal.build_autoencoder(config.model)
  out = multimodal.reconstruct(ae, golden_case.params, golden_case.state, batch['video'], batch['audio'])
  want = np.mean(multimodal.psnr(out['image'], batch['video']))
  np.testing.assert_allclose(result['eval']['video_psnr'], want, rtol=1e-4)
  want = np.mean(np.argmax(out['label'], -1) == batch['label'])
  np.testing.assert_allclose(result['eval']['top1'], want)


def test_mean_frame_baseline_formula():
  rng = np.random.default_rng(0)
  video = rng.uniform(size=(5, 3, 4, 4, 3))
  m = video.mean(axis=(0, 1))
  want = np.mean([10 * np.log10(1 / np.mean((v - m) ** 2)) for v in video])
  got = autoencoding.mean_frame_psnr(video.mean(axis=1), (video**2).mean(axis=1))
  np.testing.assert_allclose(got, want, rtol=1e-9)


def test_pooled_psnr_weighs_every_sample_alike():
  # One near-silent clip: all-zero audio scores 60 dB on it and 10 dB on the
  # loud one, so the per-clip mean (35 dB) says far more than the pooled
  # squared error does (13 dB).
  mse = np.array([1e-6, 0.1])
  np.testing.assert_allclose(np.mean(10 * np.log10(1 / mse)), 35.0)
  np.testing.assert_allclose(autoencoding.pooled_psnr(mse), 10 * np.log10(1 / 0.0500005), rtol=1e-12)
  assert autoencoding.pooled_psnr(np.zeros(3)) == 100.0  # Floored like multimodal.psnr.
