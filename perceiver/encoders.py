"""The Perceiver encoder: cross-attends from a latent array into the inputs,
interleaved with a latent Transformer, with the paper's weight sharing.

One module covers both papers:
- Perceiver IO (the reference): one cross-attend, then `num_blocks` repeats of
  a latent Transformer of `num_self_attends_per_block` layers whose weights are
  shared across repeats. Parameter names equal the reference's.
- Perceiver (ICML 2021): `num_cross_attends` cross-attends placed at the start
  or interleaved with the blocks; the first cross-attend has its own weights,
  the later ones share one set (`share_cross_attends`) or not; the latent
  Transformers are shared across blocks (`share_latent_transformers`) or not.

Blocks that run the same modules back to back are executed with
`hk.fori_loop`, so the shared-weight structure is traced and compiled once
rather than unrolled (the ImageNet model would otherwise be 48 layer copies).
"""

from __future__ import annotations

import itertools
from typing import Callable, List, Optional, Tuple

import haiku as hk
import jax
import jax.numpy as jnp

from perceiver import attention as attn_lib
from perceiver.position_encoding import TrainablePositionEncoding


def cross_attend_blocks(num_cross_attends: int, num_blocks: int, placement: str) -> List[int]:
  """Index of the latent block that each cross-attend precedes."""
  if num_cross_attends < 1:
    raise ValueError(f'num_cross_attends must be >= 1, got {num_cross_attends}')
  if placement == 'start':
    return [0] * num_cross_attends
  if placement == 'interleaved':
    if num_cross_attends > max(num_blocks, 1):
      raise ValueError(
        f'cannot interleave {num_cross_attends} cross-attends with {num_blocks} '
        'latent blocks; use placement="start" or more blocks'
      )
    return [(i * num_blocks) // num_cross_attends for i in range(num_cross_attends)]
  raise ValueError(f"cross_attend_placement must be 'interleaved' or 'start', got {placement!r}")


class PerceiverEncoder(hk.Module):
  """Latents [B, N, D] attend to inputs [B, M, C]; returns latents [B, N, D]."""

  def __init__(
    self,
    *,
    num_self_attends_per_block: int = 6,
    num_blocks: int = 8,
    z_index_dim: int = 512,
    num_z_channels: int = 1024,
    qk_channels: Optional[int] = None,
    v_channels: Optional[int] = None,
    num_cross_attend_heads: int = 1,
    num_self_attend_heads: int = 8,
    cross_attend_widening_factor: int = 1,
    self_attend_widening_factor: int = 1,
    dropout_prob: float = 0.0,
    z_pos_enc_init_scale: float = 0.02,
    cross_attention_shape_for_attn: str = 'kv',
    use_query_residual: bool = True,
    num_cross_attends: int = 1,
    cross_attend_placement: str = 'interleaved',
    share_cross_attends: bool = True,
    share_latent_transformers: bool = True,
    layer_norm_eps: float = attn_lib.DEFAULT_LAYER_NORM_EPS,
    cross_attend_chunk_size: int = 0,
    self_attend_chunk_size: int = 0,
    remat: bool = False,
    use_loops: bool = True,
    gelu_approximate: bool = True,
    cross_attend_qk_channels: Optional[int] = None,
    cross_attend_v_channels: Optional[int] = None,
    self_attend_qk_channels: Optional[int] = None,
    self_attend_v_channels: Optional[int] = None,
    dropout_attn_prob: float = 0.0,
    project_positions_once: bool = True,
    name: str = 'perceiver_encoder',
  ):
    # `qk_channels` / `v_channels` serve both attentions (the reference's
    # knobs); the `cross_attend_*` / `self_attend_*` ones override them for
    # one kind (e.g. 64-channel cross-attend heads under 512-wide latents).
    cross_qk = cross_attend_qk_channels if cross_attend_qk_channels is not None else qk_channels
    cross_v = cross_attend_v_channels if cross_attend_v_channels is not None else v_channels
    self_qk = self_attend_qk_channels if self_attend_qk_channels is not None else qk_channels
    self_v = self_attend_v_channels if self_attend_v_channels is not None else v_channels
    super().__init__(name=name)
    for what, heads in (
      ('num_cross_attend_heads', num_cross_attend_heads),
      ('num_self_attend_heads', num_self_attend_heads),
    ):
      if heads < 1:
        raise ValueError(f'{what} must be >= 1, got {heads}')
    if num_z_channels % num_self_attend_heads and self_qk is None:
      raise ValueError(
        f'num_z_channels={num_z_channels} is not divisible by num_self_attend_heads={num_self_attend_heads}'
      )
    self._input_is_1d = True
    # Read by models.Perceiver: ask the preprocessor for attn_lib.InputsWithPos.
    self.project_positions_once = project_positions_once
    self._num_blocks = num_blocks
    self._num_z_channels = num_z_channels
    self._remat = remat
    self._use_loops = use_loops
    self._schedule = cross_attend_blocks(num_cross_attends, num_blocks, cross_attend_placement)
    self.z_pos_enc = TrainablePositionEncoding(
      index_dim=z_index_dim, num_channels=num_z_channels, init_scale=z_pos_enc_init_scale
    )

    def make_cross(name):
      return attn_lib.CrossAttention(
        dropout_prob=dropout_prob,
        num_heads=num_cross_attend_heads,
        widening_factor=cross_attend_widening_factor,
        shape_for_attn=cross_attention_shape_for_attn,
        qk_channels=cross_qk,
        v_channels=cross_v,
        use_query_residual=use_query_residual,
        dropout_attn_prob=dropout_attn_prob,
        layer_norm_eps=layer_norm_eps,
        chunk_size=cross_attend_chunk_size,
        gelu_approximate=gelu_approximate,
        name=name,
      )

    # Cross-attend i -> module. The first is always its own; later ones share
    # `cross_attention_1` or get `cross_attention_<i>` each.
    self.cross_attends = [make_cross('cross_attention')]
    if num_cross_attends > 1:
      if share_cross_attends:
        shared = make_cross('cross_attention_1')
        self.cross_attends += [shared] * (num_cross_attends - 1)
      else:
        self.cross_attends += [make_cross(f'cross_attention_{i}') for i in range(1, num_cross_attends)]

    def make_self(index):
      return attn_lib.SelfAttention(
        num_heads=num_self_attend_heads,
        dropout_prob=dropout_prob,
        qk_channels=self_qk,
        v_channels=self_v,
        dropout_attn_prob=dropout_attn_prob,
        widening_factor=self_attend_widening_factor,
        layer_norm_eps=layer_norm_eps,
        chunk_size=self_attend_chunk_size,
        gelu_approximate=gelu_approximate,
        name='self_attention' if index == 0 else f'self_attention_{index}',
      )

    n_sets = 1 if share_latent_transformers else max(num_blocks, 1)
    # latent_transformers[b]: the self-attention layers of block b.
    sets = [
      [make_self(s * num_self_attends_per_block + j) for j in range(num_self_attends_per_block)] for s in range(n_sets)
    ]
    self.latent_transformers = [sets[0 if share_latent_transformers else b] for b in range(num_blocks)]

  def latents(self, inputs: jax.Array) -> jax.Array:
    """The learned initial latent array, broadcast to the batch: [B, N, D]."""
    return self.z_pos_enc(batch_size=inputs.shape[0])

  def _block_program(self, b: int) -> Tuple[tuple, tuple]:
    crosses = tuple(id(self.cross_attends[i]) for i, blk in enumerate(self._schedule) if blk == b)
    layers = tuple(id(m) for m in self.latent_transformers[b]) if b < self._num_blocks else ()
    return crosses, layers

  def __call__(
    self, inputs: jax.Array, z: jax.Array, *, is_training: bool, input_mask: Optional[jax.Array] = None
  ) -> jax.Array:
    """inputs [B, M, C] (or attn_lib.InputsWithPos), z [B, N, D] -> [B, N, D]."""
    if inputs.ndim != 3:
      raise ValueError(f'{self.module_name}: inputs must be [B, M, C], got shape {inputs.shape}')
    if z.ndim != 3 or z.shape[0] != inputs.shape[0]:
      raise ValueError(f'{self.module_name}: latents must be [B, N, D] with B={inputs.shape[0]}, got {z.shape}')
    if not jnp.issubdtype(inputs.dtype, jnp.floating):
      raise TypeError(f'{self.module_name}: inputs must be floating point, got {inputs.dtype}')
    attention_mask = None
    if input_mask is not None:
      if input_mask.shape != inputs.shape[:2]:
        raise ValueError(f'{self.module_name}: input_mask must be [B, M] = {inputs.shape[:2]}, got {input_mask.shape}')
      attention_mask = attn_lib.make_cross_attention_mask(jnp.ones(z.shape[:2], jnp.int32), input_mask)

    def run_block(b: int, z: jax.Array) -> jax.Array:
      for i, blk in enumerate(self._schedule):
        if blk == b:
          z = self.cross_attends[i](z, inputs, is_training=is_training, attention_mask=attention_mask)
      if b < self._num_blocks:
        for layer in self.latent_transformers[b]:
          z = layer(z, is_training=is_training)
      return z

    # Group consecutive blocks that run identical modules; loop over each group.
    n_blocks = max(self._num_blocks, 1)
    for _, group in itertools.groupby(range(n_blocks), key=self._block_program):
      group = list(group)
      first = group[0]
      looped = len(group) > 1 and self._use_loops
      body: Callable[[int, jax.Array], jax.Array]
      if self._remat:
        body = _remat_body(run_block, first)
      elif looped:  # Saves only matmul outputs across the loop (_SAVE_MATMULS).
        body = _remat_body(run_block, first, policy=_SAVE_MATMULS)
      else:
        body = lambda _, z, b=first: run_block(b, z)
      if looped:
        z = hk.fori_loop(0, len(group), body, z)
      else:
        for _ in group:
          z = body(0, z)
    return z


# What a looped block keeps for its backward pass: the outputs of its
# matmuls with no batch dimensions (the projections and MLPs). Everything
# else (LayerNorm, GELU, softmax, attention einsums, residual adds) is
# recomputed from them. Without it the loop stacks every intermediate of
# every iteration, and XLA zero-fills each stacked buffer before the loop
# (scan's outputs): in cpu_bench's train step that was 162 buffers, 146 MB of
# the 183 MB of zero-filling copies a step, and a third of the peak memory.
# The recomputation is elementwise work plus the small attention einsums; the
# same numbers are computed either way (README, Performance, for the A/B).
_SAVE_MATMULS = jax.checkpoint_policies.dots_with_no_batch_dims_saveable


def _remat_body(run_block: Callable[[int, jax.Array], jax.Array], b: int, policy: Optional[Callable] = None):
  """A block body whose activations (all, or those `policy` does not save)
  are recomputed in the backward pass."""
  checkpointed = hk.remat(lambda z: run_block(b, z), policy=policy)
  return lambda _, z: checkpointed(z)
