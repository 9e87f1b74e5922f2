"""The baselines of the Perceiver tables: ResNet, ViT and a plain Transformer.

They exist to show what the Perceiver's tables show (Tables 1, 2 and 4):
models with a 2-D inductive bias lose accuracy when the pixels are
permuted, the Perceiver does not. To make that comparison fair they get the
same inputs as the Perceiver:

- position features: 2-D Fourier features (`fourier`), a learned per-pixel
  encoding (`trainable`) or none, concatenated to the pixel channels exactly
  like the Perceiver's (`perceiver.position_encoding`);
- permutation (`input.permute_seed` >= 0): the pixels, with their position
  features already attached, are reordered by the same fixed permutation
  the Perceiver uses (`io_processors.fixed_permutation`), then
  put back on the H x W grid the 2-D model expects;
- point clouds (ModelNet40): each point's xyz with its 3-D Fourier features
  is laid out on a G x G grid in the order the pipeline gives them (the
  paper arranges the points on a 2-D grid; the order carries no geometry,
  which is the point of the comparison).

PAPERS.md does not say how the Fourier features enter the 2-D baselines. We
concatenate them per pixel, before the first conv / patch embedding: the
reading under which the permuted variant keeps every pixel's true position
feature. It widens ViT-B/16's patch embedding to 16*16*261 inputs (51M of
its 137M parameters) and ResNet-50's first conv to 261 input channels.

Models: `resnet` (Haiku's `hk.nets.ResNet`, so ResNet-50 is the library's),
`vit` (patches -> linear -> pre-LayerNorm Transformer, the Perceiver's own
`SelfAttention` block) and `transformer` (the same Transformer on single
pixels of an image resized to `input.resize`, e.g. 64x64 = 4,096 tokens).

Model contract: as `perceiver.models.build_model` (docs/architecture.md);
the schema (fields, defaults, allowed values) is perceiver/config.py's
`BaselineConfig`. `build_baseline(config.model)` returns `hk.TransformedWithState` taking a
dict of batch-first inputs (`image` [B, H, W, C] or `points` [B, N, 3],
optional `pos` [B, H*W, 2]) and returning float32 logits [B, num_classes].
"""

from __future__ import annotations

from typing import Mapping

import haiku as hk
import jax
import jax.numpy as jnp

from perceiver import attention as attn_lib
from perceiver import config as config_lib
from perceiver import io_processors as io
from perceiver import position_encoding as pe

BASELINES = frozenset({'resnet', 'vit', 'transformer'})


class GridInputs(hk.Module):
  """Inputs -> an image-like grid [B, H, W, C + P] with position features.

  Images: optional resize, position features on the (resized) pixel grid
  (or from `pos` [B, H*W, 2]), optional fixed permutation of the H*W pixels.
  Points [B, N, 3]: 3-D Fourier features of the coordinates themselves,
  laid out on a G x G grid (first G*G points; zero rows pad a short cloud).
  """

  def __init__(self, cfg: config_lib.BaselineInputConfig, name: str = 'grid_inputs'):
    super().__init__(name=name)
    self._cfg = cfg

  def _fourier(self, pos: jax.Array, grid: tuple[int, ...]) -> jax.Array:
    c = self._cfg
    return pe.generate_fourier_features(
      pos,
      num_bands=c.num_bands,
      max_resolution=c.max_resolution or grid,
      concat_pos=c.concat_pos,
      sine_only=c.sine_only,
    )

  def _points(self, points: jax.Array) -> jax.Array:
    if points.ndim != 3 or points.shape[-1] != 3:
      raise ValueError(f'points must be [B, N, 3], got {points.shape}')
    b, n, _ = points.shape
    g = self._cfg.grid_size or int(n**0.5)
    # max_resolution default: the Perceiver's point-cloud default (models.py).
    feats = self._fourier(points, (1120,) * 3)  # [B, N, 3 + 6K], includes xyz.
    if n < g * g:
      feats = jnp.pad(feats, ((0, 0), (0, g * g - n), (0, 0)))
    feats = feats[:, : g * g]  # [B, G*G, C]
    if self._cfg.permute_seed >= 0:
      feats = feats[:, io.fixed_permutation(g * g, self._cfg.permute_seed)]
    return feats.reshape(b, g, g, feats.shape[-1])  # [B, G, G, C]

  def _image(self, image: jax.Array, pos) -> jax.Array:
    if image.ndim != 4:
      raise ValueError(f'image must be [B, H, W, C], got {image.shape}')
    c = self._cfg
    io.check_channels_last(image, c.input_channels, what="input 'image'")
    if c.resize:
      height, width = c.resize
      image = jax.image.resize(image, (image.shape[0], height, width, image.shape[-1]), 'linear')
      pos = None  # Positions given for the original grid no longer apply.
    b, h, w, ch = image.shape
    x = image.reshape(b, h * w, ch)  # [B, M, C], row-major like the Perceiver.
    kind = c.position_encoding
    if kind == 'fourier':
      if pos is None:
        pos = jnp.broadcast_to(pe.build_linear_positions((h, w)).reshape(1, h * w, 2), (b, h * w, 2))
      x = jnp.concatenate([x, self._fourier(pos, (h, w)).astype(x.dtype)], axis=-1)
    elif kind == 'trainable':
      enc = pe.TrainablePositionEncoding(
        index_dim=h * w, num_channels=c.trainable_pos_channels, init_scale=c.trainable_pos_init_scale
      )(batch_size=b)
      x = jnp.concatenate([x, enc.astype(x.dtype)], axis=-1)
    if c.permute_seed >= 0:
      # After the position features: each pixel keeps its true position.
      x = x[:, io.fixed_permutation(h * w, c.permute_seed)]
    return x.reshape(b, h, w, x.shape[-1])  # [B, H, W, C + P]

  def __call__(self, inputs: Mapping[str, jax.Array]) -> jax.Array:
    modality = self._cfg.modality
    if modality not in inputs:
      raise KeyError(f'model.input.modality={modality!r} but the inputs hold {sorted(inputs)}')
    if modality == 'points':
      return self._points(inputs['points'])
    return self._image(inputs['image'], inputs.get('pos'))


