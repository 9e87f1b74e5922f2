"""The trainable autoencoder: golden parity, losses, metrics, chunked decoding."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from perceiver import multimodal


def tiny_model(**overrides):
  cfg = dict(
    model='video_autoencoder',
    num_frames=2,
    img_sz=8,
    frame_size=8,
    samples_per_patch=16,
    audio_samples_per_frame=64,
    num_classes=3,
    image_num_bands=4,
    audio_num_bands=6,
    decoder_query_channels=32,
    decoder_output_num_channels=16,
    encoder=dict(
      num_blocks=1,
      num_self_attends_per_block=2,
      z_index_dim=16,
      num_z_channels=32,
      num_self_attend_heads=4,
      num_cross_attend_heads=1,
    ),
  )
  cfg.update(overrides)
  return cfg


def test_golden_parity_with_label_masked(golden_case):
  c = golden_case
  ae = multimodal.build_autoencoder(c.config)
  inputs = {
    'video': c.inputs['images'],
    'audio': c.inputs['audio'],
    'label': np.array([2]),
    'subsample_image': c.inputs['subsample_image'],
    'subsample_audio': c.inputs['subsample_audio'],
  }
  params, _ = ae.net.init(jax.random.PRNGKey(0), inputs, is_training=True)
  assert jax.tree.map(np.shape, hk.data_structures.to_mutable_dict(params)) == jax.tree.map(np.shape, c.params)
  out, _ = ae.net.apply(c.params, c.state, jax.random.PRNGKey(1), inputs, is_training=False)
  for k in ('image', 'audio', 'label'):
    np.testing.assert_allclose(out[k], c.outputs[k], atol=1e-5, rtol=1e-4)
  # Full decoding in slices gives the same values at the golden's queries.
  full = multimodal.reconstruct(
    ae, c.params, c.state, jnp.asarray(c.inputs['images']), jnp.asarray(c.inputs['audio']), chunks=3
  )
  assert full['image'].shape == c.inputs['images'].shape
  np.testing.assert_allclose(
    np.asarray(full['image']).reshape(1, -1, 3)[:, c.inputs['subsample_image']], c.outputs['image'], atol=1e-5
  )
  np.testing.assert_allclose(
    np.asarray(full['audio']).reshape(1, -1, 16)[:, c.inputs['subsample_audio']].reshape(1, -1),
    c.outputs['audio'],
    atol=1e-5,
  )


def test_label_input_matters_only_when_unmasked():
  ae = multimodal.build_autoencoder(tiny_model(), label_mask_prob=0.0)
  rng = np.random.default_rng(0)
  inputs = {
    'video': rng.uniform(size=(2, 2, 8, 8, 3)).astype(np.float32),
    'audio': rng.uniform(-1, 1, size=(2, 128, 1)).astype(np.float32),
  }
  params, state = ae.net.init(jax.random.PRNGKey(0), inputs, is_training=True)
  key = jax.random.PRNGKey(1)
  a, _ = ae.net.apply(params, state, key, dict(inputs, label=np.array([0, 1])), is_training=True)
  b, _ = ae.net.apply(params, state, key, dict(inputs, label=np.array([2, 2])), is_training=True)
  assert not np.allclose(a['label'], b['label'])  # Training sees the label.
  a, _ = ae.net.apply(params, state, key, dict(inputs, label=np.array([0, 1])), is_training=False)
  b, _ = ae.net.apply(params, state, key, dict(inputs, label=np.array([2, 2])), is_training=False)
  np.testing.assert_array_equal(a['label'], b['label'])  # Evaluation masks it.


def test_audio_output_zero_init_starts_from_silence():
  rng = np.random.default_rng(0)
  inputs = {
    'video': rng.uniform(size=(2, 2, 8, 8, 3)).astype(np.float32),
    'audio': rng.uniform(-1, 1, size=(2, 128, 1)).astype(np.float32),
  }
  outs, names = [], []
  for zero in (False, True):
    ae = multimodal.build_autoencoder(tiny_model(audio_output_zero_init=zero))
    params, state = ae.net.init(jax.random.PRNGKey(0), inputs, is_training=True)
    out, _ = ae.net.apply(params, state, jax.random.PRNGKey(1), inputs, is_training=False)
    outs.append(out)
    names.append(jax.tree_util.tree_map(jnp.shape, params))
  assert np.abs(outs[0]['audio']).mean() > 0.1  # The default projection's noise.
  np.testing.assert_array_equal(outs[1]['audio'], 0.0)
  assert names[0] == names[1]  # Same parameters: released weights still load.


def test_subsampled_training_step_learns():
  ae = multimodal.build_autoencoder(tiny_model(), label_mask_prob=0.5)
  rng = np.random.default_rng(0)
  video = rng.uniform(size=(4, 2, 8, 8, 3)).astype(np.float32)
  audio = rng.uniform(-0.5, 0.5, size=(4, 128, 1)).astype(np.float32)
  labels = np.array([0, 1, 2, 0])
  params, state = ae.net.init(jax.random.PRNGKey(0), {'video': video, 'audio': audio}, is_training=True)
  tx = optax.adam(3e-3)
  opt = tx.init(params)
  weights = {'video': 1.0, 'audio': 1.0, 'label': 1.0}

  def loss_fn(p, key):
    k1, k2, k3 = jax.random.split(key, 3)
    idx_i = multimodal.sample_queries(k1, 2 * 8 * 8, 32)
    idx_a = multimodal.sample_queries(k2, 128 // 16, 4)
    out, _ = ae.net.apply(
      p,
      state,
      k3,
      {'video': video, 'audio': audio, 'label': labels, 'subsample_image': idx_i, 'subsample_audio': idx_a},
      is_training=True,
    )
    assert out['image'].shape == (4, 32, 3) and out['audio'].shape == (4, 4 * 16)
    return multimodal.reconstruction_losses(
      out, multimodal.video_targets(video, idx_i), multimodal.audio_targets(audio, idx_a, 16), labels, weights=weights
    )[0]

  @jax.jit
  def step(p, o, key):
    loss, g = jax.value_and_grad(loss_fn)(p, key)
    updates, o = tx.update(g, o)
    return optax.apply_updates(p, updates), o, loss

  losses = []
  for i in range(60):
    params, opt, loss = step(params, opt, jax.random.PRNGKey(i))
    losses.append(float(loss))
  assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])


def test_sample_queries_distinct_sorted():
  idx = np.asarray(multimodal.sample_queries(jax.random.PRNGKey(0), 100, 30))
  assert len(set(idx)) == 30 and (np.diff(idx) > 0).all() and idx.max() < 100
  np.testing.assert_array_equal(multimodal.sample_queries(jax.random.PRNGKey(0), 5, 5), np.arange(5))
  with pytest.raises(ValueError, match='cannot decode 6 of 5'):
    multimodal.sample_queries(jax.random.PRNGKey(0), 5, 6)


def test_psnr_and_targets():
  x = np.zeros((2, 4, 4), np.float32)
  y = x.copy()
  y[0] += 0.1  # MSE 0.01 -> 20 dB.
  np.testing.assert_allclose(multimodal.psnr(y, x), [20.0, 100.0], atol=1e-4)
  video = np.arange(2 * 2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 2, 4, 4, 3)
  np.testing.assert_array_equal(multimodal.video_targets(video, np.array([0, 17]))[1, 1], video[1, 1, 0, 1])
  audio = np.arange(2 * 64, dtype=np.float32).reshape(2, 64, 1)
  np.testing.assert_array_equal(multimodal.audio_targets(audio, np.array([2]), 16)[0], np.arange(32, 48))


@pytest.mark.parametrize(
  'override, fragment',
  [
    (dict(model='optical_flow'), "model.model must be 'video_autoencoder'"),
    (dict(num_frames=0), 'model.num_frames must be a positive integer'),
    (dict(audio_samples_per_frame=20), 'not a multiple of model.samples_per_patch'),
    (dict(bogus=1), r"unknown key\(s\) \['bogus'\]"),
  ],
)
def test_config_errors_name_the_field(override, fragment):
  with pytest.raises(ValueError, match=fragment):
    multimodal.build_autoencoder(tiny_model(**override))


def test_input_shape_errors():
  ae = multimodal.build_autoencoder(tiny_model())
  with pytest.raises(ValueError, match=r'audio must be \[B, 128, 1\]'):
    ae.net.init(
      jax.random.PRNGKey(0),
      {'video': np.zeros((1, 2, 8, 8, 3), np.float32), 'audio': np.zeros((1, 100, 1), np.float32)},
      is_training=False,
    )
  with pytest.raises(ValueError, match=r'video must be \[B, 2, H, W, 3\]'):
    ae.net.init(
      jax.random.PRNGKey(0),
      {'video': np.zeros((1, 3, 8, 8, 3), np.float32), 'audio': np.zeros((1, 128, 1), np.float32)},
      is_training=False,
    )
