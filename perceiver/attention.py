"""Attention, MLP and the pre-LayerNorm cross-/self-attention blocks.

Numerics follow DeepMind's Perceiver IO reference exactly (see
../shared/golden/README.md): logits scaled by 1/sqrt(qk channels per head),
masked logits set to -1e30, query rows whose keys are all masked return zeros
before the output projection, MLP = Linear -> tanh-GELU -> Linear, LayerNorm
eps 1e-5 (overridable for checkpoints trained with another eps).

Module and parameter names match the reference (`attention/linear..linear_3`,
`mlp/linear, linear_1`, `layer_norm, layer_norm_1, layer_norm_2`) so released
checkpoints load unchanged.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional, Sequence, Tuple

import haiku as hk
import jax
import jax.numpy as jnp

from perceiver import onednn

# The reference's "minus infinity" for masked logits (1e4 in float16).
_MASK_VALUE = 1e30
_MASK_VALUE_F16 = 1e4

DEFAULT_LAYER_NORM_EPS = 1e-5


def _mask_value(dtype) -> float:
  return _MASK_VALUE_F16 if dtype == jnp.float16 else _MASK_VALUE


def make_cross_attention_mask(query_mask: jax.Array, kv_mask: jax.Array) -> jax.Array:
  """[B, T] and [B, S] validity masks -> [B, T, S] boolean attention mask."""
  return jnp.logical_and(query_mask[:, :, None].astype(bool), kv_mask[:, None, :].astype(bool))


def _check_qkv(q: jax.Array, k: jax.Array, v: jax.Array, attention_mask: Optional[jax.Array]) -> None:
  if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
    raise ValueError(f'attend expects [B, T, H, D] q, k, v; got q{q.shape} k{k.shape} v{v.shape}')
  if q.shape[0] != k.shape[0] or k.shape[:3] != v.shape[:3] or q.shape[2] != k.shape[2] or q.shape[3] != k.shape[3]:
    raise ValueError(
      f'attend: incompatible q{q.shape} k{k.shape} v{v.shape} '
      '(need same batch/heads, same qk channels, same key count for k and v)'
    )
  if attention_mask is not None and attention_mask.shape != (q.shape[0], q.shape[1], k.shape[1]):
    raise ValueError(
      f'attention mask must be [B, T, S] = {(q.shape[0], q.shape[1], k.shape[1])}, got {attention_mask.shape}'
    )


# Head widths cuDNN's fused attention kernel takes (jax.nn.dot_product_attention
# raises for others): multiples of 8 up to 128.
_CUDNN_MAX_HEAD = 128
_FUSED_IMPLEMENTATIONS = ('xla', 'cudnn')


def fused_attention_implementation(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  dropout_prob: float = 0.0,
  attention_mask: Optional[jax.Array] = None,
  backend: Optional[str] = None,
) -> Optional[str]:
  """'cudnn' when `attend` should hand this call to cuDNN's flash attention.

  Only on a GPU backend, for half-precision q/k/v of one head width (a
  multiple of 8, at most 128: what the kernel takes), without attention
  dropout (the kernel's dropout RNG differs from hk.dropout) and without a
  mask (the plain path keeps the reference's masked-row semantics). Anything
  else (every CPU call, the Perceiver's 1-head 261-wide cross-attend, float32
  runs) returns None: the plain einsum path, whose numbers the goldens pin.
  `backend` defaults to jax.default_backend(); tests pass 'gpu' on a CPU.
  """
  backend = backend or jax.default_backend()
  if backend not in ('gpu', 'cuda'):
    return None
  half = (jnp.bfloat16, jnp.float16)
  if dropout_prob > 0 or attention_mask is not None:
    return None
  if q.dtype not in half or k.dtype != q.dtype or v.dtype != q.dtype or k.shape != v.shape:
    return None
  head = q.shape[-1]
  if head % 8 or head > _CUDNN_MAX_HEAD:
    return None
  return 'cudnn'


def attend(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  dropout_prob: float = 0.0,
  attention_mask: Optional[jax.Array] = None,
  implementation: Optional[str] = None,
) -> jax.Array:
  """Multi-head attention, materialising the [B, H, T, S] weights (plain path)
  or through jax.nn.dot_product_attention (fused path).

  q: [B, T, H, Dqk], k: [B, S, H, Dqk], v: [B, S, H, Dv], mask: [B, T, S].
  Returns [B, T, H*Dv]. `implementation`: None picks cuDNN's fused kernel
  where `fused_attention_implementation` allows it (GPU, bf16) and the plain
  path elsewhere; 'plain' forces the plain path; 'onednn_bf16' is the plain
  path with oneDNN's bf16 matmuls (CPU, `model.cpu_matmul`); 'xla' / 'cudnn' force
  jax.nn.dot_product_attention with that implementation (no dropout).
  """
  _check_qkv(q, k, v, attention_mask)
  if implementation is None:
    implementation = (
      fused_attention_implementation(q, k, v, dropout_prob=dropout_prob, attention_mask=attention_mask) or 'plain'
    )
  if implementation in _FUSED_IMPLEMENTATIONS:
    return _attend_fused(q, k, v, attention_mask, implementation, dropout_prob)
  if implementation == 'plain':
    logits_fn = lambda q, k: jnp.einsum('bthd,bshd->bhts', q, k)
    values_fn = lambda w, v: jnp.einsum('bhts,bshd->bthd', w, v)
  elif implementation == 'onednn_bf16':
    # model.cpu_matmul: the two einsums as oneDNN matmuls of bf16 operands
    # (perceiver/onednn.py); logits, softmax and masking stay in the compute dtype.
    logits_fn = lambda q, k: onednn.attention_logits(q, k, jnp.bfloat16).astype(q.dtype)
    values_fn = lambda w, v: onednn.attention_values(w, v, v.dtype, jnp.bfloat16)
  else:
    raise ValueError(
      f"attend: implementation must be None, 'plain', 'onednn_bf16', 'xla' or 'cudnn', got {implementation!r}"
    )
  return _attend_plain(q, k, v, dropout_prob, attention_mask, logits_fn=logits_fn, values_fn=values_fn)


def _attend_plain(q, k, v, dropout_prob, attention_mask, *, logits_fn, values_fn) -> jax.Array:
  """Materialised attention weights, given the two einsums
  ('bthd,bshd->bhts' and 'bhts,bshd->bthd')."""
  batch, num_q, num_heads, qk_head = q.shape
  logits = logits_fn(q, k) * (1.0 / math.sqrt(qk_head))  # [B, H, T, S]
  if attention_mask is not None:
    logits = jnp.where(attention_mask[:, None, :, :], logits, jnp.asarray(-_mask_value(logits.dtype), logits.dtype))
  weights = jax.nn.softmax(logits)
  if dropout_prob > 0:
    weights = hk.dropout(hk.next_rng_key(), dropout_prob, weights)
  out = values_fn(weights, v).reshape(batch, num_q, num_heads * v.shape[-1])  # [B, T, H*Dv]
  if attention_mask is not None:
    all_masked = jnp.all(~attention_mask.astype(bool), axis=2, keepdims=True)  # [B, T, 1]
    out = jnp.where(all_masked, jnp.zeros_like(out), out)
  return out


def _attend_fused(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  attention_mask: Optional[jax.Array],
  implementation: str,
  dropout_prob: float,
) -> jax.Array:
  """`attend` through jax.nn.dot_product_attention (same scale, same zeroed
  fully-masked rows)."""
  if dropout_prob > 0:
    raise ValueError(
      f'attend: implementation={implementation!r} has no attention dropout; use the plain path when dropout_prob > 0'
    )
  if k.shape != v.shape:
    raise ValueError(
      f'attend: implementation={implementation!r} needs keys and values of one shape, got k{k.shape} v{v.shape}'
    )
  batch, num_q = q.shape[:2]
  mask = None if attention_mask is None else attention_mask.astype(bool)[:, None]  # [B, 1, T, S]
  out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)
  out = out.reshape(batch, num_q, -1)  # [B, T, H*Dv]
  if attention_mask is not None:
    all_masked = jnp.all(~attention_mask.astype(bool), axis=2, keepdims=True)  # [B, T, 1]
    out = jnp.where(all_masked, jnp.zeros_like(out), out)
  return out


def _pad_to_multiple(x: jax.Array, axis: int, multiple: int) -> jax.Array:
  size = x.shape[axis]
  pad = (-size) % multiple
  if pad == 0:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, pad)
  return jnp.pad(x, widths)


def _given_kv(kv, theta):
  """`project` of `attend_chunked`: the key/value blocks are given."""
  del theta
  return kv


def _layer_norm_stats(x: jax.Array, eps: float) -> Tuple[jax.Array, jax.Array]:
  """hk.LayerNorm's statistics over the last axis: mean and 1/sqrt(var + eps), [..., 1] each."""
  mean = jnp.mean(x, axis=-1, keepdims=True)
  variance = jnp.var(x, axis=-1, keepdims=True)
  return mean, jax.lax.rsqrt(variance + jnp.asarray(eps, variance.dtype))


def _norm_project_kv(x, theta, *, eps: float, num_heads: int):
  """`project` of the fused cross-attention: LayerNorm then the key and value
  linear layers (hk.LayerNorm's and hk.Linear's arithmetic) on one block."""
  scale, offset, w_k, b_k, w_v, b_v = theta
  mean, rstd = _layer_norm_stats(x, eps)
  normed = scale * rstd * (x - mean) + offset
  rows = _flat(normed)  # [B*S, C]
  heads = (*x.shape[:-1], num_heads, -1)  # [B, S, H, D/H]
  return ((jnp.dot(rows, w_k) + b_k).reshape(heads), (jnp.dot(rows, w_v) + b_v).reshape(heads))


class InputsWithPos(NamedTuple):
  """A cross-attend's inputs whose trailing channels are position features
  that every example shares: it stands for concat([values, pos broadcast to
  the batch], -1), [B, S, Cv + Cp].

  Kept in two parts so that the cross-attend's key/value projections (and
  their weight gradients) multiply the position features once per batch
  rather than once per example (_norm_project_split). With Fourier features
  the position part is nearly all of the input's channels (258 of 261 on
  ImageNet), so this removes most of those projections' work at batch > 1.
  """

  values: jax.Array  # [B, S, Cv]
  pos: jax.Array  # [S, Cp]

  @property
  def shape(self) -> Tuple[int, int, int]:
    batch, length, channels = self.values.shape
    return batch, length, channels + self.pos.shape[-1]

  @property
  def ndim(self) -> int:
    return 3

  @property
  def dtype(self):
    return self.values.dtype

  def concat(self) -> jax.Array:
    """The [B, S, Cv + Cp] array these inputs stand for."""
    pos = jnp.broadcast_to(self.pos.astype(self.values.dtype), self.values.shape[:2] + self.pos.shape[-1:])
    return jnp.concatenate([self.values, pos], axis=-1)


@jax.custom_vjp
def _add_to_each_example(x: jax.Array, shared: jax.Array) -> jax.Array:
  """x [B, S, D] + shared [S, D], whose gradient sums over the batch as a
  matrix-vector product: XLA's CPU backend runs the reduction autodiff would
  emit (over the leading axis, two minor axes kept) many times slower
  (docs/performance.md, "Position features projected once per batch")."""
  return x + shared


def _add_to_each_example_fwd(x, shared):
  return x + shared, None


def _add_to_each_example_bwd(_, g):
  batch = g.shape[0]
  ones = jnp.ones((batch,), g.dtype)
  d_shared = jnp.dot(ones, g.reshape(batch, -1), preferred_element_type=jnp.float32)  # [S*D]
  return g, d_shared.astype(g.dtype).reshape(g.shape[1:])


_add_to_each_example.defvjp(_add_to_each_example_fwd, _add_to_each_example_bwd)


def _norm_project_split(
  x: InputsWithPos, scale, offset, eps: float, projections: Sequence[Tuple[jax.Array, jax.Array]]
):
  """LayerNorm then linear layers (w [C, D], b [D] each) of the array `x`
  stands for, with the position part multiplied once for the whole batch.

  LN(x) @ w + b = rstd * ((x - mean) @ (scale * w)) + (offset @ w + b), and
  (x - mean) @ sw = (values - mean) @ sw[:Cv] + pos @ sw[Cv:] - mean * sum(sw[Cv:]).
  The statistics are hk.LayerNorm's, over the concatenated channels. Equal
  to normalising then projecting up to float round-off (the golden files
  check it).
  """
  values, pos = x.values, x.pos.astype(x.values.dtype)
  cv = values.shape[-1]
  mean, rstd = _layer_norm_stats(x.concat(), eps)  # [B, S, 1] each
  centred = _flat(values - mean)  # [B*S, Cv]
  outs = []
  for w, b in projections:
    sw = scale[:, None] * w  # [C, D]
    pos_part = jnp.dot(pos, sw[cv:])  # [S, D]: once, not once per example
    out = jnp.dot(centred, sw[:cv]).reshape(values.shape[:2] + (-1,))  # [B, S, D]
    out = _add_to_each_example(out, pos_part) - mean * jnp.sum(sw[cv:], axis=0)
    outs.append(rstd * out + (jnp.dot(offset, w) + b))
  return outs


class _Blocks:
  """Block slicing, masking and dropout shared by the forward and backward passes."""

  def __init__(self, q, kv, mask, q_chunk: int, kv_chunk: int, rate: float):
    self.q_chunk, self.kv_chunk, self.rate = q_chunk, kv_chunk, rate
    self.num_kv = jax.tree.leaves(kv)[0].shape[1]
    self.nq, self.nk = q.shape[1] // q_chunk, -(-self.num_kv // kv_chunk)
    self.scale = 1.0 / math.sqrt(q.shape[-1])
    self.neg = -_mask_value(q.dtype)
    # Keys are padded to whole blocks; padded keys are masked out.
    self.kv = jax.tree.map(lambda x: _pad_to_multiple(x, 1, kv_chunk), kv)
    self.mask = None if mask is None else _pad_to_multiple(mask, 2, kv_chunk)

  @staticmethod
  def take(x, i, size, axis):
    return jax.lax.dynamic_slice_in_dim(x, i * size, size, axis)

  @staticmethod
  def put(x, blk, i, axis):
    return jax.lax.dynamic_update_slice_in_dim(x, blk.astype(x.dtype), i * blk.shape[axis], axis)

  def kv_block(self, ki):
    return jax.tree.map(lambda x: self.take(x, ki, self.kv_chunk, 1), self.kv)

  def logits(self, q_blk, k_blk, qi, ki):
    """Scaled, masked logits [B, H, cq, ck] of one (query, key) block, float32."""
    logits = jnp.einsum('bthd,bshd->bhts', q_blk, k_blk, preferred_element_type=jnp.float32) * self.scale
    if self.mask is not None:
      m_blk = self.take(self.take(self.mask, qi, self.q_chunk, 1), ki, self.kv_chunk, 2)
      logits = jnp.where(m_blk[:, None], logits, self.neg)
    if self.num_kv % self.kv_chunk:
      key_ok = (ki * self.kv_chunk + jnp.arange(self.kv_chunk)) < self.num_kv
      logits = jnp.where(key_ok, logits, self.neg)
    return logits

  def dropout(self, p, key, qi, ki):
    """(p with attention dropout applied, the keep mask or None)."""
    if self.rate <= 0:
      return p, None
    block_key = jax.random.fold_in(jax.random.fold_in(key, qi), ki)
    keep = jax.random.bernoulli(block_key, 1.0 - self.rate, p.shape)
    return jnp.where(keep, p / (1.0 - self.rate), 0.0), keep


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8))
def _flash(q, kv, theta, mask, key, q_chunk, kv_chunk, rate, project):
  return _flash_fwd(q, kv, theta, mask, key, q_chunk, kv_chunk, rate, project)[0]