class ViT(hk.Module):
  """Patches -> linear -> pre-LayerNorm Transformer -> LayerNorm -> linear.

  No learned position embedding: position information arrives with the
  pixels (Fourier features concatenated before patching), as for the
  Perceiver. `patch_size=1` on a resized image is the plain Transformer.
  """

  def __init__(
    self,
    num_classes: int,
    *,
    patch_size: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    widening_factor: int = 4,
    dropout_prob: float = 0.0,
    pool: str = 'cls',
    name: str = 'vit',
  ):
    super().__init__(name=name)
    if pool not in ('cls', 'mean'):
      raise ValueError(f"model.vit.pool must be 'cls' or 'mean', got {pool!r}")
    if hidden_size % num_heads:
      raise ValueError(f'model.vit.hidden_size={hidden_size} is not divisible by num_heads={num_heads}')
    self._num_classes = num_classes
    self._patch = patch_size
    self._hidden = hidden_size
    self._layers = num_layers
    self._heads = num_heads
    self._widening = widening_factor
    self._dropout = dropout_prob
    self._pool = pool

  def __call__(self, grid: jax.Array, *, is_training: bool) -> jax.Array:
    """grid [B, H, W, C] -> logits [B, K]."""
    patches = io.space_to_depth(grid, spatial_block_size=self._patch)  # [B, H/p, W/p, p*p*C]
    b = patches.shape[0]
    tokens = hk.Linear(self._hidden, name='embedding')(patches.reshape(b, -1, patches.shape[-1]))
    if self._pool == 'cls':
      cls = hk.get_parameter('cls', [1, 1, self._hidden], tokens.dtype, init=jnp.zeros)
      tokens = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self._hidden)), tokens], axis=1)
    for i in range(self._layers):  # [B, T, D]
      tokens = attn_lib.SelfAttention(
        widening_factor=self._widening, num_heads=self._heads, dropout_prob=self._dropout, name=f'layer_{i}'
      )(tokens, is_training=is_training)
    tokens = attn_lib.layer_norm(name='final_norm')(tokens)
    rep = tokens[:, 0] if self._pool == 'cls' else tokens.mean(axis=1)  # [B, D]
    return hk.Linear(self._num_classes, w_init=jnp.zeros, name='head')(rep)


def _resnet(num_classes: int, r: config_lib.ResNetConfig) -> hk.nets.ResNet:
  return hk.nets.ResNet(
    blocks_per_group=r.blocks_per_group,
    num_classes=num_classes,
    resnet_v2=r.resnet_v2,
    bottleneck=r.bottleneck,
    channels_per_group=r.channels_per_group,
    strides=r.strides,
    initial_conv_config=dict(
      output_channels=r.initial_conv_channels, kernel_shape=r.initial_conv_kernel, stride=r.initial_conv_stride
    ),
    name='resnet',
  )


def baseline_net(cfg: config_lib.BaselineConfig) -> hk.TransformedWithState:
  """The registered builder of `resnet` / `vit` / `transformer` (float32)."""
  num_classes = cfg.decoder.num_classes

  def forward(inputs: Mapping[str, jax.Array], *, is_training: bool) -> jax.Array:
    if not isinstance(inputs, Mapping):
      raise TypeError(f'model inputs must be a dict keyed by modality, got {type(inputs).__name__}')
    grid = GridInputs(cfg.input)(inputs)  # [B, H, W, C]
    if cfg.name == 'resnet':
      logits = _resnet(num_classes, cfg.resnet)(grid, is_training=is_training)
    else:
      logits = ViT(num_classes, **config_lib.to_dict(cfg.vit))(grid, is_training=is_training)
    return logits.astype(jnp.float32)  # [B, K]

  return hk.transform_with_state(forward)


def build_baseline(model_config) -> hk.TransformedWithState:
  """Builds the baseline `config.model` describes (`model.name` in BASELINES);
  `perceiver.models.build_model` builds these too."""
  cfg = config_lib.parse_model_config(model_config)
  if cfg.name not in BASELINES:
    raise config_lib.ModelConfigError(f'model.name={cfg.name!r} is not a baseline; baselines: {sorted(BASELINES)}')
  from perceiver import models  # pylint: disable=g-import-not-at-top  # models builds every kind.

  return models.build_model(cfg)
