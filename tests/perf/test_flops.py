"""The FLOP counter behind MFU: XLA's convention, loops, and how model cost
scales with the number of inputs M (structure, no timing)."""

import jax
import jax.numpy as jnp
import pytest

from perceiver import models
from perceiver_tools import perf


def _xla_flops(fn, *args) -> float:
  return perf.xla_cost(jax.jit(fn).lower(*args).compile())['xla_flops']


def test_dot_matches_xla_two_flops_per_multiply_add():
  a = jnp.ones((3, 40, 24))
  b = jnp.ones((3, 24, 56))
  fn = lambda x, y: jnp.einsum('bij,bjk->bik', x, y)
  assert perf.matmul_flops(fn, a, b).matmul == 2 * 3 * 40 * 24 * 56
  assert perf.matmul_flops(fn, a, b).matmul == _xla_flops(fn, a, b)


def test_conv_matches_xla():
  # VALID padding: XLA skips taps that land on SAME padding, we do not.
  x = jnp.ones((2, 16, 16, 3))
  w = jnp.ones((5, 5, 3, 8))
  fn = lambda x, w: jax.lax.conv_general_dilated(x, w, (2, 2), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  assert perf.matmul_flops(fn, x, w).matmul == 2 * (2 * 6 * 6 * 8) * (5 * 5 * 3)
  assert perf.matmul_flops(fn, x, w).matmul == _xla_flops(fn, x, w)


def test_loops_count_every_iteration_and_backward_pass():
  x = jnp.ones((32, 32))
  one = 2 * 32**3
  loop = lambda a, b: jax.lax.fori_loop(0, 7, lambda i, a: jnp.tanh(a @ b), a)
  assert perf.matmul_flops(loop, x, x).matmul == 7 * one
  # Gradient w.r.t. both operands: forward + two matmuls per iteration.
  grad = jax.grad(lambda a, b: loop(a, b).sum(), argnums=(0, 1))
  assert perf.matmul_flops(grad, x, x).matmul == 3 * 7 * one
  # Rematerialised body: its forward runs again in the backward pass.
  remat = jax.grad(lambda a, b: jax.checkpoint(lambda a: jnp.tanh(a @ b))(a).sum())
  assert perf.matmul_flops(remat, x, x).matmul == 3 * one


def _model_config(num_blocks=2, chunk=0, project_positions_once=True):
  return dict(
    name='perceiver_io',
    input=dict(modality='image', num_bands=4, max_resolution=(32, 32)),
    encoder=dict(
      num_latents=16,
      latent_channels=32,
      num_blocks=num_blocks,
      num_self_attends_per_block=1,
      num_cross_attends=1,
      cross_attend_placement='start',
      num_self_attend_heads=2,
      attention_chunk_size=chunk,
      project_positions_once=project_positions_once,
    ),
    decoder=dict(num_classes=7),
  )


def _forward_flops(cfg, side, batch=2):
  net = models.build_model(cfg)
  inputs = {'image': jax.ShapeDtypeStruct((batch, side, side, 3), jnp.float32)}
  # Shapes only: nothing is computed or compiled.
  params, state = jax.eval_shape(lambda x: net.init(jax.random.PRNGKey(0), x, is_training=False), inputs)
  fn = lambda p, s, x: net.apply(p, s, None, x, is_training=False)[0]
  return perf.matmul_flops(fn, params, state, inputs).matmul


def test_encoder_cost_is_affine_in_m_and_latent_cost_is_constant():
  sides = (8, 16, 32)  # M = 64, 256, 1024: each 4x the last.
  full = [_forward_flops(_model_config(num_blocks=4), s) for s in sides]
  cross_only = [_forward_flops(_model_config(num_blocks=0), s) for s in sides]
  # Affine in M: equal increments per added input.
  assert full[2] - full[1] == 4 * (full[1] - full[0])
  # The latent Transformer does not depend on M at all...
  latent = [f - c for f, c in zip(full, cross_only)]
  assert latent[0] == latent[1] == latent[2] > 0
  # ...and the input-dependent part grows at most 4x for 4x the inputs.
  assert 3.0 < cross_only[2] / cross_only[1] <= 4.0
  # A shared latent block repeated twice as often costs exactly twice.
  twice = _forward_flops(_model_config(num_blocks=8), 16)
  assert twice - cross_only[1] == 2 * latent[1]


@pytest.mark.parametrize('chunk', [64, 100])
def test_chunked_attention_does_the_same_matmul_work(chunk):
  # 256 inputs: chunk 64 tiles them exactly; chunk 100 pads the keys to 300.
  # (The chunked cross-attend projects every example's position features,
  # like the array path.)
  plain = _forward_flops(_model_config(project_positions_once=False), 16)
  chunked = _forward_flops(_model_config(chunk=chunk), 16)
  if 256 % chunk == 0:
    assert chunked == plain
  else:
    assert plain < chunked < 1.2 * plain


def test_hlo_structure_counts_loops():
  x = jnp.ones((8, 8))
  text = jax.jit(lambda a: jax.lax.fori_loop(0, 5, lambda i, a: a @ a, a)).lower(x).compile().as_text()
  counts = perf.hlo_structure(text)
  assert counts['hlo_while_loops'] == 1
  assert counts['hlo_dots'] == 1


def test_projecting_positions_once_saves_the_position_part_per_extra_example():
  # The array path multiplies all C = 3 + 2 * (2 * 4 + 1) channels of every
  # input by the key and value weights; projected once, the
  # position part (all but the 3 pixel channels) is multiplied once.
  def kv_work(batch, once):
    return _forward_flops(_model_config(project_positions_once=once), 16, batch=batch)

  channels, positions, inputs = 3 + 2 * (2 * 4 + 1), 2 * (2 * 4 + 1), 256
  per_example_saving = 2 * 2 * inputs * positions * channels  # k and v: [M, P] x [P, C]
  folded_offsets = 2 * 2 * channels * channels  # k and v: LayerNorm offset [C] x [C, C], once
  for batch in (1, 2, 4):
    assert kv_work(batch, False) - kv_work(batch, True) == (batch - 1) * per_example_saving - folded_offsets
