"""Attention numerics: masking conventions and chunked == plain."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perceiver import attention


def _qkv(rng, b=2, t=7, s=13, h=2, d=4, dv=3):
  k1, k2, k3 = jax.random.split(rng, 3)
  return (jax.random.normal(k1, (b, t, h, d)), jax.random.normal(k2, (b, s, h, d)),
          jax.random.normal(k3, (b, s, h, dv)))


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
  mask[:, :, 9:] = False      # keys 9.. masked everywhere
  mask[1, 3, :] = False       # one query row sees nothing
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
