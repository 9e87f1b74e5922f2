"""Optical-flow Perceiver IO: model building, full-frame tiling and metrics.

The model is the released architecture (Perceiver IO, Sec. 4.3; the
reference colab `perceiver/colabs/optical_flow.ipynb`), rebuilt by
`models.build_from_reference_config({'model': 'optical_flow', ...})`: each
pixel's 3 x 3 patch of both frames plus 2-D Fourier features is one input,
the queries are the first frame's features, the output is 2 channels per
pixel. It runs on `train_size` windows (368 x 496 for the released weights).

Full frames are processed like the reference colab does: windows of
`train_size` start every `train_size - min_overlap` pixels (min_overlap 20)
with the last one flush with the border, each window's flow is weighted by
min(distance to its nearest border + 1) (a pyramid that falls to 1 at the
window's edges) and the weighted flows are averaged. A frame smaller than a
window is edge-padded first (the reference does not handle that case).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from perceiver import models

# Keys of a flow `config.model` section and their defaults: the released
# model (perceiver/checkpoints/published.py, from the reference colab).
MODEL_DEFAULTS: dict[str, Any] = dict(
  train_size=(368, 496),
  num_bands=64,
  num_channels=64,
  flow_scale_factor=20.0,
  rescale_factor=100.0,
  min_overlap=20,
  # Ours, off (0) in the released model: hidden width of a per-pixel GELU MLP
  # added to the linear patch embedding (perceiver.io_processors.ImagePreprocessor).
  patch_mlp_hidden=0,
  # Ours, off in the released model: add each pixel's query to its decoder
  # cross-attention output (a per-pixel path from input to flow).
  decoder_query_residual=False,
  encoder=dict(
    num_self_attends_per_block=24,
    num_blocks=1,
    z_index_dim=2048,
    num_z_channels=512,
    num_cross_attend_heads=1,
    num_self_attend_heads=16,
    cross_attend_widening_factor=1,
    self_attend_widening_factor=1,
    dropout_prob=0.0,
    z_pos_enc_init_scale=0.02,
    cross_attention_shape_for_attn='kv',
  ),
)
ENCODER_KEYS = frozenset(
  {
    'num_self_attends_per_block',
    'num_blocks',
    'z_index_dim',
    'num_z_channels',
    'num_cross_attend_heads',
    'num_self_attend_heads',
    'cross_attend_widening_factor',
    'self_attend_widening_factor',
    'dropout_prob',
    'z_pos_enc_init_scale',
    'cross_attention_shape_for_attn',
    'qk_channels',
    'v_channels',
    'use_query_residual',
  }
)


def _as_dict(cfg) -> dict[str, Any]:
  if cfg is None:
    return {}
  return cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)


def resolve_model_config(model_cfg) -> dict[str, Any]:
  """MODEL_DEFAULTS overlaid with `model_cfg`; one-line errors naming fields."""
  given = _as_dict(model_cfg)
  unknown = sorted(set(given) - set(MODEL_DEFAULTS))
  if unknown:
    raise ValueError(f'model: unknown key(s) {unknown} for the flow model; known: {sorted(MODEL_DEFAULTS)}')
  cfg = dict(MODEL_DEFAULTS, **given)
  encoder = dict(MODEL_DEFAULTS['encoder'], **_as_dict(given.get('encoder')))
  bad = sorted(set(encoder) - ENCODER_KEYS)
  if bad:
    raise ValueError(f'model.encoder: unknown key(s) {bad}; known: {sorted(ENCODER_KEYS)}')
  cfg['encoder'] = encoder
  size = tuple(int(v) for v in cfg['train_size'])
  if len(size) != 2 or min(size) < 1:
    raise ValueError(f'model.train_size must be (H, W) >= 1, got {cfg["train_size"]!r}')
  cfg['train_size'] = size
  hidden = cfg['patch_mlp_hidden']
  if isinstance(hidden, bool) or not isinstance(hidden, (int, np.integer)) or hidden < 0:
    raise ValueError(f'model.patch_mlp_hidden must be an integer >= 0 (0: off), got {hidden!r}')
  if not isinstance(cfg['decoder_query_residual'], (bool, np.bool_)):
    raise ValueError(f'model.decoder_query_residual must be true or false, got {cfg["decoder_query_residual"]!r}')
  if not 0 <= int(cfg['min_overlap']) < min(size):
    raise ValueError(
      f'model.min_overlap must be in [0, {min(size)}) (less than the window), got {cfg["min_overlap"]!r}'
    )
  heads = int(encoder['num_self_attend_heads'])
  if int(encoder['num_z_channels']) % heads and not encoder.get('qk_channels'):
    raise ValueError(
      f'model.encoder.num_z_channels={encoder["num_z_channels"]} is not divisible by num_self_attend_heads={heads}'
    )
  return cfg


def reference_config(model_cfg) -> dict[str, Any]:
  """The golden-style `__config__` of the configured flow model."""
  cfg = resolve_model_config(model_cfg)
  return {
    'model': 'optical_flow',
    'train_size': list(cfg['train_size']),
    'num_bands': int(cfg['num_bands']),
    'num_channels': int(cfg['num_channels']),
    'flow_scale_factor': float(cfg['flow_scale_factor']),
    'rescale_factor': float(cfg['rescale_factor']),
    'encoder': dict(cfg['encoder']),
    # Only when on, so that the released model's config is unchanged.
    **({'patch_mlp_hidden': int(cfg['patch_mlp_hidden'])} if int(cfg['patch_mlp_hidden']) else {}),
    **({'decoder_query_residual': True} if cfg['decoder_query_residual'] else {}),
  }


# ------------------------------------------------------------------ tiling


def tile_origins(image_hw: Sequence[int], tile_hw: Sequence[int], min_overlap: int = 20) -> list[tuple[int, int]]:
  """(y, x) of each window, row-major: the reference colab's grid.

  Windows start every `tile - min_overlap` pixels; the last one in each
  direction is moved back to end at the border (and any other start that
  would overrun it is dropped). `image_hw` >= `tile_hw`.
  """
  (h, w), (th, tw) = image_hw, tile_hw
  if h < th or w < tw:
    raise ValueError(f'image {(h, w)} is smaller than the window {(th, tw)}')
  if not 0 <= min_overlap < min(th, tw):
    raise ValueError(f'min_overlap must be in [0, {min(th, tw)}), got {min_overlap}')
  axes = []
  for size, tile in ((h, th), (w, tw)):
    # The reference replaces the last start by `size - tile`; starts past
    # that would overrun the frame (the reference fails there), so they go.
    starts = [s for s in range(0, size, tile - min_overlap) if s < size - tile]
    axes.append(starts + [size - tile])
  return [(y, x) for y in axes[0] for x in axes[1]]


def tile_weights(tile_hw: Sequence[int]) -> np.ndarray:
  """f32 [h, w]: min over axes of (distance to the nearest border + 1)."""
  th, tw = tile_hw
  wy = np.minimum(np.arange(th) + 1, th - np.arange(th))
  wx = np.minimum(np.arange(tw) + 1, tw - np.arange(tw))
  return np.minimum(wy[:, None], wx[None, :]).astype(np.float32)


def tiled_flow(
  apply_tile: Callable[[jax.Array], jax.Array], frames: jax.Array, tile_hw: Sequence[int], min_overlap: int = 20
) -> jax.Array:
  """Flow [B, H, W, 2] of frames [B, 2, H, W, C] from a window model.

  `apply_tile` maps [B, 2, th, tw, C] -> [B, th, tw, 2]; the windows run
  one after another (`lax.scan`: compiled once, memory of one window).
  """
  if frames.ndim != 5 or frames.shape[1] != 2:
    raise ValueError(f'frames must be [B, 2, H, W, C], got {frames.shape}')
  th, tw = tile_hw
  h, w = frames.shape[2:4]
  ph, pw = max(th - h, 0), max(tw - w, 0)
  if ph or pw:
    frames = jnp.pad(frames, [(0, 0), (0, 0), (0, ph), (0, pw), (0, 0)], mode='edge')
  hh, ww = frames.shape[2:4]
  origins = tile_origins((hh, ww), (th, tw), min_overlap)
  weight = tile_weights((th, tw))
  count = np.zeros((hh, ww), np.float32)  # Static: known from the grid.
  for y, x in origins:
    count[y : y + th, x : x + tw] += weight
  batch, channels = frames.shape[0], frames.shape[-1]

  def step(total, origin):  # One window: run, weight, add in place.
    y, x = origin[0], origin[1]
    window = jax.lax.dynamic_slice(frames, (0, 0, y, x, 0), (batch, 2, th, tw, channels))
    flow = apply_tile(window) * jnp.asarray(weight)[None, :, :, None]
    here = jax.lax.dynamic_slice(total, (0, y, x, 0), (batch, th, tw, 2))
    total = jax.lax.dynamic_update_slice(total, here + flow.astype(total.dtype), (0, y, x, 0))
    return total, None

  total = jnp.zeros((batch, hh, ww, 2), jnp.float32)
  total, _ = jax.lax.scan(step, total, jnp.asarray(origins, jnp.int32))
  total = total / jnp.asarray(count)[None, :, :, None]
  return total[:, :h, :w]


# ------------------------------------------------------------------- model


@dataclasses.dataclass(frozen=True)
class FlowModel:
  """`net.init(rng, frames, is_training=...)` / `net.apply(params, state,
  rng, frames, is_training=...)` on frames [B, 2, H, W, 3] in [-1, 1]
  -> flow [B, H, W, 2] in pixels. Frames of `train_size` go straight
  through the model; any other size is tiled (inference only)."""

  net: hk.TransformedWithState
  train_size: tuple[int, int]
  min_overlap: int
  reference: dict[str, Any]


def build_flow_model(model_cfg) -> FlowModel:
  cfg = resolve_model_config(model_cfg)
  ref_cfg = reference_config(cfg)
  inner = models.build_from_reference_config(ref_cfg).net
  size, overlap = cfg['train_size'], int(cfg['min_overlap'])

  def init(rng, frames, *, is_training):
    window = frames[:, :, : size[0], : size[1]]
    if window.shape[2:4] != size:  # Smaller than a window: shapes suffice.
      window = jnp.zeros(frames.shape[:2] + size + frames.shape[-1:], frames.dtype)
    return inner.init(rng, window, is_training=is_training)

  def apply(params, state, rng, frames, *, is_training):
    if frames.shape[2:4] == size:
      return inner.apply(params, state, rng, frames, is_training=is_training)
    if is_training:
      raise ValueError(
        f'training needs frames of model.train_size={size}, got {frames.shape[2:4]} (crop them in the pipeline)'
      )
    run = lambda window: inner.apply(params, state, rng, window, is_training=False)[0]
    return tiled_flow(run, frames, size, overlap), state

  return FlowModel(hk.TransformedWithState(init, apply), size, overlap, ref_cfg)


# ----------------------------------------------------------------- metrics


def endpoint_error(pred: jax.Array, gt: jax.Array) -> jax.Array:
  """[..., H, W, 2] x2 -> [..., H, W] Euclidean end-point error (pixels)."""
  return jnp.sqrt(jnp.sum(jnp.square(pred - gt), axis=-1))


def flow_error_sums(pred: jax.Array, gt: jax.Array, valid: jax.Array, occluded: jax.Array) -> dict[str, jax.Array]:
  """Per-example sums [B] from which `pooled_metrics` computes the scores.

  pred, gt [B, H, W, 2]; valid, occluded [B, H, W] in {0, 1}. Outliers are
  KITTI's Fl definition: EPE > 3 px and > 5% of the true flow's magnitude.
  """
  epe = endpoint_error(pred.astype(jnp.float32), gt.astype(jnp.float32))
  valid = valid.astype(jnp.float32)
  occ = occluded.astype(jnp.float32) * valid
  noc = valid - occ
  mag = jnp.sqrt(jnp.sum(jnp.square(gt.astype(jnp.float32)), -1))
  outlier = ((epe > 3.0) & (epe > 0.05 * mag)).astype(jnp.float32)
  s = lambda x: jnp.sum(x, axis=(1, 2))
  return dict(
    epe_sum=s(epe * valid),
    valid_count=s(valid),
    outlier_sum=s(outlier * valid),
    noc_epe_sum=s(epe * noc),
    noc_count=s(noc),
    occ_epe_sum=s(epe * occ),
    occ_count=s(occ),
  )


def pooled_metrics(sums: Mapping[str, np.ndarray], has_occlusion: np.ndarray | None = None) -> dict[str, float]:
  """EPE over all valid pixels of the set (the benchmarks pool pixels), Fl-all
  in %, and EPE over non-occluded / occluded pixels where masks exist."""
  total = lambda k: float(np.sum(np.asarray(sums[k], np.float64)))
  out = {}
  count = total('valid_count')
  if count > 0:
    out['epe'] = total('epe_sum') / count
    out['fl_all'] = 100.0 * total('outlier_sum') / count
  if has_occlusion is None or np.any(np.asarray(has_occlusion) > 0):
    keep = np.ones_like(np.asarray(sums['noc_count'])) if has_occlusion is None else np.asarray(has_occlusion) > 0
    for name in ('noc', 'occ'):
      c = float(np.sum(np.asarray(sums[f'{name}_count'])[keep]))
      if c > 0:
        out[f'epe_{name}'] = float(np.sum(np.asarray(sums[f'{name}_epe_sum'], np.float64)[keep])) / c
  return out


def epe_loss(pred: jax.Array, gt: jax.Array, valid: jax.Array) -> jax.Array:
  """Mean end-point error over valid pixels of the batch (scalar).

  The training loss of FlowNet (Dosovitskiy et al., 2015), the metric itself.
  """
  diff = pred.astype(jnp.float32) - gt.astype(jnp.float32)
  # +1e-12 inside the root: a finite gradient where the error is exactly 0.
  epe = jnp.sqrt(jnp.sum(jnp.square(diff), axis=-1) + 1e-12)
  valid = valid.astype(jnp.float32)
  return jnp.sum(epe * valid) / jnp.maximum(jnp.sum(valid), 1.0)


def model_config_from_reference(ref: Mapping[str, Any]) -> dict[str, Any]:
  """A flow `config.model` section from a golden / published `__config__`."""
  if ref.get('model') != 'optical_flow':
    raise ValueError(f'not an optical_flow reference config (model={ref.get("model")!r})')
  out = {
    k: ref[k]
    for k in (
      'train_size',
      'num_bands',
      'num_channels',
      'flow_scale_factor',
      'rescale_factor',
      'patch_mlp_hidden',
      'decoder_query_residual',
    )
    if k in ref
  }
  out['train_size'] = tuple(out.get('train_size', MODEL_DEFAULTS['train_size']))
  # The colab's 20 px for the released 368 x 496 windows; scaled-down
  # models (goldens) get a quarter of their smaller side at most.
  out['min_overlap'] = min(20, min(out['train_size']) // 4)
  out['encoder'] = {k: v for k, v in dict(ref.get('encoder', {})).items() if k in ENCODER_KEYS}
  return out
