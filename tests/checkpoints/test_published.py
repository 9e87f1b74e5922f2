"""The six released models' full-size reference configs."""

import json

import numpy as np
import pytest

from perceiver.checkpoints import PRESETS, published_config
from perceiver.checkpoints.published import RELEASED_FILES


@pytest.mark.parametrize('name', PRESETS)
def test_presets_have_the_golden_schema(golden_dir, name):
  """Each preset has every key the scaled-down golden of the same model has."""
  golden = json.loads(str(np.load(golden_dir / 'official' / f'{name}.npz')['__config__']))
  config = published_config(name)
  assert config['model'] == golden['model']
  assert set(golden) - {'note'} <= set(config)
  for key, value in golden.items():
    if isinstance(value, dict):
      assert set(value) <= set(config[key]), (key, set(value) - set(config[key]))


def test_presets_are_fresh_copies_and_cover_the_released_files():
  config = published_config('imagenet_conv_preprocessing')
  config['encoder']['num_blocks'] = 1
  assert published_config('imagenet_conv_preprocessing')['encoder']['num_blocks'] == 8
  assert sorted(RELEASED_FILES.values()) == sorted(PRESETS)
  with pytest.raises(KeyError, match='unknown preset'):
    published_config('imagenet')


# Parameter counts our model builder gives the presets (full size, via
# jax.eval_shape). The three ImageNet ones agree with the 62.3M / 48.4M /
# 48.6M of the Perceiver IO paper's ImageNet table, as we recall it.
_PARAM_COUNTS = {
  'imagenet_learned_position_encoding': 62_255_848,
  'imagenet_fourier_position_encoding': 48_440_627,
  'imagenet_conv_preprocessing': 48_646_522,
  'language_masked_lm': 201_108_230,
  'optical_flow': 41_057_134,
  'video_autoencoding': 19_858_855,
}


def _abstract_inputs(config):
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  spec = jax.ShapeDtypeStruct
  if config['model'] == 'image_classifier':
    return [spec([1] + config['image_shape'], jnp.float32)], []
  if config['model'] == 'masked_lm':
    return [spec((1, config['max_seq_len']), jnp.int32)] * 2, []
  if config['model'] == 'optical_flow':
    return [spec((1, 2, *config['train_size'], 3), jnp.float32)], []
  frames = config['num_frames']
  return (
    [
      spec((1, frames, 4 * config['img_sz'], 4 * config['img_sz'], 3), jnp.float32),
      spec((1, frames * config['audio_samples_per_frame'], 1), jnp.float32),
    ],
    [jnp.arange(1024), jnp.arange(240)],
  )  # subsampled output points (static)


@pytest.mark.parametrize('name', PRESETS)
def test_presets_build_at_full_size(name):
  models = pytest.importorskip('perceiver.models')
  import jax  # pylint: disable=import-outside-toplevel

  config = published_config(name)
  model = models.build_from_reference_config(config)
  abstract, static = _abstract_inputs(config)
  params, _ = jax.eval_shape(lambda *a: model.net.init(jax.random.PRNGKey(0), *a, *static, is_training=True), *abstract)
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  assert count == _PARAM_COUNTS[name]