def _flash_fwd(q, kv, theta, mask, key, q_chunk, kv_chunk, rate, project):
  """Online-softmax forward; saves only the output and the row logsumexp.

  Outer loop over key blocks (each projected once by `project(kv_block,
  theta) -> (k, v)`), inner loop over query blocks, with running (max, sum,
  weighted values) statistics per query row.
  """
  blocks = _Blocks(q, kv, mask, q_chunk, kv_chunk, rate)
  batch, num_q, num_heads, _ = q.shape

  def kv_step(ki, stats):
    k_blk, v_blk = project(blocks.kv_block(ki), theta)

    def q_step(qi, stats):
      acc, row_max, row_sum = stats  # [B, H, T, Dv], [B, H, T], [B, H, T]
      logits = blocks.logits(blocks.take(q, qi, q_chunk, 1), k_blk, qi, ki)
      old_max = blocks.take(row_max, qi, q_chunk, 2)
      new_max = jnp.maximum(old_max, logits.max(-1))
      correction = jnp.exp(old_max - new_max)
      p = jnp.exp(logits - new_max[..., None])
      new_sum = blocks.take(row_sum, qi, q_chunk, 2) * correction + p.sum(-1)
      p, _ = blocks.dropout(p, key, qi, ki)
      pv = jnp.einsum('bhts,bshd->bhtd', p.astype(v_blk.dtype), v_blk, preferred_element_type=jnp.float32)
      new_acc = blocks.take(acc, qi, q_chunk, 2) * correction[..., None] + pv
      return (blocks.put(acc, new_acc, qi, 2), blocks.put(row_max, new_max, qi, 2), blocks.put(row_sum, new_sum, qi, 2))

    return jax.lax.fori_loop(0, blocks.nq, q_step, stats)

  _, v0 = jax.eval_shape(project, blocks.kv_block(0), theta)
  init = (
    jnp.zeros((batch, num_heads, num_q, v0.shape[-1]), jnp.float32),
    jnp.full((batch, num_heads, num_q), -jnp.inf, jnp.float32),
    jnp.zeros((batch, num_heads, num_q), jnp.float32),
  )
  acc, row_max, row_sum = jax.lax.fori_loop(0, blocks.nk, kv_step, init)
  out = (acc / row_sum[..., None]).astype(v0.dtype).transpose(0, 2, 1, 3)  # [B, T, H, Dv]
  lse = row_max + jnp.log(row_sum)
  return out, (q, kv, theta, mask, key, out, lse)


