"""The code paths a GPU user hits, checked on the CPU.

- `attend` picks cuDNN's fused attention (jax.nn.dot_product_attention) only
  where the kernel can run it; the fused call (run here with XLA's
  implementation, the same function minus the kernel) equals the plain path.
- The runner's train step under jax.jit on a 4-device CPU mesh: donated
  state, sharded batch and parameters, and no host transfer inside the step.
"""

import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perceiver import attention
from perceiver import models

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _qkv(dtype=jnp.float32, heads=4, head=16, t=12, s=20, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), 3)
  q = jax.random.normal(keys[0], (2, t, heads, head), dtype)
  k = jax.random.normal(keys[1], (2, s, heads, head), dtype)
  v = jax.random.normal(keys[2], (2, s, heads, head), dtype)
  return q, k, v


def test_cudnn_selected_only_where_the_kernel_runs():
  select = functools.partial(attention.fused_attention_implementation, backend='gpu')
  q, k, v = _qkv(jnp.bfloat16, head=64)
  assert select(q, k, v) == 'cudnn'
  assert select(*_qkv(jnp.float16, head=128)) == 'cudnn'
  # Not on CPU/TPU, whatever the shapes.
  assert attention.fused_attention_implementation(q, k, v, backend='cpu') is None
  assert attention.fused_attention_implementation(q, k, v, backend='tpu') is None
  assert jax.default_backend() != 'cpu' or attention.fused_attention_implementation(q, k, v) is None
  # float32, dropout, masks, head widths the kernel rejects: plain path.
  assert select(*_qkv(jnp.float32, head=64)) is None
  assert select(q, k, v, dropout_prob=0.1) is None
  assert select(q, k, v, attention_mask=jnp.ones((2, 12, 20), bool)) is None
  assert select(*_qkv(jnp.bfloat16, heads=1, head=261)) is None  # The Perceiver's cross-attend.
  assert select(*_qkv(jnp.bfloat16, head=12)) is None
  assert select(*_qkv(jnp.bfloat16, head=256)) is None
  assert select(q, k, v[..., :32]) is None  # Values narrower than keys.


@pytest.mark.parametrize('masked', [False, True])
def test_fused_xla_attention_equals_plain(masked):
  q, k, v = _qkv()
  mask = None
  if masked:
    mask = jax.random.bernoulli(jax.random.PRNGKey(3), 0.7, (2, 12, 20))
    mask = mask.at[0, 5].set(False)  # A fully masked query row: zeros.
  plain = lambda q, k, v: attention.attend(q, k, v, attention_mask=mask, implementation='plain')
  fused = lambda q, k, v: attention.attend(q, k, v, attention_mask=mask, implementation='xla')
  np.testing.assert_allclose(fused(q, k, v), plain(q, k, v), atol=2e-6, rtol=1e-5)
  if masked:
    np.testing.assert_array_equal(fused(q, k, v)[0, 5], 0.0)
  w = jax.random.normal(jax.random.PRNGKey(4), (2, 12, 64))
  loss = lambda f: lambda *a: jnp.sum(w * jnp.tanh(f(*a)))
  g_plain = jax.grad(loss(plain), argnums=(0, 1, 2))(q, k, v)
  g_fused = jax.grad(loss(fused), argnums=(0, 1, 2))(q, k, v)
  for a, b in zip(g_fused, g_plain):
    np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


def test_fused_attention_rejects_what_it_cannot_do():
  q, k, v = _qkv()
  with pytest.raises(ValueError, match='dropout'):
    attention.attend(q, k, v, dropout_prob=0.1, implementation='xla')
  with pytest.raises(ValueError, match='one shape'):
    attention.attend(q, k, v[..., :8], implementation='xla')
  with pytest.raises(ValueError, match="'plain', 'onednn_bf16', 'xla' or 'cudnn'"):
    attention.attend(q, k, v, implementation='flash')


def _io_config():
  return dict(
    name='perceiver_io',
    compute_dtype='bfloat16',
    input=dict(modality='image', num_bands=4, max_resolution=(8, 8)),
    encoder=dict(
      num_latents=16,
      latent_channels=64,
      num_blocks=2,
      num_self_attends_per_block=1,
      num_cross_attends=1,
      cross_attend_placement='start',
      num_self_attend_heads=4,
    ),
    decoder=dict(num_classes=10),
  )


