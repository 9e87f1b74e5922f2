"""The task registry: lookup, registration, and a non-classification task
driving the runner's train step (metrics generic, gradient accumulation)."""

import haiku as hk
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from perceiver import tasks
from perceiver.train import trainer


def test_unknown_task_lists_the_known_ones():
  with pytest.raises(ValueError, match=r"config.task='nope'.*classification"):
    tasks.get('nope')


def test_default_task_is_classification():
  assert tasks.get_task(ml_collections.ConfigDict()).name == 'classification'


class _Regression:
  """y = x @ w: a task with its own model, inputs, loss and metrics."""

  name = 'toy_regression'
  batch_keys = ('x', 'y')

  def check_config(self, config):
    del config

  def build_model(self, config):
    del config
    return hk.transform_with_state(lambda x, *, is_training: hk.Linear(1, with_bias=False)(x)[:, 0])

  def model_inputs(self, batch):
    return batch['x']

  def train_loss(self, net, params, model_state, rng, batch, config):
    pred, model_state = net.apply(params, model_state, rng, batch['x'], is_training=True)
    err = pred - batch['y']
    return jnp.mean(err**2), (model_state, dict(abs_err=jnp.mean(jnp.abs(err))))

  def eval_outputs(self, net, params, model_state, batch, config):
    pred, _ = net.apply(params, model_state, None, batch['x'], is_training=False)
    return dict(sq_err=(pred - batch['y']) ** 2, collect=dict(pred=pred))

  def finalize_eval(self, collected, config):
    return dict(num_preds=float(len(collected['pred'])))


def test_registered_task_trains_with_accumulation_equal_to_full_batch():
  tasks.register('toy_regression', _Regression)
  with pytest.raises(ValueError, match='already registered'):
    tasks.register('toy_regression', _Regression)
  task = tasks.get('toy_regression')
  rng = np.random.default_rng(0)
  batch = dict(x=rng.normal(size=(8, 3)).astype(np.float32))
  batch['y'] = batch['x'] @ np.array([1.0, -2.0, 0.5], np.float32)
  net = task.build_model(None)
  params, model_state = net.init(jax.random.PRNGKey(0), batch['x'], is_training=True)
  tx = optax.sgd(0.1)
  results = []
  for accum in (1, 2):
    config = ml_collections.ConfigDict(dict(task='toy_regression', train=dict(grad_accum_steps=accum)))
    step = jax.jit(trainer.make_train_step(net, tx, lambda s: 0.1, config))
    state = trainer.TrainState(jnp.zeros([], jnp.int32), params, model_state, tx.init(params))
    state, metrics = step(state, batch, jax.random.PRNGKey(1))
    assert set(metrics) == {'loss', 'abs_err', 'grad_norm', 'lr'}
    results.append((state.params, metrics))
  (p1, m1), (p2, m2) = results
  np.testing.assert_allclose(m1['abs_err'], m2['abs_err'], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), p1, p2)
  eval_step = trainer.make_eval_step(net, ml_collections.ConfigDict(dict(task='toy_regression')))
  out = eval_step(params, model_state, dict(batch, mask=np.ones(8, np.float32)))
  assert out['sq_err'].shape == (8,) and out['collect']['pred'].shape == (8,)
