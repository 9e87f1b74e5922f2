"""Baseline models: structure, the shared permutation, invariances, presets."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perceiver_configs import baselines as baseline_configs  # pylint: disable=wrong-import-position
from perceiver import baselines  # pylint: disable=wrong-import-position
from perceiver import config as schema  # pylint: disable=wrong-import-position
from perceiver import io_processors as io  # pylint: disable=wrong-import-position
from perceiver_tools import paper_results  # pylint: disable=wrong-import-position

RNG = jax.random.PRNGKey(0)


def _count(params) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def _shapes(net, inputs):
  return jax.eval_shape(lambda x: net.init(RNG, x, is_training=True), inputs)


def _jit_apply(net):
  return jax.jit(lambda p, s, x: net.apply(p, s, None, x, is_training=False))


def _noisy_init(net, inputs):
  """Parameters with noise on every leaf (the zero-initialised head would
  otherwise make every output equal)."""
  params, state = jax.jit(lambda x: net.init(RNG, x, is_training=True))(inputs)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  leaves = [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
  return jax.tree.unflatten(tree, leaves), state


def _tiny(name, **sections):
  cfg = dict(name=name, decoder=dict(num_classes=5), input=dict(num_bands=3))
  for key, value in sections.items():
    cfg[key] = {**cfg.get(key, {}), **value}
  return cfg


IMAGENET = {'image': jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)}


def test_resnet50_ff_is_haikus_resnet50_with_wider_input():
  """Only the first conv differs from hk.nets.ResNet50: 3 + 2*(2*64+1) = 261 input channels."""
  config = baseline_configs.get_config('resnet50_ff')
  params, _ = _shapes(baselines.build_baseline(config.model), IMAGENET)
  reference = hk.transform_with_state(lambda x: hk.nets.ResNet50(1000, name='resnet')(x, is_training=True))
  ref_params, _ = jax.eval_shape(lambda x: reference.init(RNG, x), IMAGENET['image'])
  assert params['resnet/~/initial_conv']['w'].shape == (7, 7, 261, 64)
  assert _count(params) == _count(ref_params) + 7 * 7 * (261 - 3) * 64
  assert _count(ref_params) == 25_557_032  # ResNet-50's well-known count.


def test_vit_b16_ff_structure():
  config = baseline_configs.get_config('vit_b16_ff')
  params, _ = _shapes(baselines.build_baseline(config.model), IMAGENET)
  assert params['vit/embedding']['w'].shape == (16 * 16 * 261, 768)
  layers = {k.split('/')[1] for k in params if k.startswith('vit/layer_')}
  assert len(layers) == 12
  assert params['vit/layer_0/attention/linear']['w'].shape == (768, 768)
  assert params['vit/layer_0/mlp/linear']['w'].shape == (768, 3072)
  assert params['vit/head']['w'].shape == (768, 1000)


def test_baseline_inputs_equal_the_perceivers_byte_array():
  """Same Fourier features, same channel order, same fixed permutation as the Perceiver."""
  image = jax.random.normal(RNG, (2, 6, 8, 3))
  fourier = dict(num_bands=4, max_resolution=(6, 8), concat_pos=True, sine_only=False)
  for seed in (-1, 0, 3):
    ours = hk.transform(
      lambda x, s=seed: baselines.GridInputs(schema.BaselineInputConfig(num_bands=4, permute_seed=s))({'image': x})
    )
    perceiver = hk.transform(
      lambda x, s=seed: io.ImagePreprocessor(
        prep_type='pixels',
        spatial_downsample=1,
        position_encoding_type='fourier',
        fourier_position_encoding_kwargs=fourier,
        permute_seed=s,
      )(x, is_training=False)[0]
    )
    grid = jax.jit(ours.apply)(ours.init(RNG, image), None, image)  # [B, H, W, C]
    byte_array = jax.jit(perceiver.apply)(perceiver.init(RNG, image), None, image)  # [B, M, C]
    np.testing.assert_allclose(np.asarray(grid).reshape(byte_array.shape), byte_array, atol=1e-6)


def _raw_and_permuted(cfg, inputs):
  """Logits of one set of parameters on raw and on permuted inputs."""
  raw = baselines.build_baseline(cfg)
  permuted = baselines.build_baseline({**cfg, 'input': {**cfg['input'], 'permute_seed': 0}})
  params, state = _noisy_init(raw, inputs)
  out_raw, _ = _jit_apply(raw)(params, state, inputs)
  out_perm, _ = _jit_apply(permuted)(params, state, inputs)
  return np.asarray(out_raw), np.asarray(out_perm)


@pytest.mark.slow  # Moved out of the default run (its time budget); .ci/run runs it.
def test_pixel_transformer_is_permutation_invariant_and_the_2d_models_are_not():
  """What Table 2 measures, at initialisation: a Transformer over single pixels
  (mean-pooled) gives identical outputs on permuted inputs; ResNet and a
  patch ViT see different images."""
  inputs = {'image': jax.random.uniform(RNG, (2, 8, 8, 1))}
  raw, perm = _raw_and_permuted(
    _tiny('transformer', vit=dict(patch_size=1, hidden_size=16, num_layers=2, num_heads=2, pool='mean')), inputs
  )
  np.testing.assert_allclose(raw, perm, rtol=1e-4, atol=1e-5)
  for cfg in (
    _tiny('vit', vit=dict(patch_size=4, hidden_size=16, num_layers=1, num_heads=2)),
    _tiny(
      'resnet',
      resnet=dict(
        blocks_per_group=(1, 1, 1, 1), channels_per_group=(4, 4, 4, 4), bottleneck=False, initial_conv_channels=4
      ),
    ),
  ):
    raw, perm = _raw_and_permuted(cfg, inputs)
    assert np.max(np.abs(raw - perm)) > 1e-3, cfg['name']


def test_points_are_laid_out_on_a_grid_with_3d_fourier_features():
  points = jax.random.uniform(RNG, (2, 30, 3), minval=-1, maxval=1)
  cfg = {'modality': 'points', 'num_bands': 2, 'max_resolution': (8, 8, 8), 'grid_size': 5}
  grid = hk.transform(lambda p: baselines.GridInputs(schema.BaselineInputConfig(**cfg))({'points': p})).apply(
    {}, None, points
  )
  assert grid.shape == (2, 5, 5, 3 * (2 * 2 + 1))
  np.testing.assert_allclose(np.asarray(grid[..., :3]).reshape(2, 25, 3), points[:, :25], atol=1e-6)
  padded = hk.transform(
    lambda p: baselines.GridInputs(schema.BaselineInputConfig(**{**cfg, 'grid_size': 6}))({'points': p})
  )
  out = np.asarray(padded.apply({}, None, points)).reshape(2, 36, -1)
  assert np.all(out[:, 30:] == 0) and np.all(np.any(out[:, :30] != 0, axis=-1))


def test_transformer_resizes_before_position_features():
  cfg = _tiny(
    'transformer', input=dict(resize=(4, 4)), vit=dict(patch_size=1, hidden_size=8, num_layers=1, num_heads=2)
  )
  params, _ = _shapes(baselines.build_baseline(cfg), {'image': jax.ShapeDtypeStruct((1, 12, 12, 1), jnp.float32)})
  assert params['vit/embedding']['w'].shape == (1 + 2 * (2 * 3 + 1), 8)


@pytest.mark.parametrize(
  'bad, message',
  [
    (dict(resnet=dict(blocks=3)), 'unknown key'),
    (dict(encoder={}), 'unknown key'),
    (dict(decoder=dict(num_classes=0)), 'num_classes'),
    (dict(name='transformer', vit=dict(patch_size=2)), 'patch_size must be 1'),
    (dict(compute_dtype='bfloat16'), 'vit/transformer only'),
  ],
)
def test_bad_configs_fail_before_tracing(bad, message):
  cfg = _tiny('resnet')
  cfg.update(bad)
  with pytest.raises(ValueError, match=message):
    baselines.build_baseline(cfg)


def test_bfloat16_vit_keeps_float32_params_and_outputs():
  cfg = _tiny('vit', vit=dict(patch_size=2, hidden_size=8, num_layers=1, num_heads=2))
  cfg['compute_dtype'] = 'bfloat16'
  net = baselines.build_baseline(cfg)
  inputs = {'image': jnp.ones((2, 4, 4, 1))}
  params, state = jax.jit(lambda x: net.init(RNG, x, is_training=True))(inputs)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  out, _ = _jit_apply(net)(params, state, inputs)
  assert out.dtype == jnp.float32 and out.shape == (2, 5)


_INPUTS = {
  'imagenet2012': {'image': (224, 224, 3)},
  'modelnet40': {'points': (2048, 3)},
  'mnist': {'image': (28, 28, 1)},
  'synthetic': None,
}


@pytest.mark.parametrize('preset', sorted(baseline_configs.PRESETS))
def test_every_preset_builds_and_is_tagged(preset):
  config = baseline_configs.get_config(preset)
  shapes = _INPUTS[config.data.name] or config.data.inputs.to_dict()
  inputs = {k: jax.ShapeDtypeStruct((1,) + tuple(s), jnp.float32) for k, s in shapes.items()}
  params, _ = _shapes(baselines.build_baseline(config.model), inputs)
  assert _count(params) > 0
  if config.table.table:
    tag = paper_results.check_tag(paper_results.Tag(**config.table.to_dict()))
    assert tag.column != 'permuted' or config.model.input.permute_seed == baseline_configs.PERMUTE_SEED
  if preset.endswith('_permuted'):
    assert config.model.input.permute_seed >= 0
    raw = baseline_configs.get_config(preset[: -len('_permuted')])
    assert raw.model.input.permute_seed == -1
    assert config.model.to_dict() == {
      **raw.model.to_dict(),
      'input': {**raw.model.input.to_dict(), 'permute_seed': baseline_configs.PERMUTE_SEED},
    }


def test_runner_builds_baselines():
  from perceiver import models  # pylint: disable=import-outside-toplevel

  net = models.build_model(_tiny('vit', vit=dict(patch_size=2, hidden_size=8, num_layers=1, num_heads=2)))
  params, _ = jax.eval_shape(lambda x: net.init(RNG, x, is_training=True), {'image': jnp.ones((1, 4, 4, 1))})
  assert 'vit/head' in params
  with pytest.raises(ValueError, match='model.name'):
    models.build_model(dict(name='resnet_typo', decoder=dict(num_classes=2)))
