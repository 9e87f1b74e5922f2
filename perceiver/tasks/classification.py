"""Single- and multi-label classification (ImageNet, AudioSet, ModelNet40,
MNIST): the runner's original objective, as a `Task`."""

from __future__ import annotations

from typing import Any, Mapping

import haiku as hk
import jax.numpy as jnp
import ml_collections
import numpy as np

from perceiver.train import input_pipeline
from perceiver.train import losses


class ClassificationTask:
  """Cross-entropy on class logits [B, K]; top-1/top-5 or mAP at evaluation.

  Labels, soft targets and MixUp/CutMix pairs come from the data pipeline
  (see `perceiver.train.losses`). With `eval.clip_axis` evaluation inputs
  are [B, C, ...] and class probabilities are averaged over the C clips.
  """

  name = 'classification'
  batch_keys = input_pipeline.MODALITY_KEYS + losses.LABEL_KEYS

  def check_config(self, config: ml_collections.ConfigDict) -> None:
    from perceiver.train.config_checks import ConfigError  # pylint: disable=g-import-not-at-top
    from perceiver import config as model_schema  # pylint: disable=g-import-not-at-top

    try:  # The model's typed schema: every field, compute_dtype included.
      model_schema.parse_model_config(config.model)
    except model_schema.ModelConfigError as e:
      raise ConfigError(str(e)) from None
    t = config.train
    if t.loss not in losses.LOSSES:
      raise ConfigError(f'train.loss={t.loss!r}; expected one of {losses.LOSSES}')
    if not 0 <= t.label_smoothing < 1:
      raise ConfigError(f'train.label_smoothing={t.label_smoothing} not in [0, 1)')
    if t.loss != 'softmax' and t.label_smoothing != 0:
      raise ConfigError('train.label_smoothing applies to the softmax loss only')
    data_classes = config.data.get('num_classes')
    model_classes = config.model.decoder.num_classes
    # 0 / None: the data's own label list (checked once the data is open).
    if data_classes and data_classes != model_classes:
      raise ConfigError(f'data.num_classes={data_classes} but model.decoder.num_classes={model_classes}')

  def build_model(self, config: ml_collections.ConfigDict) -> hk.TransformedWithState:
    from perceiver import models  # pylint: disable=g-import-not-at-top

    return models.build_model(config.model)

  def model_inputs(self, batch: Mapping[str, Any]) -> dict[str, Any]:
    return input_pipeline.split_inputs(batch)

  def train_loss(self, net, params, model_state, rng, batch, config):
    logits, model_state = net.apply(params, model_state, rng, self.model_inputs(batch), is_training=True)
    logits = logits.astype(jnp.float32)  # [B, K]
    targets = losses.make_targets(batch, config.model.decoder.num_classes, config.train.label_smoothing)
    loss = losses.per_example_loss(logits, targets, config.train.loss).mean()
    top1 = jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(targets, -1))
    return loss, (model_state, dict(top1=top1.astype(jnp.float32)))

  def eval_outputs(self, net, params, model_state, batch, config):
    num_classes = config.model.decoder.num_classes
    loss_type = config.train.loss
    inputs = self.model_inputs(batch)
    clip_axis = config.eval.clip_axis
    if clip_axis:
      b, c = next(iter(inputs.values())).shape[:2]
      inputs = {k: v.reshape((b * c,) + v.shape[2:]) for k, v in inputs.items()}
    logits, _ = net.apply(params, model_state, None, inputs, is_training=False)
    logits = logits.astype(jnp.float32)  # [B, K] or [B * C, K]
    targets = losses.make_targets(batch, num_classes)
    if clip_axis:
      probs = losses.probabilities(logits, loss_type).reshape(b, c, -1)
      probs = probs.mean(axis=1)
      loss = losses.per_example_loss_from_probs(probs, targets, loss_type)
    else:
      probs = losses.probabilities(logits, loss_type)
      loss = losses.per_example_loss(logits, targets, loss_type)
    out: dict[str, Any] = dict(loss=loss, nonfinite=losses.nonfinite(probs))
    if loss_type == 'sigmoid':
      out['collect'] = dict(scores=probs, labels=targets)
    else:
      out.update(top1=losses.topk_correct(probs, batch['label'], 1), top5=losses.topk_correct(probs, batch['label'], 5))
    return out

  def finalize_eval(self, collected: Mapping[str, np.ndarray], config: ml_collections.ConfigDict) -> dict[str, float]:
    if 'scores' not in collected:
      return {}
    # AP per class, then the mean over classes with positives (AudioSet's
    # metric), with the number of classes that had none.
    return losses.map_metrics(collected['scores'], collected['labels'])

  def check_batch(self, batch: Mapping[str, Any], config: ml_collections.ConfigDict, where: str) -> None:
    """Host-side label check at the runner boundary (see losses.check_labels)."""
    losses.check_labels(batch, config.model.decoder.num_classes, where=where)
