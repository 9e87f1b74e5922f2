"""scripts/attention_maps.py and scripts/plot_curves.py (perceiver_tools/cli/)."""

import importlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tables_testlib import mnist_steps, script


def _module(name):
  return importlib.import_module(f'perceiver_tools.cli.{name}')


def _perceiver(permute_seed: int, num_cross_attends: int = 3, heads: int = 1):
  from perceiver import models  # pylint: disable=import-outside-toplevel

  return models.build_model(
    dict(
      name='perceiver',
      input=dict(
        modality='image', prep_type='pixels', position_encoding='fourier', num_bands=3, permute_seed=permute_seed
      ),
      encoder=dict(
        num_latents=6,
        latent_channels=8,
        num_blocks=3,
        num_self_attends_per_block=1,
        num_cross_attends=num_cross_attends,
        num_self_attend_heads=2,
        num_cross_attend_heads=heads,
        qk_channels=8 if heads > 1 else -1,
      ),
      decoder=dict(name='average_project', num_classes=3),
    )
  )


def test_maps_are_the_models_attention_and_follow_the_permutation():
  """Shared cross-attends (run in a loop by the encoder) are all captured; the
  maps are distributions; a permuted model's maps, mapped back, are the raw
  model's (the Perceiver is invariant to the input order)."""
  maps_lib = _module('attention_maps')
  image = {'image': jax.random.uniform(jax.random.PRNGKey(0), (1, 5, 7, 1))}
  raw, permuted = _perceiver(-1), _perceiver(0)
  params, state = jax.jit(lambda x: raw.init(jax.random.PRNGKey(1), x, is_training=True))(image)
  params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  raw_maps = maps_lib.cross_attention_maps(raw, params, state, image, num_heads=1)
  perm_maps = maps_lib.cross_attention_maps(permuted, params, state, image, num_heads=1)
  assert len(raw_maps) == len(perm_maps) == 3
  for r, p in zip(raw_maps, perm_maps):
    assert r.shape == (6, 35)
    np.testing.assert_allclose(r.sum(-1), 1.0, rtol=1e-5)
    assert not np.allclose(r, p, atol=1e-3)  # Permuted order...
    np.testing.assert_allclose(
      maps_lib.to_grid(r, (5, 7), -1), maps_lib.to_grid(p, (5, 7), 0), rtol=1e-4, atol=1e-6
    )  # ...same attention per pixel.
  # The first cross-attend, recomputed independently from the parameters.
  from perceiver.position_encoding import build_linear_positions, generate_fourier_features  # pylint: disable=import-outside-toplevel

  pos = build_linear_positions((5, 7)).reshape(1, 35, 2)
  x = jnp.concatenate(
    [image['image'].reshape(1, 35, 1), generate_fourier_features(pos, num_bands=3, max_resolution=(5, 7))], -1
  )
  prefix = 'perceiver_encoder/~/cross_attention/'

  def layer_norm(v, name):
    mean, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
    return (v - mean) / jnp.sqrt(var + 1e-5) * params[prefix + name]['scale'] + params[prefix + name]['offset']

  latents = params['perceiver_encoder/~/trainable_position_encoding']['pos_embs'][None]
  q_params, k_params = params[prefix + 'attention/linear'], params[prefix + 'attention/linear_1']
  q = layer_norm(latents, 'layer_norm') @ q_params['w'] + q_params['b']
  k = layer_norm(x, 'layer_norm_1') @ k_params['w'] + k_params['b']
  expected = jax.nn.softmax(q[0] @ k[0].T / np.sqrt(q.shape[-1]), axis=-1)
  np.testing.assert_allclose(raw_maps[0], expected, rtol=1e-4, atol=1e-6)


def test_multi_head_maps_average_the_heads():
  maps_lib = _module('attention_maps')
  net = _perceiver(-1, num_cross_attends=1, heads=2)
  image = {'image': jax.random.uniform(jax.random.PRNGKey(0), (1, 4, 4, 1))}
  params, state = jax.jit(lambda x: net.init(jax.random.PRNGKey(1), x, is_training=True))(image)
  (maps,) = maps_lib.cross_attention_maps(net, params, state, image, num_heads=2)
  assert maps.shape == (6, 16)
  np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-5)


@pytest.fixture(scope='module')
def trained(runs):
  """The Perceiver of the MNIST permutation table, a few steps on real digits,
  and a ViT baseline (curves of several runs in one figure)."""
  spec_p, spec_b = 'configs/mnist_permutation.py:smoke', 'configs/baselines.py:smoke'
  return (
    runs.get('plots_perceiver', spec_p, modify=mnist_steps(8)),
    runs.get('vit_smoke', spec_b, ('perceiver_t2', 'ViT-B-16 (FF)', 'raw')),
  )


def _png(path):
  from PIL import Image  # pylint: disable=import-outside-toplevel

  with Image.open(path) as img:
    assert img.format == 'PNG'
    return np.asarray(img.convert('L'), np.float32)


def test_attention_map_png_of_a_trained_run(trained, tmp_path):
  out = tmp_path / 'maps.png'
  proc = script('attention_maps.py', '--workdir', trained[0], '--out', str(out), '--index', '3')
  with open(os.path.join(trained[0], 'config.json')) as f:
    crosses = json.load(f)['model']['encoder']['num_cross_attends']
  rows = sorted({1, min(2, crosses), crosses})
  assert f'{crosses} cross-attends, rows {rows}' in proc.stdout
  pixels = _png(out)
  assert pixels.shape[0] > 200 and pixels.shape[1] > 400 and pixels.std() > 10
  proc = script('attention_maps.py', '--workdir', trained[1], '--out', str(tmp_path / 'x.png'), check=False)
  assert proc.returncode != 0 and 'no cross-attention' in proc.stderr


def test_curve_png_of_trained_runs(trained, tmp_path):
  out = tmp_path / 'curves.png'
  script('plot_curves.py', '--workdirs', *trained, '--out', str(out))
  pixels = _png(out)
  assert pixels.shape[1] > 2 * pixels.shape[0] > 400 and pixels.std() > 10
  from perceiver_tools import tables  # pylint: disable=import-outside-toplevel

  records = tables.read_metrics(trained[0])
  assert [r['step'] for r in records['train']] == sorted(r['step'] for r in records['train'])
  assert records['test'][-1]['step'] == 8
