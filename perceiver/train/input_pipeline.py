"""Glue between the data pipelines and the training loop.

The data order is a function of (seed, epoch) only: epoch ``e`` is read from
a fresh dataset built with ``shuffle_seed = epoch_seed(seed, e)``, and a run
resumed at step ``s`` rebuilds epoch ``s // steps_per_epoch`` and skips
``s % steps_per_epoch`` batches. This is exact (provided the pipeline is
deterministic for a given seed, which ours are) and costs nothing to save.
We do not checkpoint tf.data iterators instead: their state holds the shuffle
buffer (gigabytes of decoded images), is per host, and is tied to the number
of hosts; the price of skipping is re-reading at most one epoch's prefix
after a restart.

Data sources: those of ``perceiver.data.registry`` (``mnist``,
``synthetic``: random arrays of configured shapes, for smoke tests and
throughput measurements, ...) and every TFDS pipeline of
``perceiver.data.get_dataset``.
"""

from typing import Any, Iterator

import ml_collections
import numpy as np

from perceiver.data import registry

MODALITY_KEYS = ('image', 'points', 'audio', 'video', 'pos')


def epoch_seed(seed: int, epoch: int) -> int:
  """A 31-bit shuffle seed for ``epoch`` (tf.data wants int64, TFDS int32)."""
  state = np.random.SeedSequence([seed, epoch]).generate_state(1)[0]
  return int(state >> 1)


def split_inputs(batch: dict[str, Any]) -> dict[str, Any]:
  """The model inputs of a batch: its modality keys."""
  return {k: v for k, v in batch.items() if k in MODALITY_KEYS}


def synthetic_config(
  inputs: dict[str, tuple[int, ...]],
  num_classes: int,
  multi_label: bool = False,
  num_train: int = 64,
  num_eval: int = 24,
  num_eval_clips: int = 0,
) -> ml_collections.ConfigDict:
  """Data section of the ``synthetic`` source.

  ``num_eval_clips`` > 0 gives eval inputs a clip axis [B, clips, ...] like
  AudioSet's evaluation.
  """
  return ml_collections.ConfigDict(
    dict(
      name='synthetic',
      inputs=dict(inputs),
      num_classes=num_classes,
      multi_label=multi_label,
      num_train_examples=num_train,
      num_eval_examples=num_eval,
      num_eval_clips=num_eval_clips,
    )
  )


def _synthetic_dataset(
  cfg: ml_collections.ConfigDict,
  *,
  split: str,
  batch_size: int,
  shuffle_seed: int | None,
  process_index: int,
  process_count: int,
):
  """Random examples keyed by (seed, example index): host-count invariant.

  Labels depend on the input's mean so there is something to learn.
  """
  from perceiver.data._tf import tf

  train = split == 'train'
  n = cfg.num_train_examples if train else cfg.num_eval_examples
  global_batch = batch_size * process_count
  if train:
    n = n // global_batch * global_batch
    order = np.random.default_rng([shuffle_seed, 1]).permutation(n)
    order = order.reshape(-1, process_count, batch_size)[:, process_index]
    order = order.reshape(-1)
  else:
    order = np.arange(process_index, n, process_count)
  base = 0 if train else 1 << 20
  clips = () if train or cfg.num_eval_clips <= 0 else (cfg.num_eval_clips,)
  arrays = {k: [] for k in cfg.inputs}
  labels = []
  for i in order:
    rng = np.random.default_rng([base + int(i), 7])
    x = {k: rng.normal(size=clips + tuple(s)).astype(np.float32) for k, s in cfg.inputs.items()}
    for k in x:
      arrays[k].append(x[k])
    score = float(np.mean([v.mean() for v in x.values()]))
    cls = int(np.clip((score * 8 + 0.5) * cfg.num_classes, 0, cfg.num_classes - 1))
    if cfg.multi_label:
      labels.append(np.eye(cfg.num_classes, dtype=np.float32)[cls])
    else:
      labels.append(np.int32(cls))
  data = {k: np.stack(v) for k, v in arrays.items()}
  data['label'] = np.stack(labels)
  return tf.data.Dataset.from_tensor_slices(data).batch(batch_size)


def _synthetic_num_examples(cfg: ml_collections.ConfigDict, split: str) -> int:
  return cfg.num_train_examples if split == 'train' else cfg.num_eval_examples


