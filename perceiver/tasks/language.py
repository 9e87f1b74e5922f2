"""Language tasks: byte-level masked-LM pre-training (`mlm`) and GLUE (`glue`).

`mlm`: cross-entropy on the masked bytes only (data: the `text` source);
eval reports the byte-weighted masked-byte accuracy and loss.
`glue`: one GLUE task (data: the `glue` source): softmax cross-entropy, or
mean squared error for regression (STS-B); eval reports the task's official
metrics (perceiver.language.glue_metrics) and its GLUE score.

Two optional hooks the runner calls when a task has them:
`load_params(fresh, loaded, config)` (GLUE: the encoder comes from
`--config.init_from`, the head stays fresh) and `wrap_optimizer(tx, config)`
(GLUE with `model.classifier.freeze_encoder`: encoder updates are zero;
`encoder_lr_scale` / `encoder_frozen_steps`: the encoder's updates scaled, or
zero for the first steps).
"""

from __future__ import annotations

from typing import Any, Mapping

import haiku as hk
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from perceiver import language


def _config_error(message: str):
  from perceiver.train.config_checks import ConfigError  # pylint: disable=g-import-not-at-top

  return ConfigError(message)


def _check_lengths(config) -> None:
  try:
    language.reference_config(config.model)
  except ValueError as e:
    raise _config_error(str(e)) from None
  seq_len, max_len = config.data.seq_len, config.model.max_seq_len
  if seq_len > max_len:
    raise _config_error(f'data.seq_len={seq_len} exceeds model.max_seq_len={max_len}')


def _loss_config(config):
  """``config.train.mlm_loss`` (optional) as a perceiver.config.MaskedLMLossConfig."""
  from perceiver import config as config_lib  # pylint: disable=g-import-not-at-top

  given = config.train.get('mlm_loss') if 'train' in config else None
  return config_lib.parse_section(config_lib.MaskedLMLossConfig, given, 'config.train.mlm_loss')


def _inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
  return dict(tokens=batch['tokens'], input_mask=batch['input_mask'])


class MaskedLMTask:
  """Masked-byte prediction with the released model's architecture."""

  name = 'mlm'
  batch_keys = ('tokens', 'input_mask', 'targets', 'target_weights')

  def check_config(self, config: ml_collections.ConfigDict) -> None:
    if config.data.name != 'text':
      raise _config_error(f"task 'mlm' reads data.name='text', got {config.data.name!r}")
    _check_lengths(config)
    from perceiver.data import text  # pylint: disable=g-import-not-at-top

    try:
      _loss_config(config)
      # The masking rates, here before compiling instead of when the first batch is masked.
      text.masking_config(config.data)
    except ValueError as e:
      raise _config_error(str(e)) from None

  def build_model(self, config: ml_collections.ConfigDict) -> hk.TransformedWithState:
    return language.build_masked_lm(config.model)

  def model_inputs(self, batch):
    return _inputs(batch)

  def train_loss(self, net, params, model_state, rng, batch, config):
    logits, model_state = net.apply(params, model_state, rng, self.model_inputs(batch), is_training=True)
    seq = batch['targets'].shape[1]
    out = language.masked_lm_outputs(logits[:, :seq], batch['targets'], batch['target_weights'])
    count = jnp.maximum(jnp.sum(out['count']), 1.0)
    loss = jnp.sum(out['loss_sum']) / count
    metrics = dict(masked_accuracy=jnp.sum(out['correct']) / count)
    copy_weight = _loss_config(config).copy_loss_weight
    if copy_weight > 0:  # the real bytes not selected for masking: the input shows them as they are
      weights = batch['input_mask'].astype(jnp.float32) * (1.0 - batch['target_weights'])
      copy = language.masked_lm_outputs(logits[:, :seq], batch['targets'], weights)
      copy_loss = jnp.sum(copy['loss_sum']) / jnp.maximum(jnp.sum(copy['count']), 1.0)
      loss = loss + copy_weight * copy_loss
      metrics['copy_loss'] = copy_loss
    return loss, (model_state, metrics)

  def eval_outputs(self, net, params, model_state, batch, config):
    logits, _ = net.apply(params, model_state, None, self.model_inputs(batch), is_training=False)
    seq = batch['targets'].shape[1]
    out = language.masked_lm_outputs(logits[:, :seq], batch['targets'], batch['target_weights'])
    per_example = out['loss_sum'] / jnp.maximum(out['count'], 1.0)
    return dict(loss=per_example, collect=out)

  def finalize_eval(self, collected: Mapping[str, np.ndarray], config) -> dict[str, float]:
    count = float(np.sum(collected['count'], dtype=np.float64))
    return dict(
      masked_accuracy=float(np.sum(collected['correct'], dtype=np.float64)) / max(count, 1.0),
      masked_loss=float(np.sum(collected['loss_sum'], dtype=np.float64)) / max(count, 1.0),
      masked_bytes=count,
    )


