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
  the Perceiver uses (`np.random.RandomState(seed).permutation(H*W)`), then
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

Model contract: as `perceiver.models.build_model` (docs/architecture.md):
`build_baseline(config.model)` returns `hk.TransformedWithState` taking a
dict of batch-first inputs (`image` [B, H, W, C] or `points` [B, N, 3],
optional `pos` [B, H*W, 2]) and returning float32 logits [B, num_classes].
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import haiku as hk
import jax
import jax.numpy as jnp
import jmp
import numpy as np

from perceiver import attention as attn_lib
from perceiver import io_processors as io
from perceiver import position_encoding as pe

BASELINES = frozenset({'resnet', 'vit', 'transformer'})

INPUT_DEFAULTS: Dict[str, Any] = dict(
    modality='image',  # 'image' | 'points'
    position_encoding='fourier',  # 'fourier' | 'trainable' | 'none'
    num_bands=64,
    max_resolution=(),  # () = the grid the features are computed on.
    concat_pos=True,
    sine_only=False,
    trainable_pos_channels=128,
    trainable_pos_init_scale=0.02,
    permute_seed=-1,
    resize=(),  # (H, W): resize images first (the Transformer's 64x64).
    grid_size=0,  # points: G, the side of the G x G grid (0: floor(sqrt(N))).
)
RESNET_DEFAULTS: Dict[str, Any] = dict(  # ResNet-50 (He et al. 2016), v1.
    blocks_per_group=(3, 4, 6, 3),
    channels_per_group=(256, 512, 1024, 2048),
    bottleneck=True,
    resnet_v2=False,
    strides=(1, 2, 2, 2),
    initial_conv_channels=64,
    initial_conv_kernel=7,  # The first layer's 7x7: Table 2's input RF of 49 px.
    initial_conv_stride=2,
)
VIT_DEFAULTS: Dict[str, Any] = dict(  # ViT-B (Dosovitskiy et al. 2021).
    patch_size=16,
    hidden_size=768,
    num_layers=12,
    num_heads=12,
    widening_factor=4,
    dropout_prob=0.0,
    pool='cls',  # 'cls' token or 'mean' over tokens.
)
_SECTIONS = {'input': INPUT_DEFAULTS, 'resnet': RESNET_DEFAULTS, 'vit': VIT_DEFAULTS}
_MODEL_KEYS = frozenset({'name', 'compute_dtype', 'decoder', *_SECTIONS})


def _as_dict(cfg) -> Dict[str, Any]:
  if cfg is None:
    return {}
  return cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)


def _section(cfg: Mapping[str, Any], name: str) -> Dict[str, Any]:
  given = _as_dict(cfg.get(name))
  unknown = sorted(set(given) - set(_SECTIONS[name]))
  if unknown:
    raise ValueError(f'model.{name}: unknown key(s) {unknown}; allowed: {sorted(_SECTIONS[name])}')
  return {**_SECTIONS[name], **given}


def fixed_permutation(num_inputs: int, seed: int) -> np.ndarray:
  """The Perceiver's input permutation (perceiver/io_processors.py), int [M]."""
  return np.random.RandomState(seed).permutation(num_inputs)


class GridInputs(hk.Module):
  """Inputs -> an image-like grid [B, H, W, C + P] with position features.

  Images: optional resize, position features on the (resized) pixel grid
  (or from `pos` [B, H*W, 2]), optional fixed permutation of the H*W pixels.
  Points [B, N, 3]: 3-D Fourier features of the coordinates themselves,
  laid out on a G x G grid (first G*G points; zero rows pad a short cloud).
  """

  def __init__(self, cfg: Mapping[str, Any], name: str = 'grid_inputs'):
    super().__init__(name=name)
    self._cfg = dict(cfg)

  def _fourier(self, pos: jax.Array, grid: tuple[int, ...]) -> jax.Array:
    c = self._cfg
    max_res = tuple(c['max_resolution']) or grid
    return pe.generate_fourier_features(pos, num_bands=int(c['num_bands']), max_resolution=max_res,
                                        concat_pos=bool(c['concat_pos']),
                                        sine_only=bool(c['sine_only']))

  def _points(self, points: jax.Array) -> jax.Array:
    if points.ndim != 3 or points.shape[-1] != 3:
      raise ValueError(f'points must be [B, N, 3], got {points.shape}')
    if self._cfg['position_encoding'] != 'fourier':
      raise ValueError("points need model.input.position_encoding='fourier' (the xyz are the positions)")
    b, n, _ = points.shape
    g = int(self._cfg['grid_size']) or int(np.sqrt(n))
    # max_resolution default: the Perceiver's point-cloud default (models.py).
    feats = self._fourier(points, (1120,) * 3)  # [B, N, 3 + 6K], includes xyz.
    if n < g * g:
      feats = jnp.pad(feats, ((0, 0), (0, g * g - n), (0, 0)))
    feats = feats[:, :g * g]  # [B, G*G, C]
    if int(self._cfg['permute_seed']) >= 0:
      feats = feats[:, fixed_permutation(g * g, int(self._cfg['permute_seed']))]
    return feats.reshape(b, g, g, feats.shape[-1])  # [B, G, G, C]

  def _image(self, image: jax.Array, pos) -> jax.Array:
    if image.ndim != 4:
      raise ValueError(f'image must be [B, H, W, C], got {image.shape}')
    c = self._cfg
    if tuple(c['resize']):
      height, width = (int(v) for v in c['resize'])
      image = jax.image.resize(image, (image.shape[0], height, width, image.shape[-1]), 'linear')
      pos = None  # Positions given for the original grid no longer apply.
    b, h, w, ch = image.shape
    x = image.reshape(b, h * w, ch)  # [B, M, C], row-major like the Perceiver.
    kind = c['position_encoding']
    if kind == 'fourier':
      if pos is None:
        pos = jnp.broadcast_to(pe.build_linear_positions((h, w)).reshape(1, h * w, 2), (b, h * w, 2))
      x = jnp.concatenate([x, self._fourier(pos, (h, w)).astype(x.dtype)], axis=-1)
    elif kind == 'trainable':
      enc = pe.TrainablePositionEncoding(index_dim=h * w, num_channels=int(c['trainable_pos_channels']),
                                         init_scale=float(c['trainable_pos_init_scale']))(batch_size=b)
      x = jnp.concatenate([x, enc.astype(x.dtype)], axis=-1)
    elif kind != 'none':
      raise ValueError(f"model.input.position_encoding must be 'fourier', 'trainable' or 'none', got {kind!r}")
    if int(c['permute_seed']) >= 0:
      # After the position features: each pixel keeps its true position.
      x = x[:, fixed_permutation(h * w, int(c['permute_seed']))]
    return x.reshape(b, h, w, x.shape[-1])  # [B, H, W, C + P]

  def __call__(self, inputs: Mapping[str, jax.Array]) -> jax.Array:
    modality = self._cfg['modality']
    if modality not in ('image', 'points'):
      raise ValueError(f"baselines take model.input.modality 'image' or 'points', got {modality!r}")
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

  def __init__(self, num_classes: int, *, patch_size: int, hidden_size: int, num_layers: int,
               num_heads: int, widening_factor: int = 4, dropout_prob: float = 0.0,
               pool: str = 'cls', name: str = 'vit'):
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
          widening_factor=self._widening, num_heads=self._heads, dropout_prob=self._dropout,
          name=f'layer_{i}')(tokens, is_training=is_training)
    tokens = attn_lib.layer_norm(name='final_norm')(tokens)
    rep = tokens[:, 0] if self._pool == 'cls' else tokens.mean(axis=1)  # [B, D]
    return hk.Linear(self._num_classes, w_init=jnp.zeros, name='head')(rep)


