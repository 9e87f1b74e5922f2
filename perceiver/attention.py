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

import math
from typing import Optional

import haiku as hk
import jax
import jax.numpy as jnp

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
    raise ValueError(f'attend: incompatible q{q.shape} k{k.shape} v{v.shape} '
                     '(need same batch/heads, same qk channels, same key count for k and v)')
  if attention_mask is not None and attention_mask.shape != (q.shape[0], q.shape[1], k.shape[1]):
    raise ValueError(f'attention mask must be [B, T, S] = {(q.shape[0], q.shape[1], k.shape[1])}, '
                     f'got {attention_mask.shape}')


def attend(q: jax.Array, k: jax.Array, v: jax.Array, *, dropout_prob: float = 0.0,
           attention_mask: Optional[jax.Array] = None) -> jax.Array:
  """Plain multi-head attention, materialising the [B, H, T, S] weights.

  q: [B, T, H, Dqk], k: [B, S, H, Dqk], v: [B, S, H, Dv], mask: [B, T, S].
  Returns [B, T, H*Dv].
  """
  _check_qkv(q, k, v, attention_mask)
  batch, num_q, num_heads, qk_head = q.shape
  v_head = v.shape[-1]
  logits = jnp.einsum('bthd,bshd->bhts', q, k) * (1.0 / math.sqrt(qk_head))  # [B, H, T, S]
  if attention_mask is not None:
    logits = jnp.where(attention_mask[:, None, :, :], logits,
                       jnp.asarray(-_mask_value(logits.dtype), logits.dtype))
  weights = jax.nn.softmax(logits)
  if dropout_prob > 0:
    weights = hk.dropout(hk.next_rng_key(), dropout_prob, weights)
  out = jnp.einsum('bhts,bshd->bthd', weights, v).reshape(batch, num_q, num_heads * v_head)
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


def attend_chunked(q: jax.Array, k: jax.Array, v: jax.Array, *, chunk_size: int,
                   dropout_prob: float = 0.0, attention_mask: Optional[jax.Array] = None) -> jax.Array:
  """Memory-lean attention: same result as `attend`, never holds [T, S] weights.

  Queries are processed in blocks of `chunk_size` (lax.map) and keys in blocks
  of `chunk_size` with a running (max, sum) online softmax (lax.scan), so
  activation memory is O(chunk^2) per head instead of O(T*S). Each key block
  is rematerialised in the backward pass (jax.checkpoint), which is what keeps
  training memory lean too. Written by hand because JAX's fused
  `dot_product_attention` only has a memory-lean kernel on GPU (cuDNN), and
  the Perceiver's long cross-attends matter on CPU/TPU as well.
  Attention dropout is drawn per key block, so with dropout the result is
  equal in distribution (not bitwise) to `attend`.
  """
  _check_qkv(q, k, v, attention_mask)
  if chunk_size <= 0:
    raise ValueError(f'chunk_size must be positive, got {chunk_size}')
  batch, num_q, num_heads, qk_head = q.shape
  num_kv, v_head = k.shape[1], v.shape[-1]
  scale = 1.0 / math.sqrt(qk_head)
  if attention_mask is None:
    mask = jnp.ones((batch, num_q, num_kv), bool)
  else:
    mask = attention_mask.astype(bool)
  q_chunk = min(chunk_size, num_q)
  kv_chunk = min(chunk_size, num_kv)
  # Padded keys are masked out; padded queries are dropped at the end.
  qp = _pad_to_multiple(q, 1, q_chunk)
  kp = _pad_to_multiple(k, 1, kv_chunk)
  vp = _pad_to_multiple(v, 1, kv_chunk)
  maskp = _pad_to_multiple(_pad_to_multiple(mask, 1, q_chunk), 2, kv_chunk)
  # Keys padded for chunking must never count as valid.
  valid_kv = _pad_to_multiple(jnp.ones((num_kv,), bool), 0, kv_chunk)
  maskp = jnp.logical_and(maskp, valid_kv[None, None, :])
  nq, nk = qp.shape[1] // q_chunk, kp.shape[1] // kv_chunk
  # [nk, B, c, H, D] key/value blocks.
  k_blocks = kp.reshape(batch, nk, kv_chunk, num_heads, qk_head).swapaxes(0, 1)
  v_blocks = vp.reshape(batch, nk, kv_chunk, num_heads, v_head).swapaxes(0, 1)
  q_blocks = qp.reshape(batch, nq, q_chunk, num_heads, qk_head).swapaxes(0, 1)
  m_blocks = maskp.reshape(batch, nq, q_chunk, nk, kv_chunk).transpose(1, 3, 0, 2, 4)  # [nq, nk, B, cq, ck]
  use_dropout = dropout_prob > 0
  base_key = hk.next_rng_key() if use_dropout else None
  neg = -_mask_value(q.dtype)
  acc_dtype = jnp.promote_types(q.dtype, jnp.float32)

  def one_query_block(args):
    qi, q_blk, m_row = args  # q_blk [B, cq, H, D]; m_row [nk, B, cq, ck]

    @jax.checkpoint
    def kv_step(carry, xs):
      acc, row_max, row_sum = carry  # [B,H,cq,Dv], [B,H,cq], [B,H,cq]
      ki, k_blk, v_blk, m_blk = xs
      logits = jnp.einsum('bthd,bshd->bhts', q_blk, k_blk) * scale
      logits = jnp.where(m_blk[:, None], logits, jnp.asarray(neg, logits.dtype)).astype(acc_dtype)
      new_max = jnp.maximum(row_max, logits.max(-1))
      correction = jnp.exp(row_max - new_max)
      p = jnp.exp(logits - new_max[..., None])
      row_sum = row_sum * correction + p.sum(-1)
      if use_dropout:
        key = jax.random.fold_in(jax.random.fold_in(base_key, qi), ki)
        keep = jax.random.bernoulli(key, 1.0 - dropout_prob, p.shape)
        p = jnp.where(keep, p / (1.0 - dropout_prob), 0.0)
      acc = acc * correction[..., None] + jnp.einsum('bhts,bshd->bhtd', p.astype(v_blk.dtype), v_blk).astype(acc_dtype)
      return (acc, new_max, row_sum), None

    init = (jnp.zeros((batch, num_heads, q_chunk, v_head), acc_dtype),
            jnp.full((batch, num_heads, q_chunk), -jnp.inf, acc_dtype),
            jnp.zeros((batch, num_heads, q_chunk), acc_dtype))
    (acc, _, row_sum), _ = jax.lax.scan(kv_step, init, (jnp.arange(nk), k_blocks, v_blocks, m_row))
    out = (acc / row_sum[..., None]).astype(v.dtype)  # [B, H, cq, Dv]
    return out.transpose(0, 2, 1, 3)  # [B, cq, H, Dv]

  out = jax.lax.map(one_query_block, (jnp.arange(nq), q_blocks, m_blocks))  # [nq, B, cq, H, Dv]
  out = out.swapaxes(0, 1).reshape(batch, nq * q_chunk, num_heads * v_head)[:, :num_q]
  if attention_mask is not None:
    all_masked = jnp.all(~mask, axis=2, keepdims=True)
    out = jnp.where(all_masked, jnp.zeros_like(out), out)
  return out