def _flash_bwd(q_chunk, kv_chunk, rate, project, residuals, d_out):
  """FlashAttention-2 backward: probabilities recomputed block by block from
  the saved logsumexp; dS = P * (dP - rowsum(dO * O)). Each key block's
  projection is recomputed and differentiated once (jax.vjp of `project`)."""
  q, kv, theta, mask, key, out, lse = residuals
  blocks = _Blocks(q, kv, mask, q_chunk, kv_chunk, rate)
  # D = rowsum(dO * O): [B, H, T].
  delta = jnp.einsum('bthd,bthd->bht', d_out.astype(jnp.float32), out.astype(jnp.float32))

  def kv_step(ki, carry):
    dq, dkv, dtheta = carry
    (k_blk, v_blk), project_vjp = jax.vjp(project, blocks.kv_block(ki), theta)

    def q_step(qi, state):
      dq, dk_blk, dv_blk = state
      q_blk = blocks.take(q, qi, q_chunk, 1)
      do_blk = blocks.take(d_out, qi, q_chunk, 1)
      logits = blocks.logits(q_blk, k_blk, qi, ki)
      p = jnp.exp(logits - blocks.take(lse, qi, q_chunk, 2)[..., None])  # [B, H, cq, ck]
      p_drop, keep = blocks.dropout(p, key, qi, ki)
      dv_blk = dv_blk + jnp.einsum(
        'bhts,bthd->bshd', p_drop.astype(do_blk.dtype), do_blk, preferred_element_type=jnp.float32
      )
      dp = jnp.einsum('bthd,bshd->bhts', do_blk, v_blk, preferred_element_type=jnp.float32)
      if keep is not None:
        dp = jnp.where(keep, dp / (1.0 - rate), 0.0)
      ds = (p * (dp - blocks.take(delta, qi, q_chunk, 2)[..., None]) * blocks.scale).astype(q.dtype)
      dq_blk = blocks.take(dq, qi, q_chunk, 1) + jnp.einsum(
        'bhts,bshd->bthd', ds, k_blk, preferred_element_type=jnp.float32
      )
      dk_blk = dk_blk + jnp.einsum('bhts,bthd->bshd', ds, q_blk, preferred_element_type=jnp.float32)
      return blocks.put(dq, dq_blk, qi, 1), dk_blk, dv_blk

    init = (dq, jnp.zeros(k_blk.shape, jnp.float32), jnp.zeros(v_blk.shape, jnp.float32))
    dq, dk_blk, dv_blk = jax.lax.fori_loop(0, blocks.nq, q_step, init)
    dkv_blk, dtheta_blk = project_vjp((dk_blk.astype(k_blk.dtype), dv_blk.astype(v_blk.dtype)))
    dkv = jax.tree.map(lambda full, blk: blocks.put(full, blk, ki, 1), dkv, dkv_blk)
    dtheta = jax.tree.map(lambda acc, d: acc + d.astype(jnp.float32), dtheta, dtheta_blk)
    return dq, dkv, dtheta

  init = (
    jnp.zeros(q.shape, jnp.float32),
    jax.tree.map(jnp.zeros_like, blocks.kv),
    jax.tree.map(lambda t: jnp.zeros(t.shape, jnp.float32), theta),
  )
  dq, dkv, dtheta = jax.lax.fori_loop(0, blocks.nk, kv_step, init)
  num_kv = blocks.num_kv
  dkv = jax.tree.map(lambda d: d[:, :num_kv], dkv)
  dtheta = jax.tree.map(lambda d, t: d.astype(t.dtype), dtheta, theta)
  return dq.astype(q.dtype), dkv, dtheta, None, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def _chunked(
  q, kv, theta, project, *, chunk_size: int, dropout_prob: float, attention_mask: Optional[jax.Array]
) -> jax.Array:
  """Pads the queries to whole blocks, runs `_flash`, zeroes fully masked rows."""
  if chunk_size <= 0:
    raise ValueError(f'chunk_size must be positive, got {chunk_size}')
  batch, num_q = q.shape[:2]
  q_chunk = min(chunk_size, num_q)
  kv_chunk = min(chunk_size, jax.tree.leaves(kv)[0].shape[1])
  mask = None if attention_mask is None else attention_mask.astype(bool)
  # Padded queries are dropped at the end (padded keys are masked inside).
  qp = _pad_to_multiple(q, 1, q_chunk)
  maskp = None if mask is None else _pad_to_multiple(mask, 1, q_chunk)
  rate = float(dropout_prob) if dropout_prob > 0 else 0.0
  key = hk.next_rng_key() if rate else None
  out = _flash(qp, kv, theta, maskp, key, q_chunk, kv_chunk, rate, project)
  out = out[:, :num_q].reshape(batch, num_q, -1)
  if mask is not None:
    all_masked = jnp.all(~mask, axis=2, keepdims=True)
    out = jnp.where(all_masked, jnp.zeros_like(out), out)
  return out