class GlueTask:
  """A GLUE task on the masked LM's encoder with a one-query head."""

  name = 'glue'
  batch_keys = ('tokens', 'input_mask', 'label')

  def _spec(self, config):
    from perceiver.data import glue  # pylint: disable=g-import-not-at-top

    return glue.get_task(config.data.task)

  def check_config(self, config: ml_collections.ConfigDict) -> None:
    if config.data.name != 'glue':
      raise _config_error(f"task 'glue' reads data.name='glue', got {config.data.name!r}")
    if 'classifier' not in config.model:
      raise _config_error('task glue needs a model.classifier section (configs/language.py)')
    try:
      spec = self._spec(config)
    except ValueError as e:
      raise _config_error(str(e)) from None
    got = config.model.classifier.num_outputs
    if got != spec.num_outputs:
      raise _config_error(f'model.classifier.num_outputs={got} but GLUE {spec.name} has {spec.num_outputs} output(s)')
    scale, frozen_steps = (
      config.model.classifier.get('encoder_lr_scale', 1.0),
      config.model.classifier.get('encoder_frozen_steps', 0),
    )
    if not scale >= 0:
      raise _config_error(f'model.classifier.encoder_lr_scale must be >= 0, got {scale}')
    if frozen_steps < 0:
      raise _config_error(f'model.classifier.encoder_frozen_steps must be >= 0, got {frozen_steps}')
    _check_lengths(config)

  def build_model(self, config: ml_collections.ConfigDict) -> hk.TransformedWithState:
    c = config.model.classifier
    return language.build_classifier(
      config.model,
      c.num_outputs,
      num_heads=c.num_heads,
      query_channels=c.query_channels,
      use_query_residual=c.use_query_residual,
    )

  def model_inputs(self, batch):
    return _inputs(batch)

  def _per_example(self, logits, labels, regression: bool):
    if regression:
      return jnp.square(logits[:, 0] - labels.astype(jnp.float32))
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))

  def train_loss(self, net, params, model_state, rng, batch, config):
    regression = self._spec(config).is_regression
    logits, model_state = net.apply(params, model_state, rng, self.model_inputs(batch), is_training=True)
    loss = self._per_example(logits, batch['label'], regression).mean()
    metrics = (
      {} if regression else dict(accuracy=jnp.mean(jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32))
    )
    return loss, (model_state, metrics)

  def eval_outputs(self, net, params, model_state, batch, config):
    regression = self._spec(config).is_regression
    logits, _ = net.apply(params, model_state, None, self.model_inputs(batch), is_training=False)
    prediction = logits[:, 0] if regression else jnp.argmax(logits, -1).astype(jnp.float32)
    return dict(
      loss=self._per_example(logits, batch['label'], regression),
      collect=dict(prediction=prediction, label=batch['label'].astype(jnp.float32)),
    )

  def finalize_eval(self, collected: Mapping[str, np.ndarray], config) -> dict[str, float]:
    spec = self._spec(config)
    pred, label = collected['prediction'], collected['label']
    if not spec.is_regression:
      pred, label = pred.astype(np.int64), label.astype(np.int64)
    metrics = language.glue_metrics(spec.metrics, pred, label)
    metrics['glue_score'] = language.glue_score(metrics)
    return metrics

  # --- hooks ---------------------------------------------------------------

  def load_params(self, fresh: hk.Params, loaded: hk.Params, config) -> hk.Params:
    """Encoder from the file (masked LM or classifier), head fresh unless present."""
    from absl import logging  # pylint: disable=g-import-not-at-top

    params, report = language.transfer_encoder(jax.device_get(fresh), loaded)
    logging.info(
      'init_from: %d encoder modules loaded; fresh: %s; not used: %s',
      len(report['loaded']),
      report['fresh'] or 'none',
      report['dropped'] or 'none',
    )
    return params

  def wrap_optimizer(self, tx: optax.GradientTransformation, config) -> optax.GradientTransformation:
    c = config.model.classifier
    if c.freeze_encoder:
      return optax.multi_transform(
        {'train': tx, 'freeze': optax.set_to_zero()},
        lambda params: language.trainable_labels(params, freeze_encoder=True),
      )
    scale, frozen_steps = float(c.get('encoder_lr_scale', 1.0)), int(c.get('encoder_frozen_steps', 0))
    if scale == 1.0 and frozen_steps == 0:
      return tx
    # Discriminative fine-tuning (a smaller step for the pre-trained encoder
    # than for the fresh head) and a head-only start: the encoder's updates,
    # weight decay included, times 0 for `frozen_steps`, then `scale`.
    # Applied after the whole chain so that gradient clipping stays global.
    encoder_scale = lambda step: jnp.where(step < frozen_steps, 0.0, scale)
    is_encoder = lambda params: {
      m: {n: not m.startswith(language.HEAD_MODULE) for n in leaves} for m, leaves in params.items()
    }
    return optax.chain(tx, optax.masked(optax.scale_by_schedule(encoder_scale), is_encoder))
