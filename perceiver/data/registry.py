"""Data sources the runner can read, by `data.name` (a registry).

A source declares its contract once: how to make one host's batches of a
split and how many examples a split has. TFDS-backed datasets (ImageNet,
AudioSet, ModelNet40) go through `perceiver.data.get_dataset`; sources that
read host arrays directly (MNIST, synthetic, text corpora, ...) register a
`DataSource` here, so `perceiver.train.input_pipeline` needs no if-chain.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

import ml_collections


@dataclasses.dataclass(frozen=True)
class DataSource:
  """How the runner reads a dataset.

  `get_dataset(data_config, *, split, batch_size, shuffle_seed,
  process_index, process_count)` returns a `tf.data.Dataset` of dict
  batches for one host: for 'train' one epoch in the order given by
  `shuffle_seed`, remainder dropped; otherwise every example of the host's
  shard once, unshuffled. `num_examples(data_config, split)` counts a
  split over all hosts.
  """

  name: str
  get_dataset: Callable[..., Any]
  num_examples: Callable[[ml_collections.ConfigDict, str], int]


# name -> 'module:attribute' of a DataSource, imported on first use.
_BUILTIN: dict[str, str] = {
  'mnist': 'perceiver.data.mnist:SOURCE',
  'flow': 'perceiver.data.flow:SOURCE',
  'synthetic': 'perceiver.train.input_pipeline:SYNTHETIC',
  'text': 'perceiver.data.text:SOURCE',
  'glue': 'perceiver.data.glue:SOURCE',
}
_REGISTERED: dict[str, DataSource] = {}


def register(source: DataSource) -> None:
  if source.name in _REGISTERED or source.name in _BUILTIN:
    raise ValueError(f'data source {source.name!r} is already registered')
  _REGISTERED[source.name] = source


def get(name: str) -> DataSource | None:
  """The registered source `name`, or None (a TFDS pipeline, or unknown)."""
  if name in _REGISTERED:
    return _REGISTERED[name]
  if name not in _BUILTIN:
    return None
  module, attr = _BUILTIN[name].split(':')
  return getattr(importlib.import_module(module), attr)


def names() -> tuple[str, ...]:
  return tuple(sorted(set(_BUILTIN) | set(_REGISTERED)))
