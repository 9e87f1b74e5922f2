"""The flow model wrapper, full-frame tiling and the flow metrics."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perceiver import flow
from perceiver_tools import golden

GOLDEN = pathlib.Path(__file__).resolve().parents[3] / 'shared' / 'golden' / 'official' / 'optical_flow.npz'


@pytest.fixture(scope='module')
def golden_model():
  if not GOLDEN.exists():
    pytest.skip(f'golden file not found: {GOLDEN}')
  case = golden.load_golden(str(GOLDEN))
  model = flow.build_flow_model(flow.model_config_from_reference(case.config))
  params = jax.tree.map(jnp.asarray, case.params)
  apply = jax.jit(lambda f: model.net.apply(params, {}, None, f, is_training=False)[0])
  return case, model, apply


def test_wrapper_reproduces_the_golden_output(golden_model):
  case, _, apply = golden_model
  out = np.asarray(apply(jnp.asarray(case.inputs['images'])))
  np.testing.assert_allclose(out, case.outputs[''], atol=1e-5, rtol=1e-4)


def test_tiles_without_overlap_equal_the_model_on_each_tile(golden_model):
  case, model, apply = golden_model
  th, tw = model.train_size  # (12, 16) in the golden file.
  rng = np.random.default_rng(0)
  frames = rng.uniform(-1, 1, (2, 2, 2 * th, 3 * tw, 3)).astype(np.float32)
  params = jax.tree.map(jnp.asarray, case.params)
  run = lambda w: model.net.apply(params, {}, None, w, is_training=False)[0]
  tiled = np.asarray(jax.jit(lambda f: flow.tiled_flow(run, f, (th, tw), min_overlap=0))(jnp.asarray(frames)))
  assert tiled.shape == (2, 2 * th, 3 * tw, 2)
  for y in range(0, 2 * th, th):
    for x in range(0, 3 * tw, tw):
      alone = np.asarray(apply(jnp.asarray(frames[:, :, y : y + th, x : x + tw])))
      np.testing.assert_allclose(tiled[:, y : y + th, x : x + tw], alone, atol=1e-6, rtol=1e-5)
  assert np.abs(tiled).max() > 0


def test_golden_model_on_frames_of_other_sizes(golden_model):
  _, _, apply = golden_model
  for h, w in ((13, 37), (7, 9)):  # Tiled; padded (smaller than a window).
    out = apply(jnp.zeros((1, 2, h, w, 3)))
    assert out.shape == (1, h, w, 2)
    assert np.isfinite(np.asarray(out)).all()


def _coordinate_frames(h, w):
  """Frames whose first two channels are each pixel's (x, y)."""
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  img = np.stack([xx, yy, np.zeros_like(xx)], -1)
  return jnp.asarray(np.broadcast_to(img, (1, 2, h, w, 3)))


@pytest.mark.parametrize('frame_hw', [(436, 1024), (375, 1242)])
def test_overlapping_tiles_put_every_window_back_in_place(frame_hw):
  # A window "model" that returns its own pixels' coordinates: the weighted
  # blend must give each pixel its coordinates back, whatever the weights.
  frames = _coordinate_frames(*frame_hw)
  out = flow.tiled_flow(lambda f: f[:, 0, ..., :2], frames, (368, 496), min_overlap=20)
  assert out.shape == (1,) + frame_hw + (2,)
  np.testing.assert_allclose(np.asarray(out[0]), np.asarray(frames[0, 0, ..., :2]), atol=1e-3)


def test_reference_grid_and_weights():
  # Sintel: rows start at 0 and 436 - 368; columns every 496 - 20 = 476.
  assert flow.tile_origins((436, 1024), (368, 496)) == [(0, 0), (0, 476), (0, 528), (68, 0), (68, 476), (68, 528)]
  assert flow.tile_origins((375, 1242), (368, 496)) == [(0, 0), (0, 476), (0, 746), (7, 0), (7, 476), (7, 746)]
  assert flow.tile_origins((368, 496), (368, 496)) == [(0, 0)]
  w = flow.tile_weights((4, 6))
  np.testing.assert_array_equal(w[0], [1, 1, 1, 1, 1, 1])
  np.testing.assert_array_equal(w[1], [1, 2, 2, 2, 2, 1])
  with pytest.raises(ValueError, match='min_overlap'):
    flow.tile_origins((436, 1024), (368, 496), min_overlap=368)


def test_tiled_blend_is_weighted_average_where_windows_overlap():
  # Constant flow c_i in window i: a pixel covered by windows i, j gets
  # (w_i c_i + w_j c_j) / (w_i + w_j).
  frames = jnp.zeros((1, 2, 10, 14, 3))
  calls = []

  def run(window):
    calls.append(1)
    return jnp.ones(window.shape[:1] + window.shape[2:4] + (2,))

  out = np.asarray(flow.tiled_flow(run, frames, (10, 8), min_overlap=2))
  np.testing.assert_allclose(out, 1.0, atol=1e-6)
  origins = flow.tile_origins((10, 14), (10, 8), 2)
  assert origins == [(0, 0), (0, 6)]


