"""Targets, losses and metrics for single-label (softmax) and multi-label
(sigmoid) classification.

Labels arrive from the data pipeline as int32 [B] class ids, float32 [B, K]
soft or multi-hot targets (what MixUp/CutMix produce), or class ids plus a
reference-style mixing pair (``mix_label`` int32 [B], ``mix_ratio`` float32
[B]: target = r * onehot(label) + (1 - r) * onehot(mix_label)).
"""

from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

LABEL_KEYS = ('label', 'mix_label', 'mix_ratio')
LOSSES = ('softmax', 'sigmoid')


def make_targets(batch: Mapping[str, jax.Array], num_classes: int, label_smoothing: float = 0.0) -> jax.Array:
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


def per_example_loss(logits: jax.Array, targets: jax.Array, loss: str) -> jax.Array:
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


def per_example_loss_from_probs(probs: jax.Array, targets: jax.Array, loss: str, eps: float = 1e-7) -> jax.Array:
  """Loss per example [B] from probabilities (e.g. averaged over clips)."""
  probs = jnp.clip(probs.astype(jnp.float32), eps, 1.0 - eps)
  if loss == 'softmax':
    return -jnp.sum(targets * jnp.log(probs), axis=-1)
  if loss == 'sigmoid':
    return -jnp.mean(targets * jnp.log(probs) + (1.0 - targets) * jnp.log1p(-probs), axis=-1)
  raise ValueError(f'train.loss={loss!r}; expected one of {LOSSES}')


def probabilities(logits: jax.Array, loss: str) -> jax.Array:
  """Class scores: softmax or per-class sigmoid of logits [..., K]."""
  if loss == 'softmax':
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return jax.nn.sigmoid(logits.astype(jnp.float32))


def topk_correct(scores: jax.Array, label: jax.Array, k: int) -> jax.Array:
  """1.0 where the true class id [B] is among the top-k scores [B, K].

  Scored so that garbage cannot pass as success: the rank of the true class
  counts every other class scored higher *or equal* (ties go against the
  prediction, so all-equal scores are wrong for k < K); a row with any
  non-finite score is wrong (NaN compares false with everything, which would
  otherwise give rank 0); a label outside [0, K) is wrong (a gather there
  would read a fill value). Labels are also checked on the host, with a
  clear error, by `check_labels`.
  """
  num_classes = scores.shape[-1]
  k = min(k, num_classes)
  label = label.astype(jnp.int32)
  in_range = (label >= 0) & (label < num_classes)  # [B]
  safe_label = jnp.clip(label, 0, num_classes - 1)
  true_score = jnp.take_along_axis(scores, safe_label[:, None], axis=-1)  # [B, 1]
  others = jnp.arange(num_classes)[None, :] != safe_label[:, None]  # [B, K]
  rank = jnp.sum(((scores > true_score) | (scores == true_score)) & others, axis=-1)
  finite = jnp.all(jnp.isfinite(scores), axis=-1)
  return ((rank < k) & finite & in_range).astype(jnp.float32)


def nonfinite(scores: jax.Array) -> jax.Array:
  """1.0 for each example [B] with a NaN/Inf among its scores [B, ..., K].

  The eval step logs its mean as the ``nonfinite`` metric (the fraction of
  evaluated examples; x ``num_examples`` gives the count).
  """
  bad = ~jnp.isfinite(scores)
  return jnp.any(bad.reshape(bad.shape[0], -1), axis=-1).astype(jnp.float32)


class LabelError(ValueError):
  """A batch's label is outside what the model can predict."""


def check_labels(batch: Mapping[str, Any], num_classes: int, *, where: str) -> None:
  """Host-side check, before a batch reaches the devices, that labels fit [0, K).

  On the devices an out-of-range class id becomes an all-zero one-hot (zero
  loss, no gradient) and -1 can wrap to class K-1: silently wrong either
  way. Raises LabelError naming the example (its index in the batch, and its
  ``file_name`` when the batch carries one) and what to change.
  """
  names = batch.get('file_name')
  mask = batch.get('mask')
  for key in ('label', 'mix_label'):
    if key not in batch:
      continue
    label = np.asarray(batch[key])
    valid = np.ones(label.shape[:1], bool) if mask is None else np.asarray(mask).reshape(-1) > 0
    if label.ndim == 1:
      if label.dtype.kind not in 'iu':
        raise LabelError(f'{where}: {key} has dtype {label.dtype}; class ids must be integers')
      bad = np.flatnonzero(valid & ((label < 0) | (label >= num_classes)))
      what = f'class id {int(label[bad[0]])}' if bad.size else ''
    else:
      if label.shape[-1] != num_classes:
        raise LabelError(
          f'{where}: {key} has {label.shape[-1]} columns; the model predicts '
          f'{num_classes} classes (model.decoder.num_classes)'
        )
      rows = label.reshape(label.shape[0], -1)
      bad = np.flatnonzero(valid & ~np.all(np.isfinite(rows) & (rows >= 0) & (rows <= 1), -1))
      what = 'a target outside [0, 1] or non-finite'
    if bad.size:
      example = f'example {int(bad[0])} of the batch'
      if names is not None:
        name = np.asarray(names).reshape(-1)[bad[0]]
        name = name.decode('utf-8', 'replace') if isinstance(name, bytes) else str(name)
        example += f' ({name[:200]})'
      raise LabelError(
        f'{where}: {example} has {key} {what}, outside [0, {num_classes}) '
        f'({bad.size} such examples in the batch); fix the data or set '
        'data.num_classes / model.decoder.num_classes to cover every class'
      )


def map_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """mAP over classes with a positive, saying how many classes that was.

  Non-finite scores are ranked below every finite score (counted wrong, not
  dropped); classes with no positive example have no AP and are reported in
  ``mAP_classes_without_positives`` rather than skipped silently.
  """
  from perceiver.data import audioset  # pylint: disable=g-import-not-at-top

  scores = np.asarray(scores, np.float64)
  scores = np.where(np.isfinite(scores), scores, -np.inf)
  ap = audioset.average_precision(scores, labels)  # [K], NaN: no positive
  scored = int(np.sum(~np.isnan(ap)))
  return {
    'mAP': float(np.nanmean(ap)) if scored else float('nan'),
    'mAP_classes': float(scored),
    'mAP_classes_without_positives': float(ap.size - scored),
  }


def check_eval_finite(result: Mapping[str, float], *, step: int, split: str, stop: bool) -> Optional[str]:
  """A warning line if evaluation saw non-finite scores; raises if ``stop``.

  ``stop`` is ``eval.stop_on_nonfinite``: like training's NaN stop, but for
  the model's evaluation outputs (those examples already count as wrong).
  """
  fraction = result.get('nonfinite', 0.0)
  if not fraction:
    return None
  count = int(round(fraction * result.get('num_examples', 0)))
  message = (
    f'eval {split} at step {step}: {count} of {int(result.get("num_examples", 0))} '
    'examples have NaN/Inf scores (counted as wrong)'
  )
  if stop:
    raise FloatingPointError(message + '; stopping (eval.stop_on_nonfinite=True)')
  return message
