"""Multimodal autoencoding (Perceiver IO, Kinetics): video + audio + label.

Training decodes a random subset of the video pixels and audio patches
(`autoencoding.train_image_queries` / `train_audio_queries`) and the label,
with the label input masked with probability `autoencoding.label_mask_prob`;
the loss is a weighted sum (`autoencoding.loss_weights`) of L1 on video and
audio and cross-entropy on the label (perceiver/multimodal.py).

Evaluation decodes everything (in `autoencoding.eval_chunks` slices) with
the label input masked and reports per example: video_psnr, audio_psnr,
top1 (the decoded label), and reference points: baseline_silence_psnr
(all-zero audio), baseline_clip_mean_frame_psnr (every frame predicted as
the clip's own mean frame: a static-video reference that sees the clip) and,
with `autoencoding.dataset_mean_baseline`, baseline_mean_frame_psnr (every
frame predicted as the evaluation set's mean frame; collects two frames per
clip, so off for full-size runs), plus chance_top1, and audio_psnr_pooled /
baseline_silence_psnr_pooled: the audio PSNR of the squared error pooled
over the set (see `pooled_psnr`).
"""

from __future__ import annotations

from typing import Any, Mapping

import haiku as hk
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from perceiver import multimodal

SECTION_KEYS = (
  'label_mask_prob',
  'train_image_queries',
  'train_audio_queries',
  'loss_weights',
  'eval_chunks',
  'dataset_mean_baseline',
)


def _build(config) -> multimodal.Autoencoder:
  return multimodal.build_autoencoder(config.model, label_mask_prob=float(config.autoencoding.label_mask_prob))


