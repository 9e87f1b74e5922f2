"""`get_dataset`: builder -> host shard -> shuffle -> preprocess -> batch."""

import importlib
import os
from typing import Any

from absl import logging
import ml_collections
import tensorflow_datasets as tfds

from perceiver.data import config as config_lib
from perceiver.data import errors
from perceiver.data import rng as rng_lib
from perceiver.data._tf import tf

SPLITS = ('train', 'valid', 'test')
# Examples probed at start for at least one that passes a module's filter,
# and the most a filter may reject in a row later on.
FILTER_PROBE = 256
MAX_REJECTED_IN_A_ROW = 10_000


class NoUsableExamplesError(ValueError):
  """A dataset's filter or decoder leaves no example to train or evaluate on."""


def _no_usable(name: str, split: str, what: str, reason: str) -> str:
  return f'{name} {split}: {what}: {reason}'


def _check_some_pass(ds: tf.data.Dataset, filter_fn, name: str, split: str, reason: str) -> None:
  """Raises NoUsableExamplesError if none of the first FILTER_PROBE examples pass."""
  probed = ds.take(FILTER_PROBE)
  for _ in probed.filter(filter_fn).take(1):
    return
  count = int(probed.reduce(0, lambda n, _: n + 1))
  what = f'none of the first {count} examples is usable' if count else 'the split has no examples'
  raise NoUsableExamplesError(_no_usable(name, split, what, reason))


def _bounded_filter(
  ds: tf.data.Dataset, filter_fn, max_run: int, name: str, split: str, reason: str
) -> tf.data.Dataset:
  """``ds.filter(filter_fn)`` that fails after ``max_run`` rejections in a row."""
  message = _no_usable(name, split, f'{max_run} examples in a row are unusable', reason)

  def step(run, example):
    keep = filter_fn(example)
    run = tf.where(keep, tf.constant(0, tf.int64), run + 1)
    check = tf.debugging.assert_less(run, tf.constant(max_run, tf.int64), message=message)
    with tf.control_dependencies([check]):
      keep = tf.identity(keep)
    return run, (keep, example)

  ds = ds.scan(tf.constant(0, tf.int64), step)
  return ds.filter(lambda keep, example: keep).map(lambda keep, example: example)


# Dataset name -> its module (imported lazily: each pulls in its own readers,
# h5py, PyAV, ...). The registry of names is config.NAMES.
_MODULES = {
  'imagenet2012': 'perceiver.data.imagenet',
  'audioset': 'perceiver.data.audioset',
  'modelnet40': 'perceiver.data.modelnet',
  'kinetics': 'perceiver.data.kinetics',
}


def _module(name: str):
  if name not in _MODULES:
    raise ValueError(f'unknown dataset name {name!r}; expected one of {sorted(_MODULES)}')
  return importlib.import_module(_MODULES[name])


def tfds_split(config: ml_collections.ConfigDict, split: str) -> str:
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
  return config[f'{split}_split']


def base_splits(split: str) -> list[str]:
  """'train[10000:]+validation' -> ['train', 'validation']."""
  return [s.split('[')[0].strip() for s in split.split('+')]


def get_builder(data_config, *, prepare: bool | None = None, needed_splits: tuple[str, ...] = ()):
  """The TFDS builder for `data_config`, prepared from manual_dir if needed.

  `needed_splits` (TFDS split names) must be buildable or already built;
  with none given, at least one split must be. Raises MissingDataError
  naming the expected manual files (and where to get them) otherwise.
  """
  config = config_lib.resolve_config(data_config)
  module = _module(config.name)
  builder = module.make_builder(config)
  prepare = config.prepare if prepare is None else prepare
  expected = module.expected_manual_files(config)  # split -> glob patterns
  if _is_prepared(builder):
    absent = [s for s in needed_splits if s not in builder.info.splits]
    if absent:
      raise errors.MissingDataError(
        config.name,
        [p for s in absent for p in expected.get(s, [])],
        f'the records in {builder.data_dir} were built without split(s) '
        f'{absent}; add the files and delete that directory to rebuild. ' + module.HOW_TO_GET,
      )
    return builder
  missing = {
    s: [p for p in patterns if not config.manual_dir or not tf.io.gfile.glob(p)] for s, patterns in expected.items()
  }
  if needed_splits:
    absent = sorted({p for s in needed_splits for p in missing.get(s, [])})
  elif all(missing.values()):
    absent = sorted({p for paths in missing.values() for p in paths})
  else:
    absent = []
  if absent or not prepare:
    how = module.HOW_TO_GET
    if not prepare:
      how += f'; data_config.prepare is False, so the records expected in {builder.data_dir} are not built here'
    raise errors.MissingDataError(config.name, absent or [str(builder.data_dir)], how)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=config.manual_dir or None))
  errors.write_report(os.fspath(builder.data_dir), getattr(builder, 'report_entries', []), logging)
  return builder


def label_names(builder) -> list[str]:
  """The class names of built records, in label order."""
  if 'label' in builder.info.features and hasattr(builder.info.features['label'], 'names'):
    return list(builder.info.features['label'].names)
  return list((builder.info.metadata or {}).get('class_names', []))