def _resnet(num_classes: int, r: Mapping[str, Any]) -> hk.nets.ResNet:
  return hk.nets.ResNet(
      blocks_per_group=tuple(r['blocks_per_group']), num_classes=num_classes,
      resnet_v2=bool(r['resnet_v2']), bottleneck=bool(r['bottleneck']),
      channels_per_group=tuple(r['channels_per_group']), strides=tuple(r['strides']),
      initial_conv_config=dict(output_channels=int(r['initial_conv_channels']),
                               kernel_shape=int(r['initial_conv_kernel']),
                               stride=int(r['initial_conv_stride'])),
      name='resnet')


def is_baseline(model_config) -> bool:
  return _as_dict(model_config).get('name') in BASELINES


def build_baseline(model_config) -> hk.TransformedWithState:
  """Builds the baseline `config.model` describes (`model.name` in BASELINES)."""
  cfg = _as_dict(model_config)
  unknown = sorted(set(cfg) - _MODEL_KEYS)
  if unknown:
    raise ValueError(f'model config: unknown key(s) {unknown} for a baseline; allowed: {sorted(_MODEL_KEYS)}')
  name = cfg.get('name')
  if name not in BASELINES:
    raise ValueError(f'model.name={name!r} is not a baseline; baselines: {sorted(BASELINES)}')
  num_classes = int(_as_dict(cfg.get('decoder')).get('num_classes', 0))
  if num_classes < 1:
    raise ValueError('model.decoder.num_classes is required')
  inp = _section(cfg, 'input')
  resnet_cfg, vit_cfg = _section(cfg, 'resnet'), _section(cfg, 'vit')
  if name == 'transformer' and int(vit_cfg['patch_size']) != 1:
    raise ValueError('model.name=transformer attends over single pixels: model.vit.patch_size must be 1')
  compute_dtype = cfg.get('compute_dtype', 'float32')
  if compute_dtype not in ('float32', 'bfloat16'):
    raise ValueError(f"model.compute_dtype must be 'float32' or 'bfloat16', got {compute_dtype!r}")

  def forward(inputs: Mapping[str, jax.Array], *, is_training: bool) -> jax.Array:
    if not isinstance(inputs, Mapping):
      raise TypeError(f'model inputs must be a dict keyed by modality, got {type(inputs).__name__}')
    grid = GridInputs(inp)(inputs)  # [B, H, W, C]
    if name == 'resnet':
      logits = _resnet(num_classes, resnet_cfg)(grid, is_training=is_training)
    else:
      logits = ViT(num_classes, **vit_cfg)(grid, is_training=is_training)
    return logits.astype(jnp.float32)  # [B, K]

  net = hk.transform_with_state(forward)
  if compute_dtype == 'float32':
    return net
  if name == 'resnet':
    # BatchNorm statistics would be kept (and returned as state) in bf16.
    raise ValueError('model.compute_dtype=bfloat16 is supported for vit/transformer only')
  # Mixed precision as in perceiver.models: float32 master weights, bf16 compute.
  policy = jmp.get_policy(f'params=float32,compute={compute_dtype},output=float32')

  def apply(params, state, rng, inputs, *, is_training):
    cast = {k: policy.cast_to_compute(v) for k, v in inputs.items()}
    out, state = net.apply(policy.cast_to_compute(params), state, rng, cast, is_training=is_training)
    return policy.cast_to_output(out), state

  return hk.TransformedWithState(init=net.init, apply=apply)