def attend_chunked(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  chunk_size: int,
  dropout_prob: float = 0.0,
  attention_mask: Optional[jax.Array] = None,
) -> jax.Array:
  """Memory-lean attention: same result as `attend`, never holds [T, S] weights.

  FlashAttention-style, written by hand because JAX's fused
  `dot_product_attention` only has a memory-lean kernel on GPU (cuDNN), and
  the Perceiver's long cross-attends matter on CPU/TPU as well. Keys are
  processed in blocks of `chunk_size` and, for each, queries in blocks of
  `chunk_size`, with a running (max, sum) online softmax per query row, so
  activation memory is O(chunk^2) per head instead of O(T*S). A
  `jax.custom_vjp` saves only the output and each query row's logsumexp; the
  backward pass recomputes the probabilities block by block
  (FlashAttention-2: dS = P * (dP - rowsum(dO * O))).
  Masking follows `attend` (masked logits -1e30, fully masked rows -> zeros).
  Attention dropout is drawn per block (and redrawn identically in the
  backward pass), so with dropout the result is equal in distribution (not
  bitwise) to `attend`.
  """
  _check_qkv(q, k, v, attention_mask)
  return _chunked(
    q, (k, v), (), _given_kv, chunk_size=chunk_size, dropout_prob=dropout_prob, attention_mask=attention_mask
  )