def num_classes(data_config, builder=None) -> int:
  """The class count of the data: its own label list, or `num_classes`.

  A `num_classes` > 0 that differs from the label list's length raises a
  one-line ValueError naming data.num_classes.
  """
  config = config_lib.resolve_config(data_config)
  builder = builder or get_builder(config)
  names = label_names(builder)
  if config.num_classes and names and config.num_classes != len(names):
    raise ValueError(
      f'data.num_classes={config.num_classes} but the {config.name} records '
      f'in {builder.data_dir} have {len(names)} classes; set '
      f'--config.data.num_classes=0 (= take it from the data) or '
      f'{len(names)}'
    )
  return config.num_classes or len(names)


def check_split(builder, config, split: str, split_str: str) -> int:
  """Examples of `split_str`; a clear ValueError if it does not fit.

  TFDS's own message ('Requested slice [10000:1497] incompatible with 1497
  examples') names neither the config field nor a fix.
  """
  try:
    return builder.info.splits[split_str].num_examples
  except (ValueError, AssertionError, KeyError) as e:
    sizes = {name: info.num_examples for name, info in builder.info.splits.items()}
    raise ValueError(
      f'data.{split}_split={split_str!r} does not fit the records in '
      f'{builder.data_dir} (split sizes: {sizes}); override it, e.g. '
      f"--config.data.{split}_split='train[10%:]' (percentages fit any "
      f'size) [{type(e).__name__}: {" ".join(str(e).split())[:200]}]'
    ) from None


def _is_prepared(builder) -> bool:
  return tf.io.gfile.exists(os.path.join(builder.data_dir, 'dataset_info.json'))


def get_dataset(
  data_config: ml_collections.ConfigDict | dict[str, Any],
  *,
  split: str,
  batch_size: int,
  shuffle_seed: int | None,
  process_index: int = 0,
  process_count: int = 1,
) -> tf.data.Dataset:
  """Batched examples of `split` ('train' | 'valid' | 'test') for one host.

  Training ('train') shuffles files and examples (seeded by `shuffle_seed`;
  None = a fresh seed), augments, repeats and drops the last partial batch;
  'valid'/'test' are read once, in order, without augmentation. Each host
  reads 1/process_count of the split (tfds.even_splits). `batch_size` is per
  host.
  """
  config = config_lib.resolve_config(data_config)
  module = _module(config.name)
  split_str = tfds_split(config, split)
  builder = get_builder(config, needed_splits=tuple(base_splits(split_str)))
  config.num_classes = num_classes(config, builder)
  check_split(builder, config, split, split_str)
  is_training = split == 'train'
  host_split = tfds.even_splits(split_str, n=process_count, drop_remainder=False)[process_index]
  read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed, interleave_cycle_length=4, add_tfds_id=False)
  ds = builder.as_dataset(
    split=host_split, shuffle_files=is_training, read_config=read_config, decoders=module.decoders(config)
  )
  if config.cache:
    ds = ds.cache()
  if is_training:
    # Before repeat: the buffer never holds more than one epoch.
    ds = ds.shuffle(config.shuffle_buffer, seed=shuffle_seed)
  repeat = is_training if config.repeat is None else config.repeat
  if repeat:
    ds = ds.repeat()
  filter_fn = getattr(module, 'filter_fn', lambda c, t: None)(config, is_training)
  # The training set repeats forever: a filter that rejects everything
  # would spin without a word. Refuse at start when none of the first
  # examples is usable, and stop any later run of rejections in a row.
  usable_fn = getattr(module, 'usable_fn', lambda c: None)(config) or filter_fn
  reason = getattr(module, 'filter_reason', lambda c: 'rejected by the filter')(config)
  if usable_fn is not None:
    _check_some_pass(
      builder.as_dataset(split=host_split, decoders=module.decoders(config)), usable_fn, config.name, split, reason
    )
  if filter_fn is not None:
    ds = _bounded_filter(ds, filter_fn, MAX_REJECTED_IN_A_ROW, config.name, split, reason)
  parallel = tf.data.AUTOTUNE if config.num_parallel_calls < 0 else config.num_parallel_calls
  if is_training:
    # Augmentation draws from per-example seeds (see rng.py): the same
    # shuffle_seed gives the same batches.
    ds = tf.data.Dataset.zip(ds, rng_lib.example_seeds(shuffle_seed))
    ds = ds.map(
      lambda ex, seed: module.preprocess(ex, config, True, rng_lib.SeedStream(seed)), num_parallel_calls=parallel
    )
  else:
    ds = ds.map(lambda ex: module.preprocess(ex, config, False, None), num_parallel_calls=parallel)
  drop = is_training if config.drop_remainder is None else config.drop_remainder
  ds = ds.batch(batch_size, drop_remainder=drop)
  batch_fn = module.batch_fn(config, is_training)
  if batch_fn is not None:
    batch_seed = None if shuffle_seed is None else shuffle_seed + 1
    ds = tf.data.Dataset.zip(ds, rng_lib.example_seeds(batch_seed))
    ds = ds.map(lambda b, seed: batch_fn(b, rng_lib.SeedStream(seed)), num_parallel_calls=parallel)
  return ds.prefetch(tf.data.AUTOTUNE)
