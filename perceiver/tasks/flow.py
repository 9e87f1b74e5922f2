"""Optical flow (`config.task = 'flow'`): EPE training, benchmark metrics.

Batches come from the `flow` data source (perceiver.data.flow): `frames`
[B, 2, H, W, 3] in [-1, 1], `flow` [B, H, W, 2], `valid` / `occluded`
[B, H, W], `has_occlusion` [B]. Training batches are `model.train_size`
crops; evaluation frames of any size are processed by overlapping windows
(perceiver.flow.tiled_flow, the reference colab's scheme).

Logged at evaluation (all over the valid pixels of the whole split, pooled
like the Sintel and KITTI benchmarks): `epe`, `fl_all` (% of pixels with
EPE > 3 px and > 5% of the true magnitude, KITTI's Fl), `epe_noc` /
`epe_occ` where the dataset gives occlusions, and `zero_flow_epe` (the
EPE of predicting no motion: the trivial baseline on the same split);
`epe_per_frame` is the mean of per-frame EPEs. With `flow.picture_dir` set,
the first `flow.num_pictures` evaluation pairs are also drawn there
(prediction beside ground truth, Middlebury colour wheel).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import haiku as hk
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from perceiver import flow as flow_lib

BATCH_KEYS = ('frames', 'flow', 'valid', 'occluded', 'has_occlusion')
# `config.flow` fields and defaults.
FLOW_DEFAULTS = dict(
  picture_dir='',  # '' : no pictures. Else PNGs of eval pairs go here.
  num_pictures=4,
  picture_size=96,  # Longer side (px) of the thumbnails kept for them.
)


def flow_section(config) -> dict[str, Any]:
  given = dict(config.get('flow', {}) or {})
  unknown = sorted(set(given) - set(FLOW_DEFAULTS))
  if unknown:
    raise ValueError(f'flow: unknown field(s) {unknown}; known: {sorted(FLOW_DEFAULTS)}')
  return dict(FLOW_DEFAULTS, **given)


def _thumbnail(x: jax.Array, size: int) -> jax.Array:
  """[B, H, W, C] -> [B, h, w, C], longer side <= size (strided)."""
  stride = max(1, -(-max(x.shape[1:3]) // size))
  return x[:, ::stride, ::stride]


class FlowTask:
  """Mean end-point error over valid pixels (FlowNet's loss, the metric)."""

  name = 'flow'
  batch_keys = BATCH_KEYS

  def check_config(self, config: ml_collections.ConfigDict) -> None:
    from perceiver.train.config_checks import ConfigError  # pylint: disable=g-import-not-at-top

    try:
      model = flow_lib.resolve_model_config(config.model)
      flow_section(config)
      if config.data.get('name') == 'flow':
        from perceiver.data import flow as flow_data  # pylint: disable=g-import-not-at-top

        data = flow_data.resolve_config(config.data)
        if tuple(data.crop_size) != tuple(model['train_size']):
          raise ValueError(
            f'data.crop_size={tuple(data.crop_size)} must equal '
            f'model.train_size={tuple(model["train_size"])} (training runs '
            'the model on whole crops)'
          )
    except ValueError as e:
      raise ConfigError(str(e)) from None

  def build_model(self, config: ml_collections.ConfigDict) -> hk.TransformedWithState:
    return flow_lib.build_flow_model(config.model).net

  def model_inputs(self, batch: Mapping[str, Any]) -> Any:
    return batch['frames']

  def train_loss(self, net, params, model_state, rng, batch, config):
    pred, model_state = net.apply(params, model_state, rng, batch['frames'], is_training=True)
    pred = pred.astype(jnp.float32)  # [B, H, W, 2]
    loss = flow_lib.epe_loss(pred, batch['flow'], batch['valid'])
    return loss, (model_state, dict(epe=loss))

  def eval_outputs(self, net, params, model_state, batch, config):
    pred, _ = net.apply(params, model_state, None, batch['frames'], is_training=False)
    pred = pred.astype(jnp.float32)
    sums = flow_lib.flow_error_sums(pred, batch['flow'], batch['valid'], batch['occluded'])
    zero = flow_lib.endpoint_error(jnp.zeros_like(batch['flow']), batch['flow'])
    sums['zero_epe_sum'] = jnp.sum(zero * batch['valid'], axis=(1, 2))
    collect = dict(sums, has_occlusion=batch['has_occlusion'])
    pictures = flow_section(config)
    if pictures['picture_dir'] and pictures['num_pictures'] > 0:
      size = int(pictures['picture_size'])
      collect.update(
        picture_pred=_thumbnail(pred, size).astype(jnp.float16),
        picture_gt=_thumbnail(batch['flow'], size).astype(jnp.float16),
        picture_frame=_thumbnail(batch['frames'][:, 0], size).astype(jnp.float16),
      )
    epe = sums['epe_sum'] / jnp.maximum(sums['valid_count'], 1.0)
    return dict(epe_per_frame=epe, collect=collect)

  def finalize_eval(self, collected: Mapping[str, np.ndarray], config: ml_collections.ConfigDict) -> dict[str, float]:
    if 'epe_sum' not in collected:
      return {}
    out = flow_lib.pooled_metrics(collected, collected['has_occlusion'])
    count = float(np.sum(collected['valid_count']))
    if count > 0:
      out['zero_flow_epe'] = float(np.sum(collected['zero_epe_sum'], dtype=np.float64)) / count
    pictures = flow_section(config)
    if pictures['picture_dir'] and 'picture_pred' in collected:
      write_pictures(pictures['picture_dir'], collected, int(pictures['num_pictures']))
    return out


def write_pictures(directory: str, collected: Mapping[str, np.ndarray], num: int) -> list[str]:
  """eval_NN.png: first frame, predicted and true flow on one colour scale."""
  from perceiver import flow_viz  # pylint: disable=g-import-not-at-top

  os.makedirs(directory, exist_ok=True)
  paths = []
  for i in range(min(num, len(collected['picture_pred']))):
    pred = np.asarray(collected['picture_pred'][i], np.float32)
    gt = np.asarray(collected['picture_gt'][i], np.float32)
    frame = np.asarray(collected['picture_frame'][i], np.float32)
    frame = np.clip((frame + 1) * 127.5, 0, 255).astype(np.uint8)
    scale = float(max(np.hypot(gt[..., 0], gt[..., 1]).max(), 1e-3))
    path = os.path.join(directory, f'eval_{i:02d}.png')
    flow_viz.save_flow_png(
      path, pred, frame=frame, max_flow=scale, title=f'eval pair {i}: predicted flow', reference=gt
    )
    paths.append(path)
  return paths