def _flat(x: jax.Array) -> jax.Array:
  """[..., C] -> [N, C]. XLA's CPU backend runs a dot with several free lhs
  dimensions ([B, T, C] x [C, D]) at about half the speed of the same dot on
  [B*T, C] (55-68 vs 94-128 GFLOP/s for [2, 128, 512] x [512, 512] on the
  2-core box; the cpu_bench train step went from 1.11-1.26 s to 0.89-0.91 s).
  A free reshape elsewhere."""
  return x.reshape(-1, x.shape[-1])


class Linear(hk.Linear):
  """hk.Linear (same parameters and names) computed as one 2-D matmul.

  Method interceptors see this call ([..., C] in) and, inside it, hk.Linear's
  own call on the flattened [N, C] input.
  """

  def __call__(self, inputs: jax.Array, *, precision=None) -> jax.Array:
    if inputs.ndim <= 2:
      return super().__call__(inputs, precision=precision)
    out = super().__call__(_flat(inputs), precision=precision)  # [N, D]
    return out.reshape(inputs.shape[:-1] + out.shape[-1:])

  def onednn_bf16(self, inputs: jax.Array) -> jax.Array:
    """hk.Linear's parameters and arithmetic with the matmul done by oneDNN
    on bf16 operands (`model.cpu_matmul`; perceiver/onednn.py says why):
    float32 result under float32 compute, bf16 under bf16 compute."""
    self.input_size = inputs.shape[-1]
    w = hk.get_parameter('w', [self.input_size, self.output_size], inputs.dtype, init=self.w_init)
    out = onednn.matmul(_flat(inputs), w, inputs.dtype, jnp.bfloat16)  # [N, D]
    if self.with_bias:
      out = out + hk.get_parameter('b', [self.output_size], inputs.dtype, init=self.b_init)
    return out.reshape(inputs.shape[:-1] + out.shape[-1:])


