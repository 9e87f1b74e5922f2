"""Training objectives the runner can optimise and evaluate (a registry).

The runner (`perceiver.train.trainer`) knows batches, steps, sharding and
checkpoints; everything that depends on *what* is learned lives in a `Task`:
which model to build, which batch keys the devices need, the training loss
and the evaluation metrics. A run picks its task with `config.task`
(default 'classification'), so a new objective plugs in without touching
the trainer.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping, Protocol

import haiku as hk
import jax
import ml_collections
import numpy as np

Batch = Mapping[str, jax.Array]


class Task(Protocol):
  """What a run learns. Implementations are stateless; config is passed in."""

  name: str
  # Batch keys the devices need (model inputs and targets). The runner adds
  # `mask` (float [B], 0 for padding rows) to evaluation batches.
  batch_keys: tuple[str, ...]

  def check_config(self, config: ml_collections.ConfigDict) -> None:
    """Raises `perceiver.train.config_checks.ConfigError` naming a field."""

  def build_model(self, config: ml_collections.ConfigDict) -> hk.TransformedWithState:
    """The network; `init`/`apply` take `model_inputs(batch)` positionally."""

  def model_inputs(self, batch: Batch) -> Any:
    """The single positional input of `net.init` / `net.apply`."""

  def train_loss(
    self,
    net: hk.TransformedWithState,
    params: hk.Params,
    model_state: hk.State,
    rng: jax.Array,
    batch: Batch,
    config: ml_collections.ConfigDict,
  ) -> tuple[jax.Array, tuple[hk.State, dict[str, jax.Array]]]:
    """(scalar loss, (new model state, scalar metrics to log))."""

  def eval_outputs(
    self,
    net: hk.TransformedWithState,
    params: hk.Params,
    model_state: hk.State,
    batch: Batch,
    config: ml_collections.ConfigDict,
  ) -> dict[str, Any]:
    """Per-example float metrics [B] (averaged over rows with mask > 0) and
    optionally `collect`: {name: [B, ...]} gathered over the evaluation set
    (valid rows only) for `finalize_eval`."""

  def finalize_eval(self, collected: Mapping[str, np.ndarray], config: ml_collections.ConfigDict) -> dict[str, float]:
    """Metrics that need the whole evaluation set (mAP, F1, correlation)."""


# name -> 'module:factory', imported on first use (each task pulls in its own
# dependencies only when a run asks for it).
_BUILTIN: dict[str, str] = {
  'classification': 'perceiver.tasks.classification:ClassificationTask',
  'mlm': 'perceiver.tasks.language:MaskedLMTask',
  'glue': 'perceiver.tasks.language:GlueTask',
  'flow': 'perceiver.tasks.flow:FlowTask',
  'autoencoding': 'perceiver.tasks.autoencoding:AutoencodingTask',
}
_REGISTERED: dict[str, Callable[[], Task]] = {}


def register(name: str, factory: Callable[[], Task]) -> None:
  """Makes `config.task = name` build its task with `factory()`."""
  if name in _REGISTERED or name in _BUILTIN:
    raise ValueError(f'task {name!r} is already registered')
  _REGISTERED[name] = factory


def names() -> tuple[str, ...]:
  return tuple(sorted(set(_BUILTIN) | set(_REGISTERED)))


def get(name: str) -> Task:
  """The task registered as `name`; ValueError listing the known ones."""
  if name in _REGISTERED:
    return _REGISTERED[name]()
  if name not in _BUILTIN:
    raise ValueError(f'config.task={name!r}; expected one of {list(names())}')
  module, factory = _BUILTIN[name].split(':')
  return getattr(importlib.import_module(module), factory)()


def get_task(config: ml_collections.ConfigDict) -> Task:
  """The task of a run config (`config.task`, default 'classification')."""
  return get(config.get('task', 'classification'))