def test_model_config_errors_name_the_field():
  with pytest.raises(ValueError, match='model: unknown key'):
    flow.resolve_model_config({'bogus': 1})
  with pytest.raises(ValueError, match='model.encoder: unknown'):
    flow.resolve_model_config({'encoder': {'num_latents': 4}})
  with pytest.raises(ValueError, match='model.train_size'):
    flow.resolve_model_config({'train_size': (0, 4)})
  with pytest.raises(ValueError, match='model.min_overlap'):
    flow.resolve_model_config({'train_size': (8, 8), 'min_overlap': 8})
  with pytest.raises(ValueError, match='model.patch_mlp_hidden'):
    flow.resolve_model_config({'patch_mlp_hidden': -1})
  with pytest.raises(ValueError, match='model.decoder_query_residual'):
    flow.resolve_model_config({'decoder_query_residual': 'yes'})


_TINY = dict(
  train_size=(8, 12),
  num_bands=2,
  num_channels=8,
  min_overlap=2,
  encoder=dict(num_self_attends_per_block=1, z_index_dim=4, num_z_channels=8, num_self_attend_heads=2),
)


def _init(model_cfg):
  model = flow.build_flow_model(model_cfg)
  frames = jax.random.uniform(jax.random.PRNGKey(1), (1, 2, 8, 12, 3), minval=-1, maxval=1)
  params, state = model.net.init(jax.random.PRNGKey(0), frames, is_training=False)
  return model, params, state, frames


def test_per_pixel_options_are_off_by_default_and_round_trip():
  ref = flow.reference_config(_TINY)
  assert 'patch_mlp_hidden' not in ref and 'decoder_query_residual' not in ref  # Released config unchanged.
  _, params, _, _ = _init(_TINY)
  assert not [m for m in params if 'patches_mlp' in m]
  on = dict(_TINY, patch_mlp_hidden=6, decoder_query_residual=True)
  ref_on = flow.reference_config(on)
  assert ref_on['patch_mlp_hidden'] == 6 and ref_on['decoder_query_residual'] is True
  back = flow.model_config_from_reference(ref_on)
  assert back['patch_mlp_hidden'] == 6 and back['decoder_query_residual'] is True


def test_patch_mlp_reads_each_pixels_patches_and_query_residual_changes_the_output():
  on = dict(_TINY, patch_mlp_hidden=6, decoder_query_residual=True)
  model, params, state, frames = _init(on)
  mlp = sorted(m.rsplit('/', 1)[-1] for m in params if 'patches_mlp' in m)
  assert mlp == ['patches_mlp_hidden', 'patches_mlp_hidden_2', 'patches_mlp_out']
  assert params[[m for m in params if m.endswith('patches_mlp_hidden')][0]]['w'].shape == (2 * 9 * 3 + 1, 6)
  out, _ = model.net.apply(params, state, None, frames, is_training=False)
  assert out.shape == (1, 8, 12, 2) and np.isfinite(np.asarray(out)).all()
  # The same parameters without the query residual give another output.
  plain = flow.build_flow_model(dict(on, decoder_query_residual=False))
  other, _ = plain.net.apply(params, state, None, frames, is_training=False)
  assert not np.allclose(np.asarray(out), np.asarray(other))


def test_metrics_pool_pixels_and_split_occlusions():
  gt = np.zeros((2, 2, 2, 2), np.float32)
  gt[0, 0, 0] = [100.0, 0.0]  # Large true flow: 4 px error is < 5%.
  pred = gt.copy()
  pred[0, 0, 0, 0] += 4.0  # EPE 4, not an outlier (4 < 0.05 * 100 ... no).
  pred[0, 1, 1] = [0.0, 5.0]  # EPE 5 on zero flow: an outlier.
  pred[1] = [3.0, 4.0]  # EPE 5 everywhere in example 2, half invalid.
  valid = np.ones((2, 2, 2), np.float32)
  valid[1, 0] = 0
  occ = np.zeros((2, 2, 2), np.float32)
  occ[0, 1, 1] = 1
  sums = {
    k: np.asarray(v)
    for k, v in flow.flow_error_sums(jnp.asarray(pred), jnp.asarray(gt), jnp.asarray(valid), jnp.asarray(occ)).items()
  }
  m = flow.pooled_metrics(sums, np.array([1.0, 1.0]))
  # Valid pixels: 4 + 2; errors 4, 0, 0, 5 and 5, 5.
  assert m['epe'] == pytest.approx(19 / 6)
  # Outliers: the 5 px ones (3 of them); 4 px on |100| is within 5%.
  assert m['fl_all'] == pytest.approx(100 * 3 / 6)
  assert m['epe_occ'] == pytest.approx(5.0)
  assert m['epe_noc'] == pytest.approx(14 / 5)
  assert 'epe_noc' not in flow.pooled_metrics(sums, np.array([0.0, 0.0]))


def test_epe_loss_has_finite_gradient_at_zero_error():
  gt = jnp.zeros((1, 3, 3, 2))
  grad = jax.grad(lambda p: flow.epe_loss(p, gt, jnp.ones((1, 3, 3))))(gt)
  assert np.isfinite(np.asarray(grad)).all()
