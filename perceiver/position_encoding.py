"""Position encodings: Fourier features, trainable and projected encodings.

Fourier features follow the reference (and the paper): positions on
`linspace(-1, 1, n)` per dimension (ij meshgrid, row-major flatten),
frequencies `linspace(1, max_resolution_d / 2, num_bands)`, channels ordered
`[pos (d), sin(pi f x) (d*K, dimension-major), cos(pi f x) (d*K)]`.
Every encoding accepts explicit positions `pos` [B, M, d] so crop-relative
coordinates or point-cloud coordinates can be used instead of the grid.
"""

from __future__ import annotations

from typing import Optional, Sequence

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np


def build_linear_positions(index_dims: Sequence[int], output_range=(-1.0, 1.0)) -> jax.Array:
  """Grid of coordinates: [*index_dims, len(index_dims)] in `output_range`."""
  ranges = [jnp.linspace(output_range[0], output_range[1], num=n, endpoint=True, dtype=jnp.float32) for n in index_dims]
  return jnp.stack(jnp.meshgrid(*ranges, indexing='ij'), axis=-1)


def generate_fourier_features(
  pos: jax.Array, *, num_bands: int, max_resolution: Sequence[int], concat_pos: bool = True, sine_only: bool = False
) -> jax.Array:
  """pos [B, M, d] in [-1, 1] -> Fourier features [B, M, d*(2K+1)] (or d*(K+1) sine-only)."""
  if pos.ndim != 3:
    raise ValueError(f'positions must be [B, M, d], got shape {pos.shape}')
  if pos.shape[-1] != len(max_resolution):
    raise ValueError(
      f'positions have {pos.shape[-1]} dims but max_resolution has {len(max_resolution)}: {tuple(max_resolution)}'
    )
  freqs = jnp.stack(
    [jnp.linspace(1.0, res / 2, num=num_bands, endpoint=True) for res in max_resolution], axis=0
  )  # [d, K]
  scaled = pos[:, :, :, None] * freqs[None, None]  # [B, M, d, K]
  scaled = scaled.reshape(pos.shape[0], pos.shape[1], -1)  # [B, M, d*K], dimension-major
  if sine_only:
    feats = jnp.sin(jnp.pi * scaled)
  else:
    feats = jnp.concatenate([jnp.sin(jnp.pi * scaled), jnp.cos(jnp.pi * scaled)], axis=-1)
  if concat_pos:
    feats = jnp.concatenate([pos, feats], axis=-1)
  return feats


def fourier_num_channels(num_dims: int, num_bands: int, *, concat_pos: bool = True, sine_only: bool = False) -> int:
  return num_dims * num_bands * (1 if sine_only else 2) + (num_dims if concat_pos else 0)


class TrainablePositionEncoding(hk.Module):
  """A learned [index_dim, C] array, broadcast over the batch (also the latent array)."""

  def __init__(self, index_dim: int, num_channels: int = 128, init_scale: float = 0.02, name: Optional[str] = None):
    super().__init__(name=name)
    self._index_dim = int(index_dim)
    self._num_channels = int(num_channels)
    self._init_scale = init_scale

  @property
  def num_channels(self) -> int:
    return self._num_channels

  def __call__(self, batch_size: Optional[int], pos: Optional[jax.Array] = None) -> jax.Array:
    del pos  # A learned encoding ignores coordinates (as in the reference).
    pos_embs = hk.get_parameter(
      'pos_embs', [self._index_dim, self._num_channels], init=hk.initializers.TruncatedNormal(stddev=self._init_scale)
    )
    if batch_size is not None:
      pos_embs = jnp.broadcast_to(pos_embs[None], (batch_size,) + pos_embs.shape)
    return pos_embs  # [B, M, C]


def _positions(pos: Optional[jax.Array], index_dims: Sequence[int], batch_size: int) -> jax.Array:
  if pos is None:
    grid = build_linear_positions(index_dims)
    return jnp.broadcast_to(grid[None], (batch_size,) + grid.shape).reshape(
      batch_size, int(np.prod(index_dims)), len(index_dims)
    )
  if pos.ndim == 2:  # [M, d] shared by the batch
    pos = jnp.broadcast_to(pos[None], (batch_size,) + pos.shape)
  if pos.ndim != 3 or pos.shape[-1] != len(index_dims):
    raise ValueError(f'positions must be [B, M, {len(index_dims)}], got {pos.shape}')
  return pos


class FourierPositionEncoding(hk.Module):
  """Fourier features of grid positions (or of the positions passed in)."""

  def __init__(
    self,
    index_dims: Sequence[int],
    num_bands: int,
    concat_pos: bool = True,
    max_resolution: Optional[Sequence[int]] = None,
    sine_only: bool = False,
    name: Optional[str] = None,
  ):
    super().__init__(name=name)
    self._index_dims = tuple(int(d) for d in index_dims)
    self._num_bands = num_bands
    self._concat_pos = concat_pos
    self._sine_only = sine_only
    self._max_resolution = tuple(max_resolution) if max_resolution else self._index_dims

  @property
  def num_channels(self) -> int:
    return fourier_num_channels(
      len(self._max_resolution), self._num_bands, concat_pos=self._concat_pos, sine_only=self._sine_only
    )

  def __call__(self, batch_size: int, pos: Optional[jax.Array] = None) -> jax.Array:
    # Grid positions are the same for every example: compute one copy of the
    # features (sin/cos are a visible share of a small model's step) and
    # broadcast it; positions passed in are per example.
    rows = batch_size if pos is not None else 1
    feats = generate_fourier_features(
      _positions(pos, self._index_dims, rows),
      num_bands=self._num_bands,
      max_resolution=self._max_resolution,
      concat_pos=self._concat_pos,
      sine_only=self._sine_only,
    )
    return jnp.broadcast_to(feats, (batch_size,) + feats.shape[1:])


class PositionEncodingProjector(hk.Module):
  """Linear projection of another encoding (module `linear` inside)."""

  def __init__(self, output_size: int, base_position_encoding: hk.Module, name: Optional[str] = None):
    super().__init__(name=name)
    self._output_size = output_size
    self._base = base_position_encoding

  @property
  def num_channels(self) -> int:
    return self._output_size

  def __call__(self, batch_size: int, pos: Optional[jax.Array] = None) -> jax.Array:
    return hk.Linear(self._output_size)(self._base(batch_size, pos))


def build_position_encoding(
  position_encoding_type: str,
  index_dims: Sequence[int],
  *,
  project_pos_dim: int = -1,
  trainable_position_encoding_kwargs: Optional[dict] = None,
  fourier_position_encoding_kwargs: Optional[dict] = None,
  name: Optional[str] = None,
) -> hk.Module:
  """Builds the encoding the reference's kwargs describe (same module names)."""
  if position_encoding_type == 'trainable':
    if not trainable_position_encoding_kwargs:
      raise ValueError('trainable position encoding needs trainable_position_encoding_kwargs (at least num_channels)')
    enc = TrainablePositionEncoding(index_dim=int(np.prod(index_dims)), **trainable_position_encoding_kwargs)
  elif position_encoding_type == 'fourier':
    if not fourier_position_encoding_kwargs:
      raise ValueError('fourier position encoding needs fourier_position_encoding_kwargs (at least num_bands)')
    enc = FourierPositionEncoding(index_dims=index_dims, **fourier_position_encoding_kwargs)
  else:
    raise ValueError(f"unknown position_encoding_type {position_encoding_type!r}; expected 'trainable' or 'fourier'")
  if project_pos_dim > 0:
    enc = PositionEncodingProjector(output_size=project_pos_dim, base_position_encoding=enc)
  return enc
