"""Schedules, weight-decay mask, optimizer chain, targets, losses, metrics."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from perceiver_configs import common
from perceiver.train import losses
from perceiver.train import optim


def _schedule(**fields):
  return ml_collections.ConfigDict(dict(common.optimizer().schedule, **fields))


def test_step_decay_divides_at_the_first_step_of_each_boundary_epoch():
  spe = 10
  sched = optim.make_schedule(
    _schedule(name='step', base_lr=4e-3, decay_epochs=(84.0, 102.0, 114.0)), steps_per_epoch=spe, total_steps=120 * spe
  )
  lr = lambda s: float(sched(jnp.asarray(s)))
  assert lr(0) == pytest.approx(4e-3)
  assert lr(84 * spe - 1) == pytest.approx(4e-3)
  assert lr(84 * spe) == pytest.approx(4e-4)
  assert lr(102 * spe - 1) == pytest.approx(4e-4)
  assert lr(102 * spe) == pytest.approx(4e-5)
  assert lr(114 * spe) == pytest.approx(4e-6)
  assert lr(120 * spe) == pytest.approx(4e-6)


def test_step_decay_matches_the_hand_written_rule_it_replaced():
  """optax.piecewise_constant_schedule == base * rate ** #(boundaries <= step)."""
  base, rate, bounds = 4e-3, 0.1, [7, 3, 12, 12]  # Unsorted, one repeated.
  sched = jax.jit(optim.step_decay_schedule(base, bounds, rate))
  steps = np.arange(0, 20)
  got = np.asarray([sched(jnp.asarray(s)) for s in steps])
  want = base * rate ** np.sum(steps[:, None] >= np.asarray(bounds)[None, :], axis=1)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_constant_then_cosine():
  spe = 4
  sched = optim.make_schedule(
    _schedule(name='constant_cosine', base_lr=2e-3, constant_epochs=55.0), steps_per_epoch=spe, total_steps=110 * spe
  )
  lr = lambda s: float(sched(jnp.asarray(s)))
  assert lr(0) == lr(55 * spe - 1) == pytest.approx(2e-3)
  # Half-way through the cosine part: half the rate; the end: 0.
  assert lr(55 * spe + 55 * spe // 2) == pytest.approx(1e-3, rel=1e-3)
  assert lr(110 * spe) == pytest.approx(0.0, abs=1e-9)
  values = [lr(s) for s in range(55 * spe, 110 * spe + 1)]
  assert all(a >= b for a, b in zip(values, values[1:]))


def test_linear_warmup_scales_the_schedule():
  sched = optim.make_schedule(
    _schedule(name='constant', base_lr=1.0, warmup_epochs=2.0), steps_per_epoch=5, total_steps=100
  )
  lr = [float(sched(jnp.asarray(s))) for s in (0, 5, 10, 50)]
  assert lr == pytest.approx([0.0, 0.5, 1.0, 1.0])


def _haiku_like_params():
  return {
    'perceiver_encoder/~/cross_attention/attention/linear': {'w': jnp.ones((4, 4)), 'b': jnp.ones(4)},
    'perceiver_encoder/~/cross_attention/layer_norm': {'scale': jnp.ones(4), 'offset': jnp.ones(4)},
    'perceiver_encoder/~/trainable_position_encoding': {'pos_embs': jnp.ones((8, 4))},
    'image_preprocessor/~/conv2_d_downsample/~/batchnorm': {
      'scale': jnp.ones((1, 1, 1, 4)),
      'offset': jnp.ones((1, 1, 1, 4)),
    },
    'image_preprocessor/~/conv2_d_downsample/~/conv': {'w': jnp.ones((7, 7, 3, 4))},
  }


def test_weight_decay_mask_follows_the_reference_exclusions():
  mask = optim.weight_decay_mask(_haiku_like_params())
  enc = 'perceiver_encoder/~/'
  assert mask[enc + 'cross_attention/attention/linear'] == {'w': True, 'b': False}
  assert mask[enc + 'cross_attention/layer_norm'] == {'scale': False, 'offset': False}
  assert mask[enc + 'trainable_position_encoding'] == {'pos_embs': True}
  bn = mask['image_preprocessor/~/conv2_d_downsample/~/batchnorm']
  assert bn == {'scale': False, 'offset': False}  # 4-D, but a norm.
  assert mask['image_preprocessor/~/conv2_d_downsample/~/conv'] == {'w': True}
  no_pos = optim.weight_decay_mask(_haiku_like_params(), decay_pos_embs=False)
  assert no_pos[enc + 'trainable_position_encoding'] == {'pos_embs': False}


@pytest.mark.parametrize('name', ['lamb', 'adamw'])
def test_weight_decay_touches_only_masked_params(name):
  cfg = common.optimizer(name=name, weight_decay=0.5, max_norm=-1.0, schedule=dict(name='constant', base_lr=0.1))
  tx = optim.make_optimizer(cfg, optim.make_schedule(cfg.schedule, steps_per_epoch=1, total_steps=1))
  params = _haiku_like_params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  mask = optim.weight_decay_mask(params)
  for decayed, update in zip(jax.tree.leaves(mask), jax.tree.leaves(updates)):
    # Zero gradients: only weight decay can move a parameter.
    assert bool(jnp.any(update != 0)) == decayed


@pytest.mark.parametrize('max_norm', [1.0, -1.0])
def test_gradients_are_clipped_before_the_optimizer(max_norm):
  cfg = common.optimizer(name='adam', weight_decay=0.0, max_norm=max_norm, schedule=dict(name='constant', base_lr=1.0))
  tx = optim.make_optimizer(cfg, lambda s: 1.0)
  params = {'w': jnp.zeros(4)}
  grads = {'w': jnp.full((4,), 100.0)}  # Global norm 200.
  _, state = tx.update(grads, tx.init(params), params)
  adam = [
    s
    for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
    if isinstance(s, optax.ScaleByAdamState)
  ][0]
  seen = 100.0 * (1.0 / 200.0 if max_norm > 0 else 1.0)  # Gradient Adam saw.
  np.testing.assert_allclose(adam.mu['w'], 0.1 * seen, rtol=1e-5)
  with pytest.raises(ValueError, match='adamw'):
    optim.make_optimizer(common.optimizer(name='adam', weight_decay=0.1), lambda s: 1.0)


def test_targets_mix_then_smooth():
  batch = {'label': jnp.array([0, 2]), 'mix_label': jnp.array([1, 2]), 'mix_ratio': jnp.array([0.75, 0.5])}
  t = losses.make_targets(batch, 4, label_smoothing=0.1)
  expected = np.array([[0.75, 0.25, 0, 0], [0, 0, 1, 0]]) * 0.9 + 0.1 / 4
  np.testing.assert_allclose(t, expected, rtol=1e-6)
  soft = {'label': jnp.array([[0.3, 0.7, 0.0, 0.0]])}
  np.testing.assert_allclose(losses.make_targets(soft, 4), soft['label'])


def test_losses_and_topk():
  logits = jnp.array([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
  targets = jax.nn.one_hot(jnp.array([0, 1]), 3)
  ce = losses.per_example_loss(logits, targets, 'softmax')
  np.testing.assert_allclose(ce, -jnp.sum(targets * jax.nn.log_softmax(logits), -1), rtol=1e-6)
  probs = losses.probabilities(logits, 'softmax')
  np.testing.assert_allclose(losses.per_example_loss_from_probs(probs, targets, 'softmax'), ce, rtol=1e-5)
  bce = losses.per_example_loss(logits, targets, 'sigmoid')
  p = jax.nn.sigmoid(logits)
  np.testing.assert_allclose(bce, -jnp.mean(targets * jnp.log(p) + (1 - targets) * jnp.log(1 - p), -1), rtol=1e-5)
  label = jnp.array([0, 1])
  np.testing.assert_array_equal(losses.topk_correct(logits, label, 1), [1, 0])
  # Example 1 ties class 0 for second place: ties count against the prediction.
  np.testing.assert_array_equal(losses.topk_correct(logits, label, 2), [1, 0])
  np.testing.assert_array_equal(losses.topk_correct(logits, label, 3), [1, 1])