def linear(
  num_channels: int, *, with_bias: bool = True, init_scale: float = 1.0, name: Optional[str] = None
) -> hk.Linear:
  """The reference's `conv_1d`: a per-position linear layer."""
  return Linear(
    num_channels, with_bias=with_bias, w_init=hk.initializers.VarianceScaling(init_scale), name=name or 'linear'
  )


def layer_norm(eps: float = DEFAULT_LAYER_NORM_EPS, name: Optional[str] = None) -> hk.LayerNorm:
  return hk.LayerNorm(axis=-1, create_scale=True, create_offset=True, eps=eps, name=name)


class _ParamsOf(hk.Module):
  """The parameters of a `layer_norm` or `linear` under its usual module name,
  without applying it: the fused chunked cross-attention applies them to one
  key block at a time. Names, shapes and initialisers equal hk.LayerNorm's /
  hk.Linear's, so checkpoints and initial values are unchanged."""

  def __init__(self, kind: str, channels: int, *, init_scale: float = 1.0, name: str):
    super().__init__(name=name)
    self._kind, self._channels, self._init_scale = kind, channels, init_scale

  def __call__(self, in_channels: int, dtype) -> Tuple[jax.Array, jax.Array]:
    if self._kind == 'layer_norm':
      return (
        hk.get_parameter('scale', [in_channels], dtype, init=jnp.ones),
        hk.get_parameter('offset', [in_channels], dtype, init=jnp.zeros),
      )
    w = hk.get_parameter(
      'w', [in_channels, self._channels], dtype, init=hk.initializers.VarianceScaling(self._init_scale)
    )
    return w, hk.get_parameter('b', [self._channels], dtype, init=jnp.zeros)


