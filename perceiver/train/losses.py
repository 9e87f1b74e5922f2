"""Targets, losses and metrics for single-label (softmax) and multi-label
(sigmoid) classification.

Labels arrive from the data pipeline as int32 [B] class ids, float32 [B, K]
soft or multi-hot targets (what MixUp/CutMix produce), or class ids plus a
reference-style mixing pair (``mix_label`` int32 [B], ``mix_ratio`` float32
[B]: target = r * onehot(label) + (1 - r) * onehot(mix_label)).
"""

from typing import Mapping

import jax
import jax.numpy as jnp
import optax

LABEL_KEYS = ('label', 'mix_label', 'mix_ratio')
LOSSES = ('softmax', 'sigmoid')


def make_targets(batch: Mapping[str, jax.Array], num_classes: int,
                 label_smoothing: float = 0.0) -> jax.Array:
  """Float32 targets [B, K]: one-hot or soft, mixed, then label-smoothed.

  Smoothing is applied after mixing, as the reference does:
  y <- (1 - a) * y + a / K.
  """
  label = batch['label']
  if label.ndim == 1:
    targets = jax.nn.one_hot(label, num_classes, dtype=jnp.float32)
  else:
    targets = label.astype(jnp.float32)
  if 'mix_label' in batch:
    ratio = batch['mix_ratio'].astype(jnp.float32)[:, None]
    mixed = jax.nn.one_hot(batch['mix_label'], num_classes, dtype=jnp.float32)
    targets = ratio * targets + (1.0 - ratio) * mixed
  if label_smoothing > 0:
    targets = (1.0 - label_smoothing) * targets + label_smoothing / num_classes
  return targets


def per_example_loss(logits: jax.Array, targets: jax.Array,
                     loss: str) -> jax.Array:
  """Loss per example [B] for logits and targets [B, K] (float32).

  Sigmoid loss is the binary cross-entropy averaged over the K classes (the
  usual AudioSet convention; with Adam-family optimizers the scale hardly
  matters).
  """
  logits = logits.astype(jnp.float32)
  if loss == 'softmax':
    return optax.softmax_cross_entropy(logits, targets)
  if loss == 'sigmoid':
    return optax.sigmoid_binary_cross_entropy(logits, targets).mean(axis=-1)
  raise ValueError(f'train.loss={loss!r}; expected one of {LOSSES}')


def per_example_loss_from_probs(probs: jax.Array, targets: jax.Array,
                                loss: str, eps: float = 1e-7) -> jax.Array:
  """Loss per example [B] from probabilities (e.g. averaged over clips)."""
  probs = jnp.clip(probs.astype(jnp.float32), eps, 1.0 - eps)
  if loss == 'softmax':
    return -jnp.sum(targets * jnp.log(probs), axis=-1)
  if loss == 'sigmoid':
    return -jnp.mean(targets * jnp.log(probs)
                     + (1.0 - targets) * jnp.log1p(-probs), axis=-1)
  raise ValueError(f'train.loss={loss!r}; expected one of {LOSSES}')


def probabilities(logits: jax.Array, loss: str) -> jax.Array:
  """Class scores: softmax or per-class sigmoid of logits [..., K]."""
  if loss == 'softmax':
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return jax.nn.sigmoid(logits.astype(jnp.float32))


def topk_correct(scores: jax.Array, label: jax.Array, k: int) -> jax.Array:
  """1.0 where the true class id [B] is among the top-k scores [B, K]."""
  k = min(k, scores.shape[-1])
  true_score = jnp.take_along_axis(scores, label[:, None], axis=-1)
  # Rank = number of classes scored strictly higher than the true class.
  rank = jnp.sum(scores > true_score, axis=-1)
  return (rank < k).astype(jnp.float32)