class AutoencodingTask:
  """Reconstruct video and audio, decode the class label (see module doc)."""

  name = 'autoencoding'
  batch_keys = ('video', 'audio', 'label')

  def check_config(self, config: ml_collections.ConfigDict) -> None:
    from perceiver.train.config_checks import ConfigError  # pylint: disable=g-import-not-at-top

    if 'autoencoding' not in config:
      raise ConfigError(f'config has no autoencoding section (fields: {", ".join(SECTION_KEYS)})')
    a = config.autoencoding
    try:
      model = multimodal.check_model_config(config.model)
    except ValueError as e:
      raise ConfigError(str(e)) from None
    data = config.data
    kinetics = data.get('name') == 'kinetics'  # (synthetic smoke data has no such fields)
    checks = (
      (
        not kinetics or data.get('num_frames') == model['num_frames'],
        f'data.num_frames={data.get("num_frames")} but model.num_frames={model["num_frames"]}',
      ),
      (
        not kinetics or data.get('video_size') == multimodal.frame_size(model),
        f"data.video_size={data.get('video_size')} but the model's frames are "
        f'{multimodal.frame_size(model)} (model.frame_size)',
      ),
      (
        not kinetics or data.get('audio_samples_per_frame') == model['audio_samples_per_frame'],
        f'data.audio_samples_per_frame={data.get("audio_samples_per_frame")} but '
        f'model.audio_samples_per_frame={model["audio_samples_per_frame"]}',
      ),
      (
        data.get('num_classes') in (None, model['num_classes']),
        f'data.num_classes={data.get("num_classes")} but model.num_classes={model["num_classes"]}',
      ),
      (0.0 <= a.label_mask_prob <= 1.0, f'autoencoding.label_mask_prob={a.label_mask_prob} not in [0, 1]'),
      (a.eval_chunks >= 1, f'autoencoding.eval_chunks={a.eval_chunks} must be >= 1'),
      (
        set(a.loss_weights) == {'video', 'audio', 'label'},
        'autoencoding.loss_weights needs exactly video, audio and label',
      ),
    )
    for ok, message in checks:
      if not ok:
        raise ConfigError(message)
    frame = multimodal.frame_size(model)
    n_image = model['num_frames'] * frame * frame
    n_audio = model['num_frames'] * model['audio_samples_per_frame'] // model['samples_per_patch']
    for field, total in (('train_image_queries', n_image), ('train_audio_queries', n_audio)):
      if not 0 < a[field] <= total:
        raise ConfigError(f'autoencoding.{field}={a[field]} must be in [1, {total}] (the outputs)')

  def build_model(self, config: ml_collections.ConfigDict) -> hk.TransformedWithState:
    return _build(config).net

  def model_inputs(self, batch: Mapping[str, Any]) -> dict[str, Any]:
    # Labels are left out: parameters do not depend on them, and evaluation
    # masks the label input anyway.
    return {'video': batch['video'], 'audio': batch['audio']}

  def _query_setup(self, batch, config):
    model = multimodal.check_model_config(config.model)
    n_image = int(np.prod(batch['video'].shape[1:4]))
    n_audio = batch['audio'].shape[1] // int(model['samples_per_patch'])
    return int(model['samples_per_patch']), n_image, n_audio

  def train_loss(self, net, params, model_state, rng, batch, config):
    a = config.autoencoding
    spp, n_image, n_audio = self._query_setup(batch, config)
    k_image, k_audio, k_apply = jax.random.split(rng, 3)
    idx_image = multimodal.sample_queries(k_image, n_image, int(a.train_image_queries))
    idx_audio = multimodal.sample_queries(k_audio, n_audio, int(a.train_audio_queries))
    out, model_state = net.apply(
      params,
      model_state,
      k_apply,
      {
        'video': batch['video'],
        'audio': batch['audio'],
        'label': batch['label'],
        'subsample_image': idx_image,
        'subsample_audio': idx_audio,
      },
      is_training=True,
    )
    loss, terms = multimodal.reconstruction_losses(
      out,
      multimodal.video_targets(batch['video'], idx_image),
      multimodal.audio_targets(batch['audio'], idx_audio, spp),
      batch['label'],
      weights=dict(a.loss_weights),
    )
    top1 = jnp.mean(jnp.argmax(out['label'], -1) == batch['label']).astype(jnp.float32)
    return loss, (model_state, dict(terms, top1=top1))

  def eval_outputs(self, net, params, model_state, batch, config):
    ae = multimodal.Autoencoder(net, multimodal.check_model_config(config.model))
    video, audio = batch['video'], batch['audio']
    out = multimodal.reconstruct(ae, params, model_state, video, audio, chunks=int(config.autoencoding.eval_chunks))
    audio = audio.reshape(audio.shape[0], -1)
    clip_mean = jnp.mean(video, axis=1)  # [B, H, W, 3]
    result = dict(
      video_psnr=multimodal.psnr(out['image'], video),
      audio_psnr=multimodal.psnr(out['audio'], audio),
      top1=(jnp.argmax(out['label'], -1) == batch['label']).astype(jnp.float32),
      baseline_clip_mean_frame_psnr=multimodal.psnr(jnp.broadcast_to(clip_mean[:, None], video.shape), video),
      baseline_silence_psnr=multimodal.psnr(jnp.zeros_like(audio), audio),
    )
    # Squared errors per clip, for the pooled audio PSNR (finalize_eval).
    collect = dict(audio_mse=jnp.mean((out['audio'] - audio) ** 2, axis=1), silence_mse=jnp.mean(audio**2, axis=1))
    if config.autoencoding.dataset_mean_baseline:
      collect.update(frame_mean=clip_mean, frame_sq=jnp.mean(video**2, axis=1))
    result['collect'] = collect
    return result

  def finalize_eval(self, collected, config) -> dict[str, float]:
    out = {'chance_top1': 1.0 / float(multimodal.check_model_config(config.model)['num_classes'])}
    for name, key in (('audio_psnr_pooled', 'audio_mse'), ('baseline_silence_psnr_pooled', 'silence_mse')):
      if key in collected:
        out[name] = pooled_psnr(collected[key])
    if 'frame_mean' in collected:
      out['baseline_mean_frame_psnr'] = mean_frame_psnr(collected['frame_mean'], collected['frame_sq'])
    return out


def mean_frame_psnr(frame_mean: np.ndarray, frame_sq: np.ndarray) -> float:
  """Mean per-clip PSNR of predicting every frame as the evaluation set's
  mean frame m, from each clip's temporal mean f_i and mean square s_i
  ([N, H, W, 3]): MSE_i = mean over pixels of s_i - 2 f_i m + m^2."""
  f = np.asarray(frame_mean, np.float64)
  m = f.mean(axis=0)
  mse = np.mean(np.asarray(frame_sq, np.float64) - 2 * f * m + m**2, axis=(1, 2, 3))
  return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def pooled_psnr(mse: np.ndarray) -> float:
  """PSNR (peak 1) of the squared error pooled over all clips ([N] per-clip MSEs).

  The per-clip mean of PSNR rewards near-silent clips without bound: a
  0.16 s window in a pause scores 40-66 dB for all-zero audio, so that mean
  mostly ranks how quiet the quiet clips are reproduced. Pooling the error
  first weighs every sample alike (docs/multimodal.md, "Measured here").
  """
  return float(10 * np.log10(1.0 / max(float(np.mean(np.asarray(mse, np.float64))), 1e-10)))