class MultiHeadAttention(hk.Module):
  """Multi-head attention with q/k/v/output projections (`linear`..`linear_3`)."""

  def __init__(
    self,
    *,
    num_heads: int = 8,
    init_scale: float = 1.0,
    with_final_bias: bool = True,
    final_init_scale_multiplier: float = 1.0,
    dropout_prob: float = 0.0,
    qk_channels: Optional[int] = None,
    v_channels: Optional[int] = None,
    output_channels: Optional[int] = None,
    chunk_size: int = 0,
    name: str = 'attention',
  ):
    super().__init__(name=name)
    self._num_heads = num_heads
    self._init_scale = init_scale
    self._with_final_bias = with_final_bias
    self._final_init_scale = final_init_scale_multiplier * init_scale
    self._dropout_prob = dropout_prob
    self._qk_channels = qk_channels
    self._v_channels = v_channels
    self._output_channels = output_channels
    self._chunk_size = chunk_size

  def __call__(
    self,
    inputs_q: jax.Array,
    inputs_kv: jax.Array,
    *,
    is_training: bool = False,
    attention_mask: Optional[jax.Array] = None,
    kv_norm: Optional[Tuple[jax.Array, jax.Array, float]] = None,
  ) -> jax.Array:
    """inputs_q [B, T, Cq], inputs_kv [B, S, Ckv] -> [B, T, output_channels].

    `kv_norm` = (scale, offset, eps): `inputs_kv` are not yet layer-normed;
    with chunking, the LayerNorm and the key/value projections run inside
    the key-block loop, so no [B, S, C] normed/key/value array is ever held
    (nor its gradient). Same numbers as normalising first. Without chunking
    it needs `inputs_kv` as InputsWithPos, whose position part the key/value
    projections then multiply once for the batch.
    """
    qk_channels = self._qk_channels or inputs_q.shape[-1]
    v_channels = self._v_channels or qk_channels
    output_channels = self._output_channels or v_channels
    for what, channels in (('qk_channels', qk_channels), ('v_channels', v_channels)):
      if channels % self._num_heads:
        raise ValueError(f'{self.module_name}: {what}={channels} is not divisible by num_heads={self._num_heads}')
    q = linear(qk_channels, init_scale=self._init_scale)(inputs_q)
    batch, num_q, _ = q.shape
    h = self._num_heads
    q = q.reshape(batch, num_q, h, qk_channels // h)
    dropout = self._dropout_prob if is_training else 0.0
    if isinstance(inputs_kv, InputsWithPos) and (kv_norm is None or self._chunk_size):
      inputs_kv = inputs_kv.concat()  # The chunked path normalises block by block.
    if kv_norm is not None and not (self._chunk_size or isinstance(inputs_kv, InputsWithPos)):
      raise ValueError(f'{self.module_name}: kv_norm needs chunk_size > 0 or InputsWithPos inputs')
    if kv_norm is None:
      k = linear(qk_channels, init_scale=self._init_scale)(inputs_kv)
      v = linear(v_channels, init_scale=self._init_scale)(inputs_kv)
    else:
      scale, offset, eps = kv_norm
      kv_params = tuple(
        _ParamsOf('linear', channels, init_scale=self._init_scale, name='linear')(inputs_kv.shape[-1], inputs_kv.dtype)
        for channels in (qk_channels, v_channels)
      )
      if isinstance(inputs_kv, InputsWithPos):
        k, v = _norm_project_split(inputs_kv, scale, offset, float(eps), kv_params)
      else:  # Chunked: LayerNorm and projections block by block.
        if attention_mask is not None and attention_mask.shape != (batch, num_q, inputs_kv.shape[1]):
          raise ValueError(
            f'attention mask must be [B, T, S] = {(batch, num_q, inputs_kv.shape[1])}, got {attention_mask.shape}'
          )
        project = functools.partial(_norm_project_kv, eps=float(eps), num_heads=h)
        out = _chunked(
          q,
          inputs_kv,
          (scale, offset) + kv_params[0] + kv_params[1],
          project,
          chunk_size=self._chunk_size,
          dropout_prob=dropout,
          attention_mask=attention_mask,
        )
        return linear(output_channels, with_bias=self._with_final_bias, init_scale=self._final_init_scale)(out)
    num_kv = k.shape[1]
    k = k.reshape(batch, num_kv, h, qk_channels // h)
    v = v.reshape(batch, num_kv, h, v_channels // h)
    if self._chunk_size:
      out = attend_chunked(q, k, v, chunk_size=self._chunk_size, dropout_prob=dropout, attention_mask=attention_mask)
    else:
      out = self.attend(q, k, v, dropout_prob=dropout, attention_mask=attention_mask)
    return linear(output_channels, with_bias=self._with_final_bias, init_scale=self._final_init_scale)(out)

  def attend(self, q, k, v, *, dropout_prob: float, attention_mask: Optional[jax.Array]) -> jax.Array:
    """`attend` as a method, so that a method interceptor can swap the
    implementation (models.with_cpu_matmul: implementation='onednn_bf16')."""
    return attend(q, k, v, dropout_prob=dropout_prob, attention_mask=attention_mask)


class MLP(hk.Module):
  """Dense block: Linear(widening * C) -> GELU (tanh approx.) -> Linear(C)."""

  def __init__(
    self,
    *,
    widening_factor: int = 4,
    dropout_prob: float = 0.0,
    init_scale: float = 1.0,
    gelu_approximate: bool = True,
    name: str = 'mlp',
  ):
    super().__init__(name=name)
    self._gelu_approximate = gelu_approximate  # False: exact erf GELU (Hugging Face weights).
    self._widening_factor = widening_factor
    self._dropout_prob = dropout_prob
    self._init_scale = init_scale

  def __call__(self, x: jax.Array, *, is_training: bool) -> jax.Array:
    channels = x.shape[-1]
    x = linear(self._widening_factor * channels, init_scale=self._init_scale)(x)
    x = jax.nn.gelu(x, approximate=self._gelu_approximate)
    x = linear(channels, init_scale=self._init_scale)(x)
    if is_training and self._dropout_prob > 0:
      x = hk.dropout(hk.next_rng_key(), self._dropout_prob, x)
    return x


def _dropout(x: jax.Array, rate: float, is_training: bool) -> jax.Array:
  if is_training and rate > 0:
    return hk.dropout(hk.next_rng_key(), rate, x)
  return x


class SelfAttention(hk.Module):
  """Pre-LayerNorm Transformer block: x += Attn(LN(x)); x += MLP(LN(x))."""

  def __init__(
    self,
    *,
    widening_factor: int = 4,
    dropout_prob: float = 0.0,
    dropout_attn_prob: float = 0.0,
    num_heads: int = 8,
    att_init_scale: float = 1.0,
    dense_init_scale: float = 1.0,
    qk_channels: Optional[int] = None,
    v_channels: Optional[int] = None,
    layer_norm_eps: float = DEFAULT_LAYER_NORM_EPS,
    chunk_size: int = 0,
    gelu_approximate: bool = True,
    name: Optional[str] = None,
  ):
    super().__init__(name=name)
    self._gelu_approximate = gelu_approximate
    self._widening_factor = widening_factor
    self._dropout_prob = dropout_prob
    self._dropout_attn_prob = dropout_attn_prob
    self._num_heads = num_heads
    self._att_init_scale = att_init_scale
    self._dense_init_scale = dense_init_scale
    self._qk_channels = qk_channels
    self._v_channels = v_channels
    self._eps = layer_norm_eps
    self._chunk_size = chunk_size

  def __call__(self, inputs: jax.Array, *, is_training: bool, attention_mask: Optional[jax.Array] = None) -> jax.Array:
    """inputs [B, N, D] -> [B, N, D]."""
    x = inputs
    normed = layer_norm(self._eps)(inputs)
    attn = MultiHeadAttention(
      num_heads=self._num_heads,
      init_scale=self._att_init_scale,
      qk_channels=self._qk_channels,
      v_channels=self._v_channels,
      output_channels=inputs.shape[-1],
      dropout_prob=self._dropout_attn_prob,
      chunk_size=self._chunk_size,
    )(normed, normed, is_training=is_training, attention_mask=attention_mask)
    x = x + _dropout(attn, self._dropout_prob, is_training)
    x = x + MLP(
      widening_factor=self._widening_factor,
      dropout_prob=self._dropout_prob,
      init_scale=self._dense_init_scale,
      gelu_approximate=self._gelu_approximate,
    )(layer_norm(self._eps)(x), is_training=is_training)
    return x


class CrossAttention(hk.Module):
  """Pre-LayerNorm cross-attention: queries attend to a (long) key/value array.

  `shape_for_attn` picks the q/k channel count like the reference: 'kv' uses
  the key/value input's channels (the Perceiver paper's choice: 261 on
  ImageNet), 'q' the query's. Explicit `qk_channels`/`v_channels` override it.
  """

  def __init__(
    self,
    *,
    widening_factor: int = 1,
    dropout_prob: float = 0.0,
    dropout_attn_prob: float = 0.0,
    num_heads: int = 8,
    att_init_scale: float = 1.0,
    dense_init_scale: float = 1.0,
    shape_for_attn: str = 'kv',
    use_query_residual: bool = True,
    qk_channels: Optional[int] = None,
    v_channels: Optional[int] = None,
    layer_norm_eps: float = DEFAULT_LAYER_NORM_EPS,
    chunk_size: int = 0,
    gelu_approximate: bool = True,
    name: Optional[str] = None,
  ):
    super().__init__(name=name)
    self._gelu_approximate = gelu_approximate
    if shape_for_attn not in ('q', 'kv'):
      raise ValueError(f"shape_for_attn must be 'q' or 'kv', got {shape_for_attn!r}")
    self._widening_factor = widening_factor
    self._dropout_prob = dropout_prob
    self._dropout_attn_prob = dropout_attn_prob
    self._num_heads = num_heads
    self._att_init_scale = att_init_scale
    self._dense_init_scale = dense_init_scale
    self._shape_for_attn = shape_for_attn
    self._use_query_residual = use_query_residual
    self._qk_channels = qk_channels
    self._v_channels = v_channels
    self._eps = layer_norm_eps
    self._chunk_size = chunk_size

  def __call__(
    self, inputs_q: jax.Array, inputs_kv: jax.Array, *, is_training: bool, attention_mask: Optional[jax.Array] = None
  ) -> jax.Array:
    """inputs_q [B, N, D], inputs_kv [B, M, C] (or InputsWithPos) -> [B, N, D]."""
    if inputs_q.ndim != 3 or inputs_kv.ndim != 3:
      raise ValueError(
        f'{self.module_name}: expected [B, N, D] queries and [B, M, C] inputs, '
        f'got {inputs_q.shape} and {inputs_kv.shape}'
      )
    if inputs_q.shape[0] != inputs_kv.shape[0]:
      raise ValueError(
        f'{self.module_name}: batch sizes differ: queries {inputs_q.shape[0]}, inputs {inputs_kv.shape[0]}'
      )
    output_channels = inputs_q.shape[-1]
    qk_channels = inputs_q.shape[-1] if self._shape_for_attn == 'q' else inputs_kv.shape[-1]
    if self._qk_channels is not None:
      qk_channels = self._qk_channels
    attention = MultiHeadAttention(
      num_heads=self._num_heads,
      init_scale=self._att_init_scale,
      dropout_prob=self._dropout_attn_prob,
      qk_channels=qk_channels,
      v_channels=self._v_channels,
      output_channels=output_channels,
      chunk_size=self._chunk_size,
    )
    normed_q = layer_norm(self._eps)(inputs_q)
    if self._chunk_size or isinstance(inputs_kv, InputsWithPos):
      # The key/value LayerNorm runs block by block inside the chunked
      # attention, or is folded into the projections of InputsWithPos.
      scale, offset = _ParamsOf('layer_norm', inputs_kv.shape[-1], name='layer_norm')(
        inputs_kv.shape[-1], inputs_kv.dtype
      )
      attn = attention(
        normed_q, inputs_kv, is_training=is_training, attention_mask=attention_mask, kv_norm=(scale, offset, self._eps)
      )
    else:
      attn = attention(
        normed_q, layer_norm(self._eps)(inputs_kv), is_training=is_training, attention_mask=attention_mask
      )
    attn = _dropout(attn, self._dropout_prob, is_training)
    x = inputs_q + attn if self._use_query_residual else attn
    x = x + MLP(
      widening_factor=self._widening_factor,
      dropout_prob=self._dropout_prob,
      init_scale=self._dense_init_scale,
      gelu_approximate=self._gelu_approximate,
    )(layer_norm(self._eps)(x), is_training=is_training)
    return x
