"""perceiver/onednn.py and `model.cpu_matmul`: oneDNN's bf16 matmul as an XLA
custom call, its gradients, and the model option that routes linear layers
through it."""

import ctypes
import os

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perceiver import config as config_lib
from perceiver import models
from perceiver import onednn
from perceiver_configs import common


def _need_onednn():
  reason = onednn.unavailable_reason()
  if reason is not None:
    pytest.skip(f'oneDNN matmul unavailable: {reason.splitlines()[0]}')


def _operands(m=48, k=40, n=24):
  x = jax.random.normal(jax.random.PRNGKey(0), (m, k)).astype(jnp.bfloat16)
  w = jax.random.normal(jax.random.PRNGKey(1), (k, n)).astype(jnp.bfloat16)
  return x, w


def test_matmul_equals_xla_dot_of_the_same_bf16_operands():
  _need_onednn()
  x, w = _operands()
  want = jnp.dot(x, w, preferred_element_type=jnp.float32)  # [M, N]
  got = jax.jit(lambda a, b: onednn.matmul(a, b, jnp.float32))(x, w)
  assert got.dtype == jnp.float32 and got.shape == (48, 24)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
  got_bf16 = jax.jit(onednn.matmul)(x, w)
  assert got_bf16.dtype == jnp.bfloat16
  np.testing.assert_allclose(got_bf16.astype(jnp.float32), want, rtol=1e-2, atol=1e-2)


def test_gradients_equal_xla_on_transposed_operands():
  """The backward pass reads g, w and x transposed in place (strides)."""
  _need_onednn()
  x, w = _operands()
  t = jax.random.normal(jax.random.PRNGKey(2), (48, 24))

  def loss(mm):
    return lambda a, b: jnp.sum(jnp.sin(mm(a, b)) * t)

  ours = jax.jit(jax.grad(loss(lambda a, b: onednn.matmul(a, b, jnp.float32)), (0, 1)))(x, w)
  xla = jax.jit(jax.grad(loss(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32)), (0, 1)))(x, w)
  for got, want in zip(ours, xla):
    assert got.dtype == want.dtype == jnp.bfloat16
    got, want = got.astype(jnp.float32), want.astype(jnp.float32)
    # Ours rounds the cotangent to bf16 before its matmuls: bf16-sized errors against the largest entry.
    assert float(jnp.max(jnp.abs(got - want))) <= 0.02 * float(jnp.max(jnp.abs(want)))


def test_attention_einsums_read_and_write_heads_in_place():
  _need_onednn()
  keys = jax.random.split(jax.random.PRNGKey(4), 3)
  q, k, v = (
    jax.random.normal(key, shape).astype(jnp.bfloat16)
    for key, shape in zip(keys, ((2, 5, 3, 8), (2, 7, 3, 8), (2, 7, 3, 4)))
  )
  logits = jax.jit(onednn.attention_logits)(q, k)  # [B, H, T, S]
  np.testing.assert_allclose(
    logits, jnp.einsum('bthd,bshd->bhts', q, k, preferred_element_type=jnp.float32), rtol=1e-5, atol=1e-5
  )
  w = jax.nn.softmax(logits).astype(jnp.bfloat16)
  out = jax.jit(onednn.attention_values, static_argnums=2)(w, v, jnp.float32)  # [B, T, H, Dv]
  np.testing.assert_allclose(
    out, jnp.einsum('bhts,bshd->bthd', w, v, preferred_element_type=jnp.float32), rtol=1e-5, atol=1e-5
  )

  def loss(logits_fn, values_fn):
    def f(q, k, v):
      p = jax.nn.softmax(logits_fn(q, k)).astype(jnp.bfloat16)
      return jnp.sum(jnp.sin(values_fn(p, v)))

    return jax.jit(jax.grad(f, (0, 1, 2)))

  ours = loss(onednn.attention_logits, lambda p, v: onednn.attention_values(p, v, jnp.float32))(q, k, v)
  xla = loss(
    lambda q, k: jnp.einsum('bthd,bshd->bhts', q, k, preferred_element_type=jnp.float32),
    lambda p, v: jnp.einsum('bhts,bshd->bthd', p, v, preferred_element_type=jnp.float32),
  )(q, k, v)
  for got, want in zip(ours, xla):
    assert got.shape == want.shape
    got, want = got.astype(jnp.float32), want.astype(jnp.float32)
    assert float(jnp.max(jnp.abs(got - want))) <= 0.02 * float(jnp.max(jnp.abs(want)))


def test_mismatched_operands_name_the_shapes():
  _need_onednn()
  x, w = _operands()
  with pytest.raises(ValueError, match='shapes do not multiply'):
    onednn.matmul(x, w.T)


def _tiny_model(**overrides):
  model = common.model(
    'perceiver_io',
    10,
    input=common.model_input(num_bands=4, max_resolution=(16, 16)),
    encoder=common.tiny_encoder(num_cross_attends=1, cross_attend_placement='start'),
    compute_dtype='float32',
  ).to_dict()
  return dict(model, **overrides)


