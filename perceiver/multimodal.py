"""Perceiver IO multimodal autoencoding (video + audio + class label).

The model is the released Kinetics autoencoder's architecture
(`models.build_from_reference_config({'model': 'video_autoencoder', ...})`,
golden parity in tests/model), so released weights load by name; any size
is a config (`num_frames`, `img_sz`, `encoder`, ...: the reference keys, see
perceiver/checkpoints/published.py for the released values). Inputs, as in
the paper (PAPERS.md, "Multimodal autoencoding"): 1 x 4 x 4 video patches,
raw audio in patches of `samples_per_patch` samples and the one-hot class
label, each padded with learned modality channels to one width and
concatenated into one input array (io.MultimodalPreprocessor). The decoder
queries every video pixel (t, y, x), every audio patch and the label; in
training only a random subset of the video and audio queries is decoded
(`subsample_*`), which is what makes 16 x 224 x 224 outputs trainable.

Training masks the label input with probability `label_mask_prob` (a learned
mask token replaces it); evaluation always masks it, so the decoded label is
a classification of the video and audio alone.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Mapping, Optional

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from perceiver import models

REQUIRED_KEYS = ('num_frames', 'img_sz', 'samples_per_patch', 'audio_samples_per_frame', 'num_classes', 'encoder')
KNOWN_KEYS = frozenset(
  REQUIRED_KEYS
  + (
    'model',
    'image_num_bands',
    'audio_num_bands',
    'min_padding_size',
    'mask_probs',
    'decoder_query_channels',
    'decoder_output_num_channels',
    'layer_norm_eps',
    'transform',
    'frame_size',
    'audio_output_zero_init',
  )
)
PATCH = (1, 4, 4)  # (t, y, x) video patch of the released model (spatial_downsample=4).


def check_model_config(model_config) -> Dict[str, Any]:
  """The `config.model` dict, or a one-line ValueError naming the field."""
  cfg = model_config.to_dict() if hasattr(model_config, 'to_dict') else dict(model_config)
  if cfg.get('model', 'video_autoencoder') != 'video_autoencoder':
    raise ValueError(f"model.model must be 'video_autoencoder' for autoencoding, got {cfg['model']!r}")
  unknown = sorted(set(cfg) - KNOWN_KEYS)
  if unknown:
    raise ValueError(f'model: unknown key(s) {unknown} for the autoencoder; known: {sorted(KNOWN_KEYS)}')
  for key in REQUIRED_KEYS:
    if key not in cfg:
      raise ValueError(f'model.{key} is required for the autoencoder')
  for key in REQUIRED_KEYS[:-1]:
    if not isinstance(cfg[key], (int, np.integer)) or cfg[key] < 1:
      raise ValueError(f'model.{key} must be a positive integer, got {cfg[key]!r}')
  if cfg['audio_samples_per_frame'] % cfg['samples_per_patch']:
    raise ValueError(
      f'model.audio_samples_per_frame={cfg["audio_samples_per_frame"]} is not a multiple '
      f'of model.samples_per_patch={cfg["samples_per_patch"]}'
    )
  cfg['model'] = 'video_autoencoder'
  return cfg


def frame_size(model_config: Mapping[str, Any]) -> int:
  """Side of the square frames the model is trained on.

  `frame_size` when given; else 4 x `img_sz`, the released model's 224 x 224
  frames for img_sz 56 (the colab's IMG_SZ; see published.py's caveat).
  """
  return int(model_config.get('frame_size') or 4 * int(model_config['img_sz']))


@dataclasses.dataclass(frozen=True)
class Autoencoder:
  """A trainable autoencoder.

  `net.init(rng, inputs, is_training=...)` / `net.apply(params, state, rng,
  inputs, is_training=...)` take a dict: video f32 [B, T, H, W, 3] in [0, 1],
  audio f32 [B, N, 1] in [-1, 1], optional label i32 [B], optional
  subsample_image / subsample_audio i32 [Q] (flat indices of the decoded
  video pixels / audio patches; all when absent). They return
  {'image': [B, Qi, 3], 'audio': [B, Qa * samples_per_patch], 'label': [B, K]}.
  """

  net: hk.TransformedWithState
  config: Dict[str, Any]

  @property
  def num_classes(self) -> int:
    return int(self.config['num_classes'])

  @property
  def samples_per_patch(self) -> int:
    return int(self.config['samples_per_patch'])

  def num_audio_samples(self) -> int:
    return int(self.config['num_frames']) * int(self.config['audio_samples_per_frame'])


def build_autoencoder(model_config, *, label_mask_prob: float = 0.5) -> Autoencoder:
  """The autoencoder of `model_config` (reference keys); see `Autoencoder`."""
  cfg = check_model_config(model_config)
  if not 0.0 <= label_mask_prob <= 1.0:
    raise ValueError(f'label_mask_prob must be in [0, 1], got {label_mask_prob}')
  # Same modules (and parameter names) in training and evaluation; only the
  # label's mask probability differs.
  train = models.build_from_reference_config(
    dict(cfg, mask_probs={'image': 0.0, 'audio': 0.0, 'label': float(label_mask_prob)})
  ).net
  evaluate = models.build_from_reference_config(dict(cfg, mask_probs={'image': 0.0, 'audio': 0.0, 'label': 1.0})).net
  num_classes = int(cfg['num_classes'])
  spp = int(cfg['samples_per_patch'])
  n_audio = int(cfg['num_frames']) * int(cfg['audio_samples_per_frame'])

  def args(inputs: Mapping[str, jax.Array]):
    if not isinstance(inputs, Mapping) or 'video' not in inputs or 'audio' not in inputs:
      raise KeyError('autoencoder inputs must be a dict with video and audio')
    video, audio = inputs['video'], inputs['audio']
    if video.ndim != 5 or video.shape[1] != cfg['num_frames'] or video.shape[-1] != 3:
      raise ValueError(f'video must be [B, {cfg["num_frames"]}, H, W, 3] (model.num_frames), got {video.shape}')
    if video.shape[2] % PATCH[1] or video.shape[3] % PATCH[2]:
      raise ValueError(f'video frames {video.shape[2:4]} must be multiples of {PATCH[1:]} (patches)')
    if audio.shape[1:] != (n_audio, 1):
      raise ValueError(f'audio must be [B, {n_audio}, 1] (num_frames x audio_samples_per_frame), got {audio.shape}')
    sub_image = inputs.get('subsample_image')
    if sub_image is None:
      sub_image = jnp.arange(int(np.prod(video.shape[1:4])), dtype=jnp.int32)
    sub_audio = inputs.get('subsample_audio')
    if sub_audio is None:
      sub_audio = jnp.arange(n_audio // spp, dtype=jnp.int32)
    labels = None
    if inputs.get('label') is not None:
      labels = jax.nn.one_hot(inputs['label'], num_classes, dtype=video.dtype)
    return video, audio, sub_image, sub_audio, labels

  def init(rng, inputs, *, is_training: bool):
    return train.init(rng, *args(inputs), is_training=is_training)

  def apply(params, state, rng, inputs, *, is_training: bool):
    net = train if is_training else evaluate
    return net.apply(params, state, rng, *args(inputs), is_training=is_training)

  return Autoencoder(hk.TransformedWithState(init=init, apply=apply), cfg)


# ------------------------------------------------------------ queries, losses


def sample_queries(rng: jax.Array, total: int, count: int) -> jax.Array:
  """`count` distinct flat output indices out of `total`, sorted; i32 [count]."""
  if not 0 < count <= total:
    raise ValueError(f'cannot decode {count} of {total} outputs per step')
  if count == total:
    return jnp.arange(total, dtype=jnp.int32)
  return jnp.sort(jax.random.choice(rng, total, (count,), replace=False)).astype(jnp.int32)


def video_targets(video: jax.Array, idx: Optional[jax.Array]) -> jax.Array:
  """[B, T, H, W, 3] -> the decoded pixels [B, Q, 3] (all when idx is None)."""
  flat = jnp.asarray(video).reshape(video.shape[0], -1, video.shape[-1])
  return flat if idx is None else flat[:, idx]


def audio_targets(audio: jax.Array, idx: Optional[jax.Array], samples_per_patch: int) -> jax.Array:
  """[B, N, 1] -> the decoded samples [B, Q * samples_per_patch]."""
  patches = jnp.asarray(audio).reshape(audio.shape[0], -1, samples_per_patch)
  if idx is not None:
    patches = patches[:, idx]
  return patches.reshape(audio.shape[0], -1)


def reconstruction_losses(
  outputs: Mapping[str, jax.Array],
  video_target: jax.Array,
  audio_target: jax.Array,
  labels: jax.Array,
  *,
  weights: Mapping[str, float],
):
  """(weighted total, per-term means): L1 on video and audio, softmax
  cross-entropy on the label; weights {'video', 'audio', 'label'}."""
  video = jnp.mean(jnp.abs(outputs['image'].astype(jnp.float32) - video_target))
  audio = jnp.mean(jnp.abs(outputs['audio'].astype(jnp.float32) - audio_target))
  logp = jax.nn.log_softmax(outputs['label'].astype(jnp.float32))
  label = -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))
  total = weights['video'] * video + weights['audio'] * audio + weights['label'] * label
  return total, {'video_l1': video, 'audio_l1': audio, 'label_xent': label}


def psnr(pred: jax.Array, target: jax.Array, *, peak: float = 1.0) -> jax.Array:
  """Per-example PSNR in dB, 10 log10(peak^2 / MSE); [B, ...] -> [B].

  Video is in [0, 1] and audio in [-1, 1]: peak 1 for both (full-scale
  amplitude). MSE is floored at 1e-10 (100 dB) so a perfect copy is finite.
  """
  err = (pred.astype(jnp.float32) - target.astype(jnp.float32)).reshape(pred.shape[0], -1)
  mse = jnp.maximum(jnp.mean(err**2, axis=1), 1e-10)
  return 10.0 * jnp.log10(peak**2 / mse)


def reconstruct(
  autoencoder: Autoencoder,
  params,
  state,
  video: jax.Array,
  audio: jax.Array,
  *,
  chunks: int = 1,
  rng: Optional[jax.Array] = None,
) -> Dict[str, jax.Array]:
  """Full outputs with the label masked: image [B, T, H, W, 3], audio [B, N], label [B, K].

  The outputs are decoded in `chunks` slices of the video and audio queries
  (each slice re-encodes: memory goes with one slice), as the released
  model's colab does for 16 x 224 x 224 clips.
  """
  n_image = int(np.prod(video.shape[1:4]))
  n_audio = audio.shape[1] // autoencoder.samples_per_patch
  chunks = max(1, min(int(chunks), n_image))
  per_image, per_audio = math.ceil(n_image / chunks), math.ceil(n_audio / chunks)
  rng = jax.random.PRNGKey(0) if rng is None else rng  # Masking is deterministic in eval.
  images, audios, label = [], [], None
  for c in range(chunks):
    # Fixed-size slices (the last one repeats the final index), trimmed after.
    idx_i = jnp.minimum(jnp.arange(c * per_image, (c + 1) * per_image), n_image - 1).astype(jnp.int32)
    idx_a = jnp.minimum(jnp.arange(c * per_audio, (c + 1) * per_audio), n_audio - 1).astype(jnp.int32)
    out, _ = autoencoder.net.apply(
      params,
      state,
      rng,
      {'video': video, 'audio': audio, 'subsample_image': idx_i, 'subsample_audio': idx_a},
      is_training=False,
    )
    images.append(out['image'])
    audios.append(out['audio'].reshape(video.shape[0], per_audio, -1))
    label = out['label'] if label is None else label
  image = jnp.concatenate(images, axis=1)[:, :n_image].reshape(video.shape)
  audio_out = jnp.concatenate(audios, axis=1)[:, :n_audio].reshape(video.shape[0], -1)
  return {'image': image, 'audio': audio_out, 'label': label}
