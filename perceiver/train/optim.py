"""Optimizers, learning-rate schedules and the weight-decay mask.

Follows the Perceiver IO reference training code: LAMB (or Adam(W)) after
global-norm clipping, decoupled weight decay on weight matrices only (not on
biases ``b`` nor on normalisation layers), and schedules whose boundaries are
given in epochs and converted to optimizer steps here.
"""

import collections
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

Schedule = Callable[[jax.Array], jax.Array]

# Haiku module-name fragments of normalisation layers (reference: NORM_NAMES).
NORM_MODULE_NAMES = ('layer_norm', 'batchnorm', 'batch_norm')
OPTIMIZERS = ('lamb', 'adamw', 'adam')
SCHEDULES = ('step', 'constant_cosine', 'cosine', 'constant')


def step_decay_schedule(base_lr: float, boundaries: list[int], decay_rate: float) -> Schedule:
  """lr = base_lr * decay_rate ** (number of boundaries <= step).

  ``optax.piecewise_constant_schedule`` scales from ``step >= boundary`` on,
  so the first step of epoch 84 already uses the new rate.
  """
  counts = collections.Counter(int(b) for b in boundaries)  # A repeated boundary decays twice.
  return optax.piecewise_constant_schedule(base_lr, {b: float(decay_rate) ** n for b, n in sorted(counts.items())})


def with_linear_warmup(schedule: Schedule, warmup_steps: int) -> Schedule:
  """Scales ``schedule`` by min(1, step / warmup_steps) (0-based, as optax)."""
  if warmup_steps <= 0:
    return schedule

  def warmed(step: jax.Array) -> jax.Array:
    ramp = jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / warmup_steps)
    return schedule(step) * ramp

  return warmed


def make_schedule(cfg: ml_collections.ConfigDict, *, steps_per_epoch: int, total_steps: int) -> Schedule:
  """Builds the learning-rate schedule of ``config.optimizer.schedule``.

  Epoch quantities are converted with ``steps_per_epoch`` so that "divide by
  10 at epoch 84" happens exactly at the first step of epoch 84.
  """
  to_steps = lambda epochs: int(round(epochs * steps_per_epoch))
  base_lr = cfg.base_lr
  if cfg.name == 'constant':
    schedule = optax.constant_schedule(base_lr)
  elif cfg.name == 'step':
    schedule = step_decay_schedule(base_lr, [to_steps(e) for e in cfg.decay_epochs], cfg.decay_rate)
  elif cfg.name == 'cosine':
    schedule = optax.cosine_decay_schedule(base_lr, max(1, total_steps), alpha=cfg.end_value / base_lr)
  elif cfg.name == 'constant_cosine':
    constant_steps = min(to_steps(cfg.constant_epochs), total_steps)
    schedule = optax.join_schedules(
      [
        optax.constant_schedule(base_lr),
        optax.cosine_decay_schedule(base_lr, max(1, total_steps - constant_steps), alpha=cfg.end_value / base_lr),
      ],
      [constant_steps],
    )
  else:
    raise ValueError(f'optimizer.schedule.name={cfg.name!r}; expected one of {SCHEDULES}')
  return with_linear_warmup(schedule, to_steps(cfg.warmup_epochs))


def weight_decay_mask(params: Any, decay_pos_embs: bool = True) -> Any:
  """True for parameters that get weight decay: weight matrices only.

  Reference rule: no decay for biases (``b``) nor any parameter of a
  normalisation module; learned position embeddings (``pos_embs``) are
  decayed unless ``decay_pos_embs`` is False. Anything of ndim <= 1 is
  excluded too, so a scale/offset under an unexpected name is never decayed.
  """

  def decide(path, leaf) -> bool:
    names = [getattr(k, 'key', getattr(k, 'name', str(k))) for k in path]
    module = '/'.join(str(n) for n in names[:-1])
    name = str(names[-1])
    if jnp.ndim(leaf) <= 1 or name == 'b':
      return False
    if any(norm in module for norm in NORM_MODULE_NAMES):
      return False
    if name == 'pos_embs' and not decay_pos_embs:
      return False
    return True

  return jax.tree_util.tree_map_with_path(decide, params)


def make_optimizer(cfg: ml_collections.ConfigDict, schedule: Schedule) -> optax.GradientTransformation:
  """Clipping then LAMB / AdamW / Adam, as in the reference ``make_optimizer``.

  ``optax.lamb`` and ``optax.adamw`` are exactly the reference chain
  (scale_by_adam -> masked add_decayed_weights [-> trust ratio] -> -lr).
  """
  mask = lambda p: weight_decay_mask(p, cfg.decay_pos_embs)
  if cfg.name == 'lamb':
    opt = optax.lamb(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay, mask=mask)
  elif cfg.name == 'adamw':
    opt = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay, mask=mask)
  elif cfg.name == 'adam':
    if cfg.weight_decay:
      raise ValueError(
        f'optimizer.name=adam has no weight decay; use adamw for optimizer.weight_decay={cfg.weight_decay}'
      )
    opt = optax.adam(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
  else:
    raise ValueError(f'optimizer.name={cfg.name!r}; expected one of {OPTIMIZERS}')
  if cfg.max_norm > 0:
    opt = optax.chain(optax.clip_by_global_norm(cfg.max_norm), opt)
  return opt