SYNTHETIC = registry.DataSource('synthetic', _synthetic_dataset, _synthetic_num_examples)


def get_dataset(
  data_config: ml_collections.ConfigDict,
  *,
  split: str,
  batch_size: int,
  shuffle_seed: int | None,
  process_index: int,
  process_count: int,
):
  """Per-host ``tf.data.Dataset`` of ``split`` (train: one epoch's order)."""
  kwargs = dict(
    split=split,
    batch_size=batch_size,
    shuffle_seed=shuffle_seed,
    process_index=process_index,
    process_count=process_count,
  )
  source = registry.get(data_config.name)
  if source is not None:
    return source.get_dataset(data_config, **kwargs)
  from perceiver import data

  return data.get_dataset(data_config, **kwargs)


def num_examples(data_config: ml_collections.ConfigDict, split: str) -> int:
  """Examples in ``split`` (all hosts together)."""
  source = registry.get(data_config.name)
  if source is not None:
    return source.num_examples(data_config, split)
  from perceiver import data
  from perceiver.data import pipeline

  config = data.resolve_config(data_config)
  split_str = pipeline.tfds_split(config, split)
  needed = tuple(pipeline.base_splits(split_str))
  builder = data.get_builder(config, needed_splits=needed)
  try:
    return pipeline.check_split(builder, config, split, split_str)
  except ValueError as e:  # A split that does not fit: a config error.
    from perceiver.train import config_checks

    raise config_checks.ConfigError(str(e)) from None


def check_num_classes(data_config: ml_collections.ConfigDict, model_classes: int) -> None:
  """Raises ValueError unless the data has ``model_classes`` classes.

  The class count of a TFDS pipeline comes from the data's own label list
  (or ``data.num_classes``), so a user's own 10-class set with a 1,000-way
  head fails here, before compiling, with the override that fixes it.
  """
  if registry.get(data_config.name) is not None:
    return  # Not a TFDS pipeline: the source's config states its classes.
  from perceiver.data import pipeline

  data_classes = pipeline.num_classes(data_config)
  if data_classes != model_classes:
    raise ValueError(
      f'the {data_config.name} data has {data_classes} classes but '
      f'model.decoder.num_classes={model_classes}; set '
      f'--config.model.decoder.num_classes={data_classes}'
    )


def train_batches(
  data_config: ml_collections.ConfigDict,
  *,
  seed: int,
  start_step: int,
  steps_per_epoch: int,
  host_batch: int,
  process_index: int,
  process_count: int,
) -> Iterator[dict[str, np.ndarray]]:
  """Host-local training batches from global step ``start_step`` on."""
  epoch, offset = divmod(start_step, steps_per_epoch)
  while True:
    ds = get_dataset(
      data_config,
      split='train',
      batch_size=host_batch,
      shuffle_seed=epoch_seed(seed, epoch),
      process_index=process_index,
      process_count=process_count,
    )
    wanted = steps_per_epoch - offset
    got = 0
    for batch in ds.skip(offset).take(wanted).as_numpy_iterator():
      got += 1
      yield batch
    if got < wanted:
      raise ValueError(
        f'epoch {epoch} of {data_config.name!r} gave {offset + got} batches '
        f'of {host_batch} on process {process_index}; expected '
        f'{steps_per_epoch}'
      )
    epoch, offset = epoch + 1, 0


def eval_batches(
  data_config: ml_collections.ConfigDict, *, split: str, host_batch: int, process_index: int, process_count: int
) -> Iterator[dict[str, np.ndarray]]:
  """Host-local eval batches, each padded to ``host_batch`` with ``mask``."""
  ds = get_dataset(
    data_config,
    split=split,
    batch_size=host_batch,
    shuffle_seed=None,
    process_index=process_index,
    process_count=process_count,
  )
  for batch in ds.as_numpy_iterator():
    yield pad_batch(batch, host_batch)


def pad_batch(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
  """Pads every array to ``size`` rows and adds ``mask`` float32 [size]."""
  n = len(next(iter(batch.values())))
  out = {
    k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)]) if n < size else v for k, v in batch.items()
  }
  out['mask'] = (np.arange(size) < n).astype(np.float32)
  return out