def test_model_option_routes_every_linear_layer_through_onednn():
  _need_onednn()
  images = jax.random.normal(jax.random.PRNGKey(3), (2, 16, 16, 3))
  labels = jnp.array([1, 7])
  xla = models.build_model(_tiny_model())
  ours = models.build_model(_tiny_model(cpu_matmul='onednn_bf16'))
  params, state = xla.init(jax.random.PRNGKey(0), {'image': images}, is_training=True)
  params_ours, _ = ours.init(jax.random.PRNGKey(0), {'image': images}, is_training=True)
  # Same parameters (names, shapes, initial values): checkpoints are interchangeable.
  jax.tree.map(np.testing.assert_array_equal, params, params_ours)

  def loss(net):
    def f(p):
      logits, _ = net.apply(p, state, None, {'image': images}, is_training=True)
      return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1)), logits

    return jax.jit(jax.value_and_grad(f, has_aux=True))

  hlo = jax.jit(lambda p: ours.apply(p, state, None, {'image': images}, is_training=False)[0]).lower(params).as_text()
  calls = hlo.count('perceiver_onednn_matmul')
  num_linear = sum(1 for name in params if name.split('/')[-1].startswith('linear'))
  # Every linear layer, and two einsums per attention (the unchunked path).
  num_attention = sum(1 for name in params if name.endswith('attention/linear'))
  assert calls >= num_linear + 2 * num_attention and num_attention > 0, (calls, num_linear, num_attention)
  (l_x, logits_x), g_x = loss(xla)(params)
  (l_o, logits_o), g_o = loss(ours)(params)
  assert logits_o.dtype == jnp.float32
  # bf16 operands (8-bit mantissa) through a few layers: a few percent at most.
  np.testing.assert_allclose(logits_o, logits_x, rtol=0.05, atol=0.05)
  np.testing.assert_allclose(l_o, l_x, rtol=0.02)
  # The whole gradient, as one vector (some entries, e.g. key biases, are zero up to rounding).
  flat_x, flat_o = (jnp.concatenate([v.ravel() for v in jax.tree.leaves(g)]) for g in (g_x, g_o))
  assert float(jnp.linalg.norm(flat_o - flat_x)) <= 0.05 * float(jnp.linalg.norm(flat_x))


def test_model_option_is_checked_by_the_schema():
  with pytest.raises(config_lib.ModelConfigError, match='cpu_matmul'):
    models.build_model(_tiny_model(cpu_matmul='mkl'))


def test_other_backends_ignore_the_option():
  net = hk.transform_with_state(lambda x, *, is_training: x)
  assert models.with_cpu_matmul(net, 'onednn_bf16', backend='gpu') is net
  assert models.with_cpu_matmul(net, 'xla', backend='cpu') is net


def test_missing_wheel_is_a_one_line_error(monkeypatch):
  monkeypatch.setattr(onednn, 'library_path', lambda: None)
  onednn._register.cache_clear()
  try:
    with pytest.raises(onednn.OneDNNUnavailable, match='onednn-cpu-gomp') as e:
      models.build_model(_tiny_model(cpu_matmul='onednn_bf16'), backend='cpu')
    assert '\n' not in str(e.value)
  finally:
    monkeypatch.undo()
    onednn._register.cache_clear()


def test_a_cpu_without_avx512_is_named_as_the_reason():
  # oneDNN's bf16 matmul kernels need AVX-512 (or AMX): on an AVX2-only CPU
  # the option must fail up front with that reason, not at the first matmul.
  if onednn.library_path() is None:
    pytest.skip('onednn-cpu-gomp is not installed')
  with open('/proc/cpuinfo') as f:
    flags = set(f.read().split())
  reason = onednn.unavailable_reason()
  if 'avx512f' in flags:
    assert reason is None or 'CPU' not in reason, reason
  else:
    assert reason == 'oneDNN has no bfloat16 matmul for this CPU (its bf16 kernels need AVX-512 or AMX)'
    with pytest.raises(onednn.OneDNNUnavailable, match='this CPU'):
      models.build_model(_tiny_model(cpu_matmul='onednn_bf16'), backend='cpu')


def test_a_refused_matmul_frees_its_descriptors():
  # A shape oneDNN refuses is not cached, so each ask builds and must free
  # its memory descriptors (it leaked ~2.4 KB a call before). Reachable
  # where the bf16 probe is refused (AVX2-only CPUs): 20,000 probes.
  if onednn.library_path() is None:
    pytest.skip('onednn-cpu-gomp is not installed')
  handler = ctypes.cdll.LoadLibrary(onednn._build(onednn.library_path()))
  if handler.PerceiverOnednnBf16Supported():
    pytest.skip('oneDNN has a bf16 matmul for this CPU: nothing is refused')

  def rss_mib() -> float:
    with open('/proc/self/statm') as f:
      return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20

  before = rss_mib()
  for _ in range(20_000):
    assert handler.PerceiverOnednnBf16Supported() == 0
  assert rss_mib() - before < 8, 'refused matmuls leak memory'


def test_flop_count_includes_the_onednn_matmuls():
  """MFU's numerator (perceiver_tools.perf) counts the custom calls as the dots they replace."""
  _need_onednn()
  from perceiver_tools import perf  # pylint: disable=g-import-not-at-top

  x, w = _operands()

  def loss(mm):
    return jax.grad(lambda a, b: jnp.sum(mm(a, b)), (0, 1))

  ours = perf.matmul_flops(loss(lambda a, b: onednn.matmul(a, b, jnp.float32)), x, w).matmul
  xla = perf.matmul_flops(loss(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32)), x, w).matmul
  assert ours == xla == 3 * 2 * 48 * 40 * 24
