"""The train step on 8 fake CPU devices equals the single-device step.

One subprocess (the device count is fixed when JAX starts) runs the same
three steps on: 1 device; 8 devices with replicated parameters; 8 devices
with FSDP-sharded parameters and 2 accumulated micro-batches per step (so
gradient accumulation is checked against the full batch too).
"""

import json
import math
import subprocess
import sys

import numpy as np

from . import helpers


_MULTI_DEVICE_SCRIPT = r"""
import os, json, sys
os.environ['XLA_FLAGS'] = os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh
from perceiver_configs import mnist as mnist_configs
from perceiver import models
from perceiver.data import mnist
from perceiver.train import optim, parallel, trainer

assert jax.device_count() == 8, jax.devices()
config = mnist_configs.get_config('smoke')
config.unlock()
config.train.batch_size = 16
config.optimizer.schedule.warmup_epochs = 0.0
config.optimizer.schedule.base_lr = 1e-2
config.parallel.fsdp_min_size = 64
net = models.build_model(config.model)
schedule = optim.make_schedule(config.optimizer.schedule, steps_per_epoch=10,
                               total_steps=10)
tx = optim.make_optimizer(config.optimizer, schedule)
data = mnist.host_arrays(config.data, split='train', batch_size=16,
                         shuffle_seed=0)
batches = [{k: v[i * 16:(i + 1) * 16] for k, v in data.items()}
           for i in range(3)]
params, model_state = net.init(jax.random.PRNGKey(0),
                               {'image': batches[0]['image'][:1]},
                               is_training=True)
state0 = trainer.TrainState(jnp.zeros([], jnp.int32), params, model_state,
                            tx.init(params))
abstract = jax.eval_shape(lambda: state0)
out = {}
for name, num_devices, sharding, accum in [
    ('1dev', 1, 'replicated', 1), ('8dev', 8, 'replicated', 1),
    ('8dev_fsdp_accum2', 8, 'fsdp', 2)]:
  mesh = Mesh(np.asarray(jax.devices()[:num_devices]), ('data',))
  config.parallel.param_sharding = sharding
  config.train.grad_accum_steps = accum
  shardings = parallel.state_shardings(abstract, mesh, config.parallel)
  num_sharded = sum(1 for s in jax.tree.leaves(shardings)
                    if any(a is not None for a in s.spec))
  state = jax.device_put(state0, shardings)
  step = jax.jit(trainer.make_train_step(net, tx, schedule, config, mesh),
                 in_shardings=(shardings, parallel.batch_sharding(mesh),
                               parallel.replicated(mesh)),
                 out_shardings=(shardings, parallel.replicated(mesh)))
  losses = []
  for batch in batches:
    gbatch = parallel.make_global_batch(mesh, batch, 16)
    assert len(gbatch['image'].sharding.device_set) == num_devices
    state, metrics = step(state, gbatch, jax.random.PRNGKey(1))
    losses.append(float(metrics['loss']))
  moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
      jax.tree.leaves(state.params), jax.tree.leaves(state0.params)))
  out[name] = dict(losses=losses, num_sharded=num_sharded, moved=moved,
                   step=int(state.step),
                   params=[np.asarray(x).ravel()[:50].tolist()
                           for x in jax.tree.leaves(state.params)])
print('RESULT' + json.dumps(out))
"""


def test_eight_fake_devices_match_one_device():
  proc = subprocess.run(
    [sys.executable, '-c', _MULTI_DEVICE_SCRIPT],
    cwd=helpers.REPO,
    env=helpers.subprocess_env(),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith('RESULT')][0]
  out = json.loads(line[len('RESULT') :])
  ref = out['1dev']
  assert ref['num_sharded'] == 0
  assert out['8dev_fsdp_accum2']['num_sharded'] > 0  # FSDP split something.
  # Step 1 sees the zero-initialised head (loss ln 10 everywhere); later
  # steps depend on the updates, so they are what is compared.
  assert abs(ref['losses'][2] - math.log(10)) > 1e-4
  assert ref['moved'] > 1e-3 and ref['step'] == 3
  for name in ('8dev', '8dev_fsdp_accum2'):
    np.testing.assert_allclose(out[name]['losses'], ref['losses'], rtol=1e-5, err_msg=name)
    assert out[name]['step'] == 3
    # Adam-type updates turn round-off in near-zero gradients into
    # lr-sized differences, so parameters get an absolute tolerance.
    for a, b in zip(out[name]['params'], ref['params']):
      np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4, err_msg=name)
