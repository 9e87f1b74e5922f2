"""Fourier features follow the reference's layout; positions can be passed in."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perceiver import position_encoding as pe


def test_fourier_channel_layout():
  pos = jnp.asarray([[[0.5, -0.25]]])  # [B=1, M=1, d=2]
  feats = np.asarray(pe.generate_fourier_features(pos, num_bands=3, max_resolution=(8, 4)))[0, 0]
  f0, f1 = np.linspace(1, 4, 3), np.linspace(1, 2, 3)
  scaled = np.concatenate([0.5 * f0, -0.25 * f1])  # dimension-major
  expected = np.concatenate([[0.5, -0.25], np.sin(np.pi * scaled), np.cos(np.pi * scaled)])
  np.testing.assert_allclose(feats, expected, atol=1e-6)
  assert pe.fourier_num_channels(2, 64) == 258  # + 3 RGB = 261 on ImageNet


def test_sine_only_and_no_concat_pos():
  pos = jnp.zeros((2, 5, 3))
  feats = pe.generate_fourier_features(pos, num_bands=4, max_resolution=(8, 8, 8), sine_only=True, concat_pos=False)
  assert feats.shape == (2, 5, 12)


def test_grid_positions_are_ij_linspace():
  grid = np.asarray(pe.build_linear_positions((2, 3)))
  assert grid.shape == (2, 3, 2)
  np.testing.assert_allclose(grid[1, 2], [1.0, 1.0])
  np.testing.assert_allclose(grid[0, 1], [-1.0, 0.0])


def test_explicit_positions_replace_the_grid():
  def f(pos):
    return pe.FourierPositionEncoding(index_dims=(4, 4), num_bands=2)(batch_size=1, pos=pos)

  net = hk.without_apply_rng(hk.transform(f))
  grid = pe.build_linear_positions((4, 4)).reshape(1, 16, 2)
  a = net.apply({}, None)
  b = net.apply({}, grid * 0.5)
  assert a.shape == b.shape == (1, 16, 2 + 8)
  np.testing.assert_allclose(np.asarray(a)[0, :, :2], np.asarray(grid)[0])
  np.testing.assert_allclose(np.asarray(b)[0, :, :2], 0.5 * np.asarray(grid)[0])


def test_wrong_position_dims_raise():
  with pytest.raises(ValueError, match='max_resolution'):
    pe.generate_fourier_features(jnp.zeros((1, 4, 3)), num_bands=2, max_resolution=(4, 4))


def test_projected_trainable_encoding():
  def f():
    enc = pe.build_position_encoding(
      'trainable', (4, 4), project_pos_dim=6, trainable_position_encoding_kwargs=dict(num_channels=5)
    )
    return enc(batch_size=3)

  net = hk.transform(f)
  params = net.init(jax.random.PRNGKey(0))
  assert params['trainable_position_encoding']['pos_embs'].shape == (16, 5)
  assert net.apply(params, None).shape == (3, 16, 6)


def test_grid_features_computed_once_equal_per_example_features():
  # Grid features are computed for one example and broadcast to the batch.
  enc = hk.transform(lambda: pe.FourierPositionEncoding((6, 5), num_bands=4)(batch_size=3))
  feats = enc.apply({}, None)
  grid = pe.build_linear_positions((6, 5)).reshape(1, 30, 2)
  ref = pe.generate_fourier_features(jnp.tile(grid, (3, 1, 1)), num_bands=4, max_resolution=(6, 5))
  assert feats.shape == ref.shape == (3, 30, 18)
  np.testing.assert_allclose(feats, ref, atol=1e-6)