def linear(num_channels: int, *, with_bias: bool = True, init_scale: float = 1.0,
           name: Optional[str] = None) -> hk.Linear:
  """The reference's `conv_1d`: a per-position linear layer."""
  return hk.Linear(num_channels, with_bias=with_bias,
                   w_init=hk.initializers.VarianceScaling(init_scale), name=name)


def layer_norm(eps: float = DEFAULT_LAYER_NORM_EPS, name: Optional[str] = None) -> hk.LayerNorm:
  return hk.LayerNorm(axis=-1, create_scale=True, create_offset=True, eps=eps, name=name)


class MultiHeadAttention(hk.Module):
  """Multi-head attention with q/k/v/output projections (`linear`..`linear_3`)."""

  def __init__(self, *, num_heads: int = 8, init_scale: float = 1.0, with_final_bias: bool = True,
               final_init_scale_multiplier: float = 1.0, dropout_prob: float = 0.0,
               qk_channels: Optional[int] = None, v_channels: Optional[int] = None,
               output_channels: Optional[int] = None, chunk_size: int = 0,
               name: str = 'attention'):
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

  def __call__(self, inputs_q: jax.Array, inputs_kv: jax.Array, *, is_training: bool = False,
               attention_mask: Optional[jax.Array] = None) -> jax.Array:
    """inputs_q [B, T, Cq], inputs_kv [B, S, Ckv] -> [B, T, output_channels]."""
    qk_channels = self._qk_channels or inputs_q.shape[-1]
    v_channels = self._v_channels or qk_channels
    output_channels = self._output_channels or v_channels
    for what, channels in (('qk_channels', qk_channels), ('v_channels', v_channels)):
      if channels % self._num_heads:
        raise ValueError(f'{self.module_name}: {what}={channels} is not divisible by '
                         f'num_heads={self._num_heads}')
    q = linear(qk_channels, init_scale=self._init_scale)(inputs_q)
    k = linear(qk_channels, init_scale=self._init_scale)(inputs_kv)
    v = linear(v_channels, init_scale=self._init_scale)(inputs_kv)
    batch, num_q, _ = q.shape
    num_kv = k.shape[1]
    h = self._num_heads
    q = q.reshape(batch, num_q, h, qk_channels // h)
    k = k.reshape(batch, num_kv, h, qk_channels // h)
    v = v.reshape(batch, num_kv, h, v_channels // h)
    dropout = self._dropout_prob if is_training else 0.0
    if self._chunk_size:
      out = attend_chunked(q, k, v, chunk_size=self._chunk_size, dropout_prob=dropout,
                           attention_mask=attention_mask)
    else:
      out = attend(q, k, v, dropout_prob=dropout, attention_mask=attention_mask)
    return linear(output_channels, with_bias=self._with_final_bias,
                  init_scale=self._final_init_scale)(out)


class MLP(hk.Module):
  """Dense block: Linear(widening * C) -> GELU (tanh approx.) -> Linear(C)."""

  def __init__(self, *, widening_factor: int = 4, dropout_prob: float = 0.0,
               init_scale: float = 1.0, gelu_approximate: bool = True, name: str = 'mlp'):
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

  def __init__(self, *, widening_factor: int = 4, dropout_prob: float = 0.0,
               dropout_attn_prob: float = 0.0, num_heads: int = 8, att_init_scale: float = 1.0,
               dense_init_scale: float = 1.0, qk_channels: Optional[int] = None,
               v_channels: Optional[int] = None, layer_norm_eps: float = DEFAULT_LAYER_NORM_EPS,
               chunk_size: int = 0, gelu_approximate: bool = True, name: Optional[str] = None):
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

  def __call__(self, inputs: jax.Array, *, is_training: bool,
               attention_mask: Optional[jax.Array] = None) -> jax.Array:
    """inputs [B, N, D] -> [B, N, D]."""
    x = inputs
    normed = layer_norm(self._eps)(inputs)
    attn = MultiHeadAttention(
        num_heads=self._num_heads, init_scale=self._att_init_scale,
        qk_channels=self._qk_channels, v_channels=self._v_channels,
        output_channels=inputs.shape[-1],
        dropout_prob=self._dropout_attn_prob, chunk_size=self._chunk_size)(
            normed, normed, is_training=is_training, attention_mask=attention_mask)
    x = x + _dropout(attn, self._dropout_prob, is_training)
    x = x + MLP(widening_factor=self._widening_factor, dropout_prob=self._dropout_prob,
                init_scale=self._dense_init_scale, gelu_approximate=self._gelu_approximate)(
                    layer_norm(self._eps)(x), is_training=is_training)
    return x


class CrossAttention(hk.Module):
  """Pre-LayerNorm cross-attention: queries attend to a (long) key/value array.

  `shape_for_attn` picks the q/k channel count like the reference: 'kv' uses
  the key/value input's channels (the Perceiver paper's choice: 261 on
  ImageNet), 'q' the query's. Explicit `qk_channels`/`v_channels` override it.
  """

  def __init__(self, *, widening_factor: int = 1, dropout_prob: float = 0.0,
               dropout_attn_prob: float = 0.0, num_heads: int = 8, att_init_scale: float = 1.0,
               dense_init_scale: float = 1.0, shape_for_attn: str = 'kv',
               use_query_residual: bool = True, qk_channels: Optional[int] = None,
               v_channels: Optional[int] = None, layer_norm_eps: float = DEFAULT_LAYER_NORM_EPS,
               chunk_size: int = 0, gelu_approximate: bool = True, name: Optional[str] = None):
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

  def __call__(self, inputs_q: jax.Array, inputs_kv: jax.Array, *, is_training: bool,
               attention_mask: Optional[jax.Array] = None) -> jax.Array:
    """inputs_q [B, N, D], inputs_kv [B, M, C] -> [B, N, D]."""
    if inputs_q.ndim != 3 or inputs_kv.ndim != 3:
      raise ValueError(f'{self.module_name}: expected [B, N, D] queries and [B, M, C] inputs, '
                       f'got {inputs_q.shape} and {inputs_kv.shape}')
    if inputs_q.shape[0] != inputs_kv.shape[0]:
      raise ValueError(f'{self.module_name}: batch sizes differ: queries {inputs_q.shape[0]}, '
                       f'inputs {inputs_kv.shape[0]}')
    output_channels = inputs_q.shape[-1]
    qk_channels = inputs_q.shape[-1] if self._shape_for_attn == 'q' else inputs_kv.shape[-1]
    if self._qk_channels is not None:
      qk_channels = self._qk_channels
    attn = MultiHeadAttention(
        num_heads=self._num_heads, init_scale=self._att_init_scale,
        dropout_prob=self._dropout_attn_prob, qk_channels=qk_channels,
        v_channels=self._v_channels, output_channels=output_channels,
        chunk_size=self._chunk_size)(
            layer_norm(self._eps)(inputs_q), layer_norm(self._eps)(inputs_kv),
            is_training=is_training, attention_mask=attention_mask)
    attn = _dropout(attn, self._dropout_prob, is_training)
    x = inputs_q + attn if self._use_query_residual else attn
    x = x + MLP(widening_factor=self._widening_factor, dropout_prob=self._dropout_prob,
                init_scale=self._dense_init_scale, gelu_approximate=self._gelu_approximate)(
                    layer_norm(self._eps)(x), is_training=is_training)
    return x
