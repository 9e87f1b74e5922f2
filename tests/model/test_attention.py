"""Attention numerics: masking conventions and chunked == plain."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
from jax import test_util as jtu
import pytest

from perceiver import attention


def _qkv(rng, b=2, t=7, s=13, h=2, d=4, dv=3):
  k1, k2, k3 = jax.random.split(rng, 3)
  return (
    jax.random.normal(k1, (b, t, h, d)),
    jax.random.normal(k2, (b, s, h, d)),
    jax.random.normal(k3, (b, s, h, dv)),
  )


def test_attend_matches_softmax_formula():
  q, k, v = _qkv(jax.random.PRNGKey(0))
  out = attention.attend(q, k, v)
  logits = np.einsum('bthd,bshd->bhts', q, k) / np.sqrt(q.shape[-1])
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  ref = np.einsum('bhts,bshd->bthd', w, v).reshape(2, 7, -1)
  np.testing.assert_allclose(out, ref, atol=1e-5)


def test_masked_keys_do_not_matter_and_fully_masked_rows_are_zero():
  q, k, v = _qkv(jax.random.PRNGKey(1))
  mask = np.ones((2, 7, 13), bool)
  mask[:, :, 9:] = False  # keys 9.. masked everywhere
  mask[1, 3, :] = False  # one query row sees nothing
  out = attention.attend(q, k, v, attention_mask=jnp.asarray(mask))
  k2 = k.at[:, 9:].set(100.0)
  v2 = v.at[:, 9:].set(-50.0)
  out2 = attention.attend(q, k2, v2, attention_mask=jnp.asarray(mask))
  np.testing.assert_allclose(out, out2, atol=1e-6)
  assert np.all(np.asarray(out)[1, 3] == 0)
  assert np.any(np.asarray(out)[0, 3] != 0)


@pytest.mark.parametrize('chunk', [1, 4, 5, 13, 64])
@pytest.mark.parametrize('masked', [False, True])
def test_chunked_equals_plain(chunk, masked):
  q, k, v = _qkv(jax.random.PRNGKey(2))
  mask = None
  if masked:
    m = np.random.RandomState(0).rand(2, 7, 13) > 0.4
    m[0, 2, :] = False
    mask = jnp.asarray(m)
  plain = attention.attend(q, k, v, attention_mask=mask)
  chunked = attention.attend_chunked(q, k, v, chunk_size=chunk, attention_mask=mask)
  np.testing.assert_allclose(chunked, plain, atol=2e-6, rtol=1e-5)


def test_chunked_gradients_equal_plain():
  q, k, v = _qkv(jax.random.PRNGKey(3))
  f_plain = lambda q, k, v: jnp.sum(jnp.sin(attention.attend(q, k, v)))
  f_chunk = lambda q, k, v: jnp.sum(jnp.sin(attention.attend_chunked(q, k, v, chunk_size=4)))
  g1 = jax.grad(f_plain, argnums=(0, 1, 2))(q, k, v)
  g2 = jax.jit(jax.grad(f_chunk, argnums=(0, 1, 2)))(q, k, v)
  for a, b in zip(g1, g2):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


def test_bad_shapes_raise_clear_errors():
  q, k, v = _qkv(jax.random.PRNGKey(4))
  with pytest.raises(ValueError, match=r'\[B, T, H, D\]'):
    attention.attend(q[0], k, v)
  with pytest.raises(ValueError, match='attention mask'):
    attention.attend(q, k, v, attention_mask=jnp.ones((2, 7, 12), bool))


def test_heads_must_divide_channels():
  def f(x):
    return attention.MultiHeadAttention(num_heads=3)(x, x)

  net = hk.transform(f)
  with pytest.raises(ValueError, match='not divisible by num_heads=3'):
    net.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 16)))


def test_cross_attention_qk_channels_follow_kv_like_the_paper():
  def f(q, kv):
    return attention.CrossAttention(num_heads=1, shape_for_attn='kv')(q, kv, is_training=False)

  params = hk.transform(f).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 32)), jnp.zeros((1, 9, 261)))
  assert params['cross_attention/attention/linear']['w'].shape == (32, 261)
  assert params['cross_attention/attention/linear_3']['w'].shape == (261, 32)


def _random_mask(shape, seed=0):
  m = np.random.RandomState(seed).rand(*shape) > 0.4
  m[0, 2, :] = False  # One query row sees nothing.
  return jnp.asarray(m)


@pytest.mark.parametrize('chunk', [1, 3, 4, 13, 64])
def test_chunked_gradients_equal_plain_with_masks_and_padding(chunk):
  # 7 queries and 13 keys: most chunk sizes pad both.
  q, k, v = _qkv(jax.random.PRNGKey(5))
  mask = _random_mask((2, 7, 13))
  w = jax.random.normal(jax.random.PRNGKey(6), (2, 7, 6))
  f_plain = lambda q, k, v: jnp.sum(w * jnp.tanh(attention.attend(q, k, v, attention_mask=mask)))
  f_chunk = lambda q, k, v: jnp.sum(
    w * jnp.tanh(attention.attend_chunked(q, k, v, chunk_size=chunk, attention_mask=mask))
  )
  g1 = jax.grad(f_plain, argnums=(0, 1, 2))(q, k, v)
  g2 = jax.jit(jax.grad(f_chunk, argnums=(0, 1, 2)))(q, k, v)
  for a, b in zip(g1, g2):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
  # The fully masked query row gets no gradient.
  assert np.all(np.asarray(g2[0])[0, 2] == 0)


def test_chunked_saves_only_output_and_logsumexp():
  # The backward pass must not keep any [T, S]-sized residual.
  q, k, v = _qkv(jax.random.PRNGKey(7), t=16, s=64)
  f = lambda q, k, v: attention.attend_chunked(q, k, v, chunk_size=8).sum()
  _, vjp = jax.vjp(f, q, k, v)
  sizes = [x.size for x in jax.tree.leaves(vjp)]
  assert max(sizes) <= max(q.size, k.size, v.size)
  assert not any(x.shape[-2:] == (16, 64) for x in jax.tree.leaves(vjp))


@pytest.mark.slow  # Moved out of the default run (its time budget); .ci/run runs it.
def test_chunked_dropout_gradients_match_finite_differences():
  q, k, v = _qkv(jax.random.PRNGKey(8), t=5, s=9)

  def f(q, k, v):
    net = hk.transform(lambda q, k, v: attention.attend_chunked(q, k, v, chunk_size=4, dropout_prob=0.3))
    return jnp.sum(jnp.sin(net.apply({}, jax.random.PRNGKey(9), q, k, v)))

  # Same key -> same dropout masks, forward and backward.
  assert f(q, k, v) == f(q, k, v)
  jtu.check_grads(f, (q, k, v), order=1, modes=['rev'], atol=2e-2, rtol=2e-2)


def test_chunked_bfloat16_tracks_float32():
  q, k, v = _qkv(jax.random.PRNGKey(10), t=16, s=40)
  mask = _random_mask((2, 16, 40))
  ref = attention.attend(q, k, v, attention_mask=mask)
  f = jax.jit(lambda q, k, v: attention.attend_chunked(q, k, v, chunk_size=8, attention_mask=mask))
  out = f(*(x.astype(jnp.bfloat16) for x in (q, k, v)))
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(out.astype(jnp.float32), ref, atol=3e-2, rtol=3e-2)
  grads = jax.grad(lambda q, k, v: f(q, k, v).astype(jnp.float32).sum(), argnums=(0, 1, 2))(
    *(x.astype(jnp.bfloat16) for x in (q, k, v))
  )
  assert all(g.dtype == jnp.bfloat16 and np.all(np.isfinite(g.astype(jnp.float32))) for g in grads)


@pytest.mark.parametrize('chunk', [4, 6])
def test_cross_attention_chunked_grads_equal_plain(chunk):
  # Gradients w.r.t. every parameter and both inputs, through jit.
  def make(chunk_size):
    return hk.transform(
      lambda z, x, m: attention.CrossAttention(num_heads=2, chunk_size=chunk_size)(
        z, x, is_training=False, attention_mask=m
      )
    )

  z = jax.random.normal(jax.random.PRNGKey(11), (2, 5, 8))
  x = jax.random.normal(jax.random.PRNGKey(12), (2, 22, 6))
  mask = _random_mask((2, 5, 22), seed=1)
  plain, chunked = make(0), make(chunk)
  params = plain.init(jax.random.PRNGKey(13), z, x, mask)
  loss = lambda net: jax.jit(
    jax.grad(lambda p, z, x: jnp.sum(jnp.sin(net.apply(p, None, z, x, mask))), argnums=(0, 1, 2))
  )
  g_plain = loss(plain)(params, z, x)
  g_chunk = loss(chunked)(params, z, x)
  flat_plain, flat_chunk = jax.tree.leaves(g_plain), jax.tree.leaves(g_chunk)
  assert len(flat_plain) == len(flat_chunk) > 10
  for a, b in zip(flat_plain, flat_chunk):
    np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


def test_chunked_cross_attention_has_the_plain_parameters_and_values():
  # Fused LayerNorm + key/value projections: same names, shapes, initial values.
  def make(chunk_size):
    return hk.transform(
      lambda z, x: attention.CrossAttention(num_heads=1, chunk_size=chunk_size)(z, x, is_training=False)
    )

  z = jax.random.normal(jax.random.PRNGKey(14), (2, 6, 8))
  x = jax.random.normal(jax.random.PRNGKey(15), (2, 30, 5)) * 3 + 1
  p_plain = make(0).init(jax.random.PRNGKey(16), z, x)
  p_chunk = make(8).init(jax.random.PRNGKey(16), z, x)
  assert jax.tree.map(np.shape, p_plain) == jax.tree.map(np.shape, p_chunk)
  for a, b in zip(jax.tree.leaves(p_plain), jax.tree.leaves(p_chunk)):
    np.testing.assert_array_equal(a, b)
  p = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.PRNGKey(17), a.shape), p_plain)
  np.testing.assert_allclose(make(8).apply(p, None, z, x), make(0).apply(p, None, z, x), atol=2e-5, rtol=1e-5)


def test_fused_cross_attention_keeps_no_input_sized_activations():
  # With chunking, the backward pass holds no [B, M, C]-sized normed/key/value
  # copies: the saved residuals are the raw inputs and the small tensors.
  m, c = 256, 12
  net = hk.transform(lambda z, x: attention.CrossAttention(num_heads=1, chunk_size=32)(z, x, is_training=False))
  z = jnp.ones((1, 4, 8))
  x = jax.random.normal(jax.random.PRNGKey(18), (1, m, c))
  params = net.init(jax.random.PRNGKey(19), z, x)
  _, vjp = jax.vjp(lambda p: net.apply(p, None, z, x), params)
  big = [leaf for leaf in jax.tree.leaves(vjp) if leaf.size >= m * c]
  assert len(big) == 1 and big[0].shape == (1, m, c), [leaf.shape for leaf in big]


def _split_inputs(seed, b=3, s=20, cv=3, cp=9, offset=0.0):
  kv, kp = jax.random.split(jax.random.PRNGKey(seed))
  values = jax.random.normal(kv, (b, s, cv)) * 2 + offset  # [B, S, Cv]
  pos = jax.random.uniform(kp, (s, cp), minval=-1, maxval=1)  # [S, Cp]
  return attention.InputsWithPos(values, pos)


@pytest.mark.parametrize('chunk', [0, 8])
@pytest.mark.parametrize('offset', [0.0, 5.0])
def test_cross_attention_on_inputs_with_pos_equals_the_concatenated_array(chunk, offset):
  # Same parameters (names, shapes, initial values), outputs and gradients
  # w.r.t. every parameter as on concat([values, pos]), masked, through jit;
  # `offset` moves the LayerNorm mean away from 0 (the folded form subtracts it).
  net = hk.transform(
    lambda z, x, m: attention.CrossAttention(num_heads=1, chunk_size=chunk)(z, x, is_training=False, attention_mask=m)
  )
  z = jax.random.normal(jax.random.PRNGKey(21), (3, 5, 8))
  split = _split_inputs(22, offset=offset)
  full = split.concat()
  assert full.shape == split.shape == (3, 20, 12) and split.ndim == 3 and split.dtype == full.dtype
  mask = _random_mask((3, 5, 20), seed=2)
  p_full = net.init(jax.random.PRNGKey(23), z, full, mask)
  p_split = net.init(jax.random.PRNGKey(23), z, split, mask)
  assert jax.tree.map(np.shape, p_full) == jax.tree.map(np.shape, p_split)
  for a, b in zip(jax.tree.leaves(p_full), jax.tree.leaves(p_split)):
    np.testing.assert_array_equal(a, b)
  p = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.PRNGKey(24), a.shape), p_full)
  np.testing.assert_allclose(
    net.apply(p, None, z, split, mask), net.apply(p, None, z, full, mask), atol=2e-5, rtol=1e-5
  )
  loss = lambda x: jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(net.apply(p, None, z, x, mask)))))(p)
  g_full, g_split = jax.tree.leaves(loss(full)), jax.tree.leaves(loss(split))
  assert len(g_full) == len(g_split) > 10
  for a, b in zip(g_full, g_split):
    np.testing.assert_allclose(b, a, atol=5e-5, rtol=1e-4)


def test_inputs_with_pos_project_the_positions_once_per_batch():
  # The point of InputsWithPos: the key/value projections' matmul FLOPs stop
  # growing with the batch for the position part (9 of 12 channels here).
  from perceiver_tools import perf

  net = hk.transform(lambda z, x: attention.CrossAttention(num_heads=1)(z, x, is_training=False))

  def flops(batch, split):
    z = jnp.zeros((batch, 5, 8))
    x = _split_inputs(25, b=batch)
    x = x if split else x.concat()
    p = net.init(jax.random.PRNGKey(0), z, x)
    return perf.matmul_flops(lambda p: net.apply(p, None, z, x), p).matmul

  kv_full = 2 * 2 * 20 * 12 * 12  # k and v: [B*S, 12] x [12, 12] per example
  assert flops(4, False) - flops(1, False) == 3 * (kv_full + _attention_rest_flops())
  # Split: only the values' 3 channels grow with the batch.
  assert flops(4, True) - flops(1, True) == 3 * (2 * 2 * 20 * 3 * 12 + _attention_rest_flops())


def _attention_rest_flops(t=5, s=20, cq=8, ck=12):
  """One example's matmul FLOPs of a 1-head cross-attend besides the k/v
  projections: q projection, logits, values, output projection, MLP."""
  return 2 * (t * cq * ck + t * s * ck + t * s * ck + t * ck * cq + 2 * t * cq * cq)


def test_kv_norm_without_chunks_needs_inputs_with_pos():
  mha = hk.transform(
    lambda q, kv: attention.MultiHeadAttention(num_heads=1)(q, kv, kv_norm=(jnp.ones(6), jnp.zeros(6), 1e-5))
  )
  with pytest.raises(ValueError, match='kv_norm needs chunk_size > 0 or InputsWithPos'):
    mha.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 4)), jnp.zeros((1, 3, 6)))