def test_model_on_gpu_routes_self_attends_to_the_fused_kernel(monkeypatch):
  """A bf16 model as on a GPU: the 16-wide self-attend heads and the decoder's
  64-wide query go to the fused kernel (here XLA's implementation of it), the
  1-head 21-wide cross-attend stays plain, and the logits equal the all-plain
  model's."""
  net = models.build_model(_io_config())
  image = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
  params, state = net.init(jax.random.PRNGKey(1), {'image': image}, is_training=False)
  forward = lambda: net.apply(params, state, None, {'image': image}, is_training=False)[0]
  plain_logits = forward()  # On this CPU: every call takes the plain path.

  real = attention.fused_attention_implementation
  calls = []

  def as_on_gpu(q, k, v, **kw):
    impl = real(q, k, v, backend='gpu', **kw)
    calls.append((q.shape[-1], impl))
    return 'xla' if impl == 'cudnn' else impl

  monkeypatch.setattr(attention, 'fused_attention_implementation', as_on_gpu)
  gpu_logits = forward()
  assert (16, 'cudnn') in calls  # Self-attends: 4 heads of 16.
  assert (64, 'cudnn') in calls  # The decoder's 1-head query into the 64-wide latents.
  assert {impl for head, impl in calls if head == 21} == {None}  # 21-wide cross-attend.
  np.testing.assert_allclose(
    np.asarray(gpu_logits, np.float32), np.asarray(plain_logits, np.float32), atol=3e-2, rtol=3e-2
  )


_MESH_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {repo!r})
    import jax, jax.numpy as jnp
    import ml_collections
    from configs import imagenet
    from perceiver import models
    from perceiver.train import optim, parallel, trainer

    assert len(jax.devices()) == 4, jax.devices()
    cfg = imagenet.smoke()
    cfg.parallel.param_sharding = 'fsdp'
    cfg.parallel.fsdp_min_size = 64
    net = models.build_model(cfg.model)
    schedule = optim.make_schedule(cfg.optimizer.schedule, steps_per_epoch=10, total_steps=100)
    tx = optim.make_optimizer(cfg.optimizer, schedule)
    mesh = parallel.make_mesh()
    images = jnp.zeros((8, 16, 16, 3)); labels = jnp.zeros((8,), jnp.int32)
    params, mstate = net.init(jax.random.PRNGKey(0), {{'image': images[:1]}}, is_training=True)
    state = trainer.TrainState(jnp.zeros([], jnp.int32), params, mstate, tx.init(params))
    shardings = parallel.state_shardings(state, mesh, cfg.parallel)
    state = jax.device_put(state, shardings)
    batch = jax.device_put({{'image': images, 'label': labels}}, parallel.batch_sharding(mesh))
    rng = jax.device_put(jax.random.PRNGKey(1), parallel.replicated(mesh))
    step = jax.jit(trainer.make_train_step(net, tx, schedule, cfg, mesh),
                   in_shardings=(shardings, parallel.batch_sharding(mesh), parallel.replicated(mesh)),
                   out_shardings=(shardings, parallel.replicated(mesh)), donate_argnums=0)
    compiled = step.lower(state, batch, rng).compile()
    old_leaves = jax.tree.leaves(state)
    # Everything is on the devices already: any host<->device copy inside
    # the step (a callback, a stray numpy value) would raise here.
    with jax.transfer_guard('disallow'):
      new_state, metrics = step(state, batch, rng)
      new_state, metrics = step(new_state, batch, rng)
    loss = float(metrics['loss'])
    sharded = [str(x.sharding.spec) for x in jax.tree.leaves(new_state.params)
               if x.sharding.spec != jax.sharding.PartitionSpec()]
    print(json.dumps(dict(
        donated_deleted=all(x.is_deleted() for x in old_leaves),
        alias_bytes=int(compiled.memory_analysis().alias_size_in_bytes),
        sharded_params=len(sharded), num_params=len(jax.tree.leaves(new_state.params)),
        batch_devices=len(batch['image'].sharding.device_set),
        loss_finite=bool(jnp.isfinite(loss)), step=int(new_state.step))))
""")


def test_train_step_on_a_cpu_mesh_donates_shards_and_stays_on_device():
  flags = os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=4'
  env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS='cpu')
  proc = subprocess.run(
    [sys.executable, '-c', _MESH_SCRIPT.format(repo=REPO)],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    cwd=REPO,
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  import json  # pylint: disable=g-import-not-at-top

  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out['donated_deleted'] and out['alias_bytes'] > 0
  assert out['batch_devices'] == 4
  assert 0 < out['sharded_params'] <= out['num_params']
  assert out['loss_finite'] and out['step'] == 2
