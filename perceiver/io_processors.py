"""Input pre-processors and output post-processors for each modality.

A pre-processor turns a raw modality array into the encoder's byte array
[B, M, C] with position features attached, and returns
`(inputs [B, M, C], modality_sizes, inputs_without_pos)` like the reference.
Module names follow the reference so released checkpoints load unchanged.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import einops
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from perceiver import attention
from perceiver import position_encoding

ModalitySizes = Mapping[str, int]


def restructure(modality_sizes: ModalitySizes, inputs: jax.Array) -> Dict[str, jax.Array]:
  """Splits [B, M, C] back into modalities, in sorted modality order."""
  out, start = {}, 0
  for modality in sorted(modality_sizes):
    size = modality_sizes[modality]
    out[modality] = inputs[:, start : start + size]
    start += size
  return out


def space_to_depth(frames: jax.Array, *, temporal_block_size: int = 1, spatial_block_size: int = 1) -> jax.Array:
  """Patches: [B, H, W, C] -> [B, H/s, W/s, s*s*C]; [B, T, H, W, C] -> [B, T/t, H/s, W/s, t*s*s*C]."""
  s, t = spatial_block_size, temporal_block_size
  if frames.ndim == 4:
    if frames.shape[1] % s or frames.shape[2] % s:
      raise ValueError(f'image {frames.shape[1:3]} is not divisible into {s}x{s} patches')
    return einops.rearrange(frames, 'b (h dh) (w dw) c -> b h w (dh dw c)', dh=s, dw=s)
  if frames.ndim == 5:
    if frames.shape[1] % t or frames.shape[2] % s or frames.shape[3] % s:
      raise ValueError(f'video {frames.shape[1:4]} is not divisible into {t}x{s}x{s} patches')
    return einops.rearrange(frames, 'b (t dt) (h dh) (w dw) c -> b t h w (dt dh dw c)', dt=t, dh=s, dw=s)
  raise ValueError(f'space_to_depth expects [B, H, W, C] or [B, T, H, W, C], got {frames.shape}')


def extract_patches(images: jax.Array, size: int = 3) -> jax.Array:
  """[B, H, W, C] -> [B, H, W, size*size*C]: the zero-padded size x size neighbourhood.

  Channel order is (dy, dx, c), the order the released optical-flow model
  was trained with (checked against the golden file; XLA's
  `conv_general_dilated_patches` orders (c, dy, dx) and does not match).
  """
  if images.ndim != 4:
    raise ValueError(f'extract_patches expects [B, H, W, C], got {images.shape}')
  r = size // 2
  height, width = images.shape[1:3]
  padded = jnp.pad(images, [(0, 0), (r, r), (r, r), (0, 0)])
  return jnp.concatenate(
    [padded[:, dy : dy + height, dx : dx + width] for dy in range(size) for dx in range(size)], axis=-1
  )


def patches_for_flow(frames: jax.Array) -> jax.Array:
  """Frame pairs [B, T, H, W, C] -> 3x3 patches [B, T, H, W, 9C] (reference input format)."""
  if frames.ndim != 5:
    raise ValueError(f'optical flow expects [B, T, H, W, C] frames, got {frames.shape}')
  return jax.vmap(extract_patches, in_axes=1, out_axes=1)(frames)


def _check_floating(x: jax.Array, what: str) -> None:
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f'{what} must be a floating-point array, got dtype {x.dtype}')


class Conv2DDownsample(hk.Module):
  """The ResNet-style stem: (7x7/2 conv -> BatchNorm -> ReLU -> 3x3/2 max-pool) x num_layers."""

  def __init__(
    self,
    num_layers: int = 1,
    num_channels: int = 64,
    use_batchnorm: bool = True,
    bn_config: Optional[Mapping] = None,
    conv_padding='SAME',
    pool_padding: str = 'SAME',
    name: Optional[str] = None,
  ):
    """`conv_padding`/`pool_padding`: Haiku padding specs. The reference uses
    'SAME' for both; Hugging Face weights need ((3, 3), (3, 3)) and 'VALID'."""
    super().__init__(name=name)
    if isinstance(conv_padding, (list, tuple)):
      conv_padding = tuple(tuple(int(v) for v in p) for p in conv_padding)
    self._pool_padding = pool_padding
    bn_config = dict(bn_config or {})
    bn_config.setdefault('decay_rate', 0.9)
    bn_config.setdefault('eps', 1e-5)
    bn_config.setdefault('create_scale', True)
    bn_config.setdefault('create_offset', True)
    self.layers = []
    for _ in range(num_layers):
      conv = hk.Conv2D(
        output_channels=num_channels, kernel_shape=7, stride=2, with_bias=False, padding=conv_padding, name='conv'
      )
      bn = hk.BatchNorm(name='batchnorm', **bn_config) if use_batchnorm else None
      self.layers.append((conv, bn))

  def __call__(self, inputs: jax.Array, *, is_training: bool, test_local_stats: bool = False) -> jax.Array:
    out = inputs
    for conv, bn in self.layers:
      out = conv(out)
      if bn is not None:
        out = bn(out, is_training=is_training, test_local_stats=test_local_stats)
      out = jax.nn.relu(out)
      out = hk.max_pool(out, window_shape=(1, 3, 3, 1), strides=(1, 2, 2, 1), padding=self._pool_padding)
    return out


def fixed_permutation(num_inputs: int, seed: int) -> np.ndarray:
  """The one fixed input permutation of the permuted-input variants
  (Perceiver Table 2), int [M]: models, baselines and tools all use this."""
  return np.random.RandomState(seed).permutation(num_inputs)


def check_channels_last(x: Any, channels: int, *, what: str = 'images') -> None:
  """Refuses an image/video array whose last axis is not the `channels`
  the model was configured for, naming a channels-first layout when the
  array looks like one ([B, C, H, W] with C == channels)."""
  shape = tuple(getattr(x, 'shape', ()))
  if len(shape) < 4 or channels <= 0 or shape[-1] == channels:
    return
  hint = ''
  if shape[1] == channels:
    order = (0, *range(2, len(shape)), 1)
    hint = f'; it looks channels-first: transpose to channels-last with x.transpose{order}'
  raise ValueError(
    f'{what} must be channels-last [B, ..., H, W, C] with C={channels} '
    f'(model.input.input_channels), got shape {shape}{hint}'
  )


class _PositionalInputs(hk.Module):
  """Shared logic: flatten the index dims and attach position features."""

  # Called with keep_pos_apart=True, returns concatenated position features
  # that every example shares as attention.InputsWithPos (see there why).
  can_keep_pos_apart = True

  def __init__(
    self,
    *,
    position_encoding_type: str,
    fourier_position_encoding_kwargs=None,
    trainable_position_encoding_kwargs=None,
    project_pos_dim: int = -1,
    concat_or_add_pos: str = 'concat',
    n_extra_pos_mlp: int = 0,
    permute_seed: int = -1,
    name: Optional[str] = None,
  ):
    super().__init__(name=name)
    if concat_or_add_pos not in ('concat', 'add'):
      raise ValueError(f"concat_or_add_pos must be 'concat' or 'add', got {concat_or_add_pos!r}")
    if position_encoding_type not in ('fourier', 'trainable', 'none'):
      raise ValueError(
        f"position_encoding_type must be 'fourier', 'trainable' or 'none', got {position_encoding_type!r}"
      )
    self._position_encoding_type = position_encoding_type
    self._fourier_kwargs = fourier_position_encoding_kwargs
    self._trainable_kwargs = trainable_position_encoding_kwargs
    self._project_pos_dim = project_pos_dim
    self._concat_or_add_pos = concat_or_add_pos
    self._n_extra_pos_mlp = n_extra_pos_mlp
    self._permute_seed = permute_seed

  def _build_network_inputs(
    self, inputs: jax.Array, pos: Optional[jax.Array], network_input_is_1d: bool = True, keep_pos_apart: bool = False
  ) -> Tuple[Any, jax.Array]:
    """inputs [B, *index_dims, C] -> ([B, M, C + P], [B, M, C]).

    With `keep_pos_apart`, concatenated position features that do not depend
    on the example (no per-example `pos`) come back as
    InputsWithPos(values [B, M, C], pos [M, P]) instead of the [B, M, C + P]
    array it stands for."""
    batch = inputs.shape[0]
    index_dims = inputs.shape[1:-1]
    if inputs.ndim > 3 and network_input_is_1d:
      inputs = inputs.reshape(batch, int(np.prod(index_dims)), inputs.shape[-1])
    if self._position_encoding_type == 'none':
      with_pos = inputs
    else:
      encoding = position_encoding.build_position_encoding(
        self._position_encoding_type,
        index_dims=index_dims,
        project_pos_dim=self._project_pos_dim,
        trainable_position_encoding_kwargs=self._trainable_kwargs,
        fourier_position_encoding_kwargs=self._fourier_kwargs,
      )
      # Shared by the batch: kept apart as one [M, P] array, built for one
      # example (a learned encoding's gradient then needs no sum over B).
      apart = self._concat_or_add_pos == 'concat' and keep_pos_apart and pos is None and network_input_is_1d
      pos_enc = encoding(batch_size=1 if apart else batch, pos=pos).astype(inputs.dtype)
      for i in range(self._n_extra_pos_mlp):
        pos_enc = pos_enc + hk.Linear(pos_enc.shape[-1])(pos_enc)
        if i < self._n_extra_pos_mlp - 1:
          pos_enc = jax.nn.relu(pos_enc)
      if not network_input_is_1d:
        pos_enc = pos_enc.reshape(inputs.shape[:-1] + pos_enc.shape[-1:])
      if apart:
        with_pos = attention.InputsWithPos(inputs, pos_enc[0])
      elif self._concat_or_add_pos == 'concat':
        with_pos = jnp.concatenate([inputs, pos_enc], axis=-1)
      else:
        if pos_enc.shape[-1] != inputs.shape[-1]:
          raise ValueError(
            f'{self.module_name}: adding positions needs equal channels: inputs '
            f'{inputs.shape[-1]}, positions {pos_enc.shape[-1]} (set project_pos_dim)'
          )
        with_pos = inputs + pos_enc
    if self._permute_seed >= 0 and network_input_is_1d:
      # Permuted-input variant (Perceiver Table 2): one fixed permutation of
      # the M inputs, applied after position features are attached, so every
      # element keeps its true position feature.
      perm = fixed_permutation(with_pos.shape[1], self._permute_seed)
      if isinstance(with_pos, attention.InputsWithPos):
        with_pos = attention.InputsWithPos(with_pos.values[:, perm], with_pos.pos[perm])
      else:
        with_pos = with_pos[:, perm]
      inputs = inputs[:, perm]
    return with_pos, inputs


class ImagePreprocessor(_PositionalInputs):
  """Images [B, H, W, C] or video [B, T, H, W, C] -> [B, M, C'].

  prep_type: 'pixels' (optionally strided), 'conv1x1', 'conv' (ResNet stem,
  downsampling by 4 per layer), 'patches' (space-to-depth, optionally a
  linear layer after patching).
  """

  def __init__(
    self,
    prep_type: str = 'conv',
    spatial_downsample: int = 4,
    temporal_downsample: int = 1,
    position_encoding_type: str = 'fourier',
    n_extra_pos_mlp: int = 0,
    num_channels: int = 64,
    conv_after_patching: bool = False,
    conv2d_use_batchnorm: bool = True,
    concat_or_add_pos: str = 'concat',
    project_pos_dim: int = -1,
    fourier_position_encoding_kwargs=None,
    trainable_position_encoding_kwargs=None,
    permute_seed: int = -1,
    conv_stem_padding='SAME',
    conv_stem_pool_padding: str = 'SAME',
    patch_mlp_hidden: int = 0,
    name: str = 'image_preprocessor',
  ):
    super().__init__(
      position_encoding_type=position_encoding_type,
      fourier_position_encoding_kwargs=fourier_position_encoding_kwargs,
      trainable_position_encoding_kwargs=trainable_position_encoding_kwargs,
      project_pos_dim=project_pos_dim,
      concat_or_add_pos=concat_or_add_pos,
      n_extra_pos_mlp=n_extra_pos_mlp,
      permute_seed=permute_seed,
      name=name,
    )
    if prep_type not in ('conv', 'patches', 'pixels', 'conv1x1'):
      raise ValueError(f"prep_type must be 'conv', 'patches', 'pixels' or 'conv1x1', got {prep_type!r}")
    if spatial_downsample < 1 or temporal_downsample < 1:
      raise ValueError('spatial_downsample and temporal_downsample must be >= 1')
    self._prep_type = prep_type
    self._spatial_downsample = spatial_downsample
    self._temporal_downsample = temporal_downsample
    self._num_channels = num_channels
    self._conv_after_patching = conv_after_patching
    if patch_mlp_hidden < 0 or (patch_mlp_hidden and not (prep_type == 'patches' and conv_after_patching)):
      raise ValueError('patch_mlp_hidden needs prep_type=patches with conv_after_patching, and must be >= 0')
    self._patch_mlp_hidden = patch_mlp_hidden
    if prep_type == 'conv':
      num_layers = math.log(spatial_downsample, 4)
      if abs(num_layers - round(num_layers)) > 1e-6 or temporal_downsample != 1:
        raise ValueError(
          'the conv stem downsamples by powers of 4 in space only; got '
          f'spatial_downsample={spatial_downsample}, temporal_downsample={temporal_downsample}'
        )
      self.convnet = Conv2DDownsample(
        num_layers=int(round(num_layers)),
        num_channels=num_channels,
        use_batchnorm=conv2d_use_batchnorm,
        conv_padding=conv_stem_padding,
        pool_padding=conv_stem_pool_padding,
      )
    elif prep_type == 'conv1x1':
      if temporal_downsample != 1:
        raise ValueError('conv1x1 does not downsample in time')
      self.convnet_1x1 = hk.Conv2D(num_channels, kernel_shape=[1, 1], stride=[spatial_downsample, spatial_downsample])

  def __call__(
    self,
    inputs: jax.Array,
    *,
    is_training: bool,
    pos: Optional[jax.Array] = None,
    network_input_is_1d: bool = True,
    keep_pos_apart: bool = False,
  ):
    if inputs.ndim not in (4, 5):
      raise ValueError(
        f'{self.module_name}: expected images [B, H, W, C] or video [B, T, H, W, C], got shape {inputs.shape}'
      )
    _check_floating(inputs, 'images')
    if self._prep_type == 'conv':
      if inputs.ndim == 5:
        inputs = hk.BatchApply(lambda x: self.convnet(x, is_training=is_training))(inputs)
      else:
        inputs = self.convnet(inputs, is_training=is_training)
    elif self._prep_type == 'conv1x1':
      if inputs.ndim == 5:
        raise ValueError(f'{self.module_name}: conv1x1 takes images, not video')
      inputs = self.convnet_1x1(inputs)
    elif self._prep_type == 'pixels':
      s, t = self._spatial_downsample, self._temporal_downsample
      inputs = inputs[:, ::s, ::s] if inputs.ndim == 4 else inputs[:, ::t, ::s, ::s]
    else:  # patches
      inputs = space_to_depth(
        inputs, temporal_block_size=self._temporal_downsample, spatial_block_size=self._spatial_downsample
      )
      if inputs.ndim == 5 and inputs.shape[1] == 1:
        inputs = jnp.squeeze(inputs, axis=1)  # Frame pairs merged in time (optical flow).
      if self._conv_after_patching:
        patches = inputs
        inputs = hk.Linear(self._num_channels, name='patches_linear')(patches)
        if self._patch_mlp_hidden:
          # Ours, off by default: a nonlinear per-pixel path beside the linear
          # one. Motion within a 3x3 patch pair is a product of temporal and
          # spatial differences; the encoder only averages linear features of
          # the inputs, so without this a small model cannot see it.
          # It reads each patch pair normalised to zero mean and unit variance
          # (and the log of its contrast): sub-pixel motion moves intensities
          # by a few hundredths of the [-1, 1] range, so products of raw
          # differences would start far below the linear terms.
          mean = jnp.mean(patches, axis=-1, keepdims=True)
          std = jnp.std(patches, axis=-1, keepdims=True)
          normed = jnp.concatenate([(patches - mean) / (std + 1e-3), jnp.log(std + 1e-3)], axis=-1)
          hidden = jax.nn.gelu(hk.Linear(self._patch_mlp_hidden, name='patches_mlp_hidden')(normed))
          hidden = jax.nn.gelu(hk.Linear(self._patch_mlp_hidden, name='patches_mlp_hidden_2')(hidden))
          inputs = inputs + hk.Linear(self._num_channels, name='patches_mlp_out')(hidden)
    with_pos, without_pos = self._build_network_inputs(inputs, pos, network_input_is_1d, keep_pos_apart)
    return with_pos, None, without_pos


class AudioPreprocessor(_PositionalInputs):
  """Raw audio [B, T] or [B, T, 1] -> patches [B, T/P, P]; or mel [B, F, bins] as given."""

  def __init__(
    self,
    prep_type: str = 'patches',
    samples_per_patch: int = 96,
    position_encoding_type: str = 'fourier',
    n_extra_pos_mlp: int = 0,
    concat_or_add_pos: str = 'concat',
    project_pos_dim: int = -1,
    fourier_position_encoding_kwargs=None,
    trainable_position_encoding_kwargs=None,
    mel_patch_shape: Sequence[int] = (1, 1),
    name: str = 'audio_preprocessor',
  ):
    super().__init__(
      position_encoding_type=position_encoding_type,
      fourier_position_encoding_kwargs=fourier_position_encoding_kwargs,
      trainable_position_encoding_kwargs=trainable_position_encoding_kwargs,
      project_pos_dim=project_pos_dim,
      concat_or_add_pos=concat_or_add_pos,
      n_extra_pos_mlp=n_extra_pos_mlp,
      name=name,
    )
    if prep_type not in ('patches', 'mel'):
      raise ValueError(f"audio prep_type must be 'patches' or 'mel', got {prep_type!r}")
    self._prep_type = prep_type
    self._samples_per_patch = samples_per_patch
    self._mel_patch_shape = tuple(mel_patch_shape)

  def __call__(
    self,
    inputs: jax.Array,
    *,
    is_training: bool,
    pos: Optional[jax.Array] = None,
    network_input_is_1d: bool = True,
    keep_pos_apart: bool = False,
  ):
    _check_floating(inputs, 'audio')
    if self._prep_type == 'patches':
      if inputs.ndim == 3 and inputs.shape[-1] == self._samples_per_patch:
        pass  # Already patched by the input pipeline: [B, T/P, P].
      else:
        if inputs.ndim == 3 and inputs.shape[-1] != 1:
          raise ValueError(
            f'{self.module_name}: raw audio must be [B, T] or [B, T, 1] (or already '
            f'patched [B, N, {self._samples_per_patch}]), got {inputs.shape}'
          )
        inputs = inputs.reshape(inputs.shape[0], -1)
        if inputs.shape[1] % self._samples_per_patch:
          raise ValueError(
            f'{self.module_name}: {inputs.shape[1]} samples are not a multiple of '
            f'samples_per_patch={self._samples_per_patch}'
          )
        inputs = inputs.reshape(inputs.shape[0], -1, self._samples_per_patch)
    else:  # mel: [B, frames, bins] -> patches of mel_patch_shape on a 2-D grid
      if inputs.ndim != 3:
        raise ValueError(f'{self.module_name}: mel spectrogram must be [B, frames, bins], got {inputs.shape}')
      pt, pf = self._mel_patch_shape
      inputs = einops.rearrange(inputs, 'b (t dt) (f df) -> b t f (dt df)', dt=pt, df=pf)
    with_pos, without_pos = self._build_network_inputs(inputs, pos, network_input_is_1d, keep_pos_apart)
    return with_pos, None, without_pos


class PointCloudPreprocessor(hk.Module):
  """Points [B, N, 3] -> their Fourier features [B, N, 3(2K+1)] (positions are the points).

  The Perceiver's ModelNet40 input: the xyz coordinates (already unit-cube
  normalised by the pipeline) with 3-D Fourier features of the coordinates
  themselves; `concat_pos` keeps the raw xyz in the features.
  """

  def __init__(
    self,
    *,
    num_bands: int = 64,
    max_resolution: Sequence[int] = (1120, 1120, 1120),
    concat_pos: bool = True,
    sine_only: bool = False,
    name: str = 'point_cloud_preprocessor',
  ):
    super().__init__(name=name)
    self._num_bands = num_bands
    self._max_resolution = tuple(max_resolution)
    self._concat_pos = concat_pos
    self._sine_only = sine_only

  def __call__(
    self, inputs: jax.Array, *, is_training: bool, pos: Optional[jax.Array] = None, network_input_is_1d: bool = True
  ):
    if inputs.ndim != 3 or inputs.shape[-1] != len(self._max_resolution):
      raise ValueError(f'{self.module_name}: points must be [B, N, {len(self._max_resolution)}], got {inputs.shape}')
    _check_floating(inputs, 'points')
    feats = position_encoding.generate_fourier_features(
      inputs if pos is None else pos,
      num_bands=self._num_bands,
      max_resolution=self._max_resolution,
      concat_pos=self._concat_pos,
      sine_only=self._sine_only,
    )
    return feats.astype(inputs.dtype), None, inputs


BYTE_NGRAMS_MODULE = 'byte_ngrams'  # ByteNgrams' module name (language.transfer_encoder keys on it)


class ByteNgrams(hk.Module):
  """[B, T, C] byte embeddings (before positions are added) -> the same plus
  a learned function of each byte's neighbourhood,
  `x + Linear(gelu(Conv1D_k(x * mask)))` (ours; see
  `perceiver.config.ByteConvConfig` for why). Not in the reference, so
  released checkpoints (which lack it) run with it off."""

  def __init__(self, kernel_size: int, channels: int = 0, name: str = BYTE_NGRAMS_MODULE):
    super().__init__(name=name)
    if kernel_size < 1:
      raise ValueError(f'config.model.byte_conv.kernel_size must be >= 1 here, got {kernel_size}')
    self._kernel_size, self._channels = kernel_size, channels

  def __call__(self, x: jax.Array, input_mask: Optional[jax.Array]) -> jax.Array:
    if input_mask is not None:
      x_in = x * input_mask[..., None].astype(x.dtype)  # padding must not leak into its neighbours
    else:
      x_in = x
    width = self._channels or 4 * x.shape[-1]
    h = hk.Conv1D(output_channels=width, kernel_shape=self._kernel_size, padding='SAME')(x_in)  # [B, T, W]
    # Zero-initialised output: the layer starts as the identity, so a model
    # with it computes at step 0 what the same weights compute without it
    # (a classifier fine-tuned from a masked LM that lacks it starts as that
    # encoder; language.transfer_encoder leaves the layer fresh).
    out = hk.Linear(x.shape[-1], w_init=hk.initializers.Constant(0.0))(jax.nn.gelu(h))
    return x + out  # [B, T, C]


class OneHotPreprocessor(hk.Module):
  """One-hot labels [B, K] -> one input element [B, 1, K]."""

  def __init__(self, name: str = 'one_hot_preprocessor'):
    super().__init__(name=name)

  def __call__(self, inputs: jax.Array, *, is_training: bool, pos=None, network_input_is_1d: bool = True):
    inputs = inputs[:, None, :]
    return inputs, None, inputs


class MultimodalPreprocessor(hk.Module):
  """Several modalities -> one byte array, in sorted modality order.

  Each modality is padded with learned channels to a common width
  (max width + `min_padding_size`), and with `mask_probs` its elements are
  replaced by a learned mask token with that probability (autoencoding).
  """

  def __init__(
    self,
    modalities: Mapping[str, hk.Module],
    mask_probs: Optional[Mapping[str, float]] = None,
    min_padding_size: int = 2,
    name: str = 'multimodal_preprocessor',
  ):
    super().__init__(name=name)
    self._modalities = dict(modalities)
    self._mask_probs = mask_probs
    self._min_padding_size = min_padding_size

  def __call__(self, inputs: Mapping[str, jax.Array], *, is_training: bool, pos=None, network_input_is_1d: bool = True):
    missing = sorted(set(self._modalities) - set(inputs))
    if missing:
      raise KeyError(f'{self.module_name}: inputs lack modalities {missing}; got {sorted(inputs)}')
    outputs, without_pos = {}, {}
    for modality, prep in self._modalities.items():
      outputs[modality], _, without_pos[modality] = prep(
        inputs[modality], is_training=is_training, pos=pos, network_input_is_1d=network_input_is_1d
      )
    width = max(o.shape[2] for o in outputs.values()) + self._min_padding_size
    padded, sizes = {}, {}
    for modality, out in outputs.items():
      padding = position_encoding.TrainablePositionEncoding(
        1, num_channels=width - out.shape[2], init_scale=0.02, name=f'{modality}_padding'
      )(out.shape[0])
      padding = jnp.broadcast_to(padding, out.shape[:2] + (width - out.shape[2],)).astype(out.dtype)
      out = jnp.concatenate([out, padding], axis=2)
      if self._mask_probs is not None:
        token = position_encoding.TrainablePositionEncoding(
          1, num_channels=width, init_scale=0.02, name=f'{modality}_mask_token'
        )(out.shape[0])
        mask = jax.random.bernoulli(hk.next_rng_key(), self._mask_probs[modality], out.shape[:2])
        mask = mask[:, :, None].astype(out.dtype)
        out = (1 - mask) * out + mask * token.astype(out.dtype)
      padded[modality] = out
      sizes[modality] = out.shape[1]
    return jnp.concatenate([padded[m] for m in sorted(padded)], axis=1), sizes, without_pos


class AudioPostprocessor(hk.Module):
  """[B, N, C] -> [B, N * samples_per_patch] waveform."""

  def __init__(self, samples_per_patch: int = 96, zero_init: bool = False, name: str = 'audio_postprocessor'):
    super().__init__(name=name)
    self._samples_per_patch = samples_per_patch
    # zero_init: start from silence. A waveform is small (speech RMS ~0.1 of
    # full scale) next to a default-initialised projection's ~1 outputs, so
    # a fresh model's audio is noise louder than the signal.
    self._w_init = hk.initializers.Constant(0.0) if zero_init else None

  def __call__(self, inputs, *, is_training, pos=None, modality_sizes=None):
    out = hk.Linear(self._samples_per_patch, w_init=self._w_init)(inputs)
    return out.reshape(inputs.shape[0], -1)


class ProjectionPostprocessor(hk.Module):
  """[B, N, C] -> [B, N, num_outputs]."""

  def __init__(self, num_outputs: int, name: str = 'projection_postprocessor'):
    super().__init__(name=name)
    self._num_outputs = num_outputs

  def __call__(self, inputs, *, is_training, pos=None, modality_sizes=None):
    return hk.Linear(self._num_outputs)(inputs)


class ClassificationPostprocessor(hk.Module):
  """[B, 1, C] -> [B, num_classes] logits."""

  def __init__(self, num_classes: int, name: str = 'classification_postprocessor'):
    super().__init__(name=name)
    self._num_classes = num_classes

  def __call__(self, inputs, *, is_training, pos=None, modality_sizes=None):
    return hk.Linear(self._num_classes)(inputs)[:, 0, :]


class FlowPostprocessor(hk.Module):
  """[B, H*W, 2] -> [B, H, W, 2] flow, scaled."""

  def __init__(self, img_size: Sequence[int], flow_scale_factor: float = 1.0, name: str = 'flow_postprocessor'):
    super().__init__(name=name)
    self._img_size = tuple(img_size)
    self._flow_scale_factor = flow_scale_factor

  def __call__(self, inputs, *, is_training, pos=None, modality_sizes=None):
    return (inputs * self._flow_scale_factor).reshape((inputs.shape[0],) + self._img_size + (2,))


class MultimodalPostprocessor(hk.Module):
  """Splits decoder outputs by modality and post-processes each."""

  def __init__(
    self, modalities: Mapping[str, hk.Module], input_is_dict: bool = False, name: str = 'multimodal_postprocessor'
  ):
    super().__init__(name=name)
    self._modalities = dict(modalities)
    self._input_is_dict = input_is_dict

  def __call__(self, inputs, *, is_training, pos=None, modality_sizes=None):
    if not self._input_is_dict:
      if modality_sizes is None:
        raise ValueError(f'{self.module_name}: modality_sizes are needed to split the outputs')
      inputs = restructure(modality_sizes, inputs)
    return {
      m: post(inputs[m], is_training=is_training, pos=pos, modality_sizes=None) for m, post in self._modalities.items()
    }


class EmbeddingDecoder(hk.Module):
  """Logits from output embeddings with a tied embedding matrix: x E^T + b."""

  def __init__(self, embedding_matrix: jax.Array, name: str = 'embedding_decoder'):
    super().__init__(name=name)
    self._embedding_matrix = embedding_matrix  # [V, C]
    self._vocab_size, self._d_model = embedding_matrix.shape

  def __call__(self, embeddings: jax.Array) -> jax.Array:
    """[B, T, C] -> [B, T, V]."""
    batch, seq, _ = embeddings.shape
    out = jnp.matmul(embeddings.reshape(-1, self._d_model), self._embedding_matrix.T)
    bias = hk.get_parameter('bias', [self._vocab_size], init=jnp.zeros)
    return (out + bias).reshape(batch, seq, self._vocab_size)
