"""`get_dataset`: builder -> host shard -> shuffle -> preprocess -> batch."""

import os
from typing import Any

import ml_collections
import tensorflow_datasets as tfds

from perceiver.data import config as config_lib
from perceiver.data import errors
from perceiver.data import rng as rng_lib
from perceiver.data._tf import tf

SPLITS = ('train', 'valid', 'test')


def _module(name: str):
  # Imported lazily: each module pulls in its own readers (h5py, PyAV, ...).
  if name == 'imagenet2012':
    from perceiver.data import imagenet as module  # pylint: disable=g-import-not-at-top
  elif name == 'audioset':
    from perceiver.data import audioset as module  # pylint: disable=g-import-not-at-top
  elif name == 'kinetics':
    from perceiver.data import kinetics as module  # pylint: disable=g-import-not-at-top
  else:
    from perceiver.data import modelnet as module  # pylint: disable=g-import-not-at-top
  return module


def tfds_split(config: ml_collections.ConfigDict, split: str) -> str:
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
  return config[f'{split}_split']


def _base_splits(split: str) -> list[str]:
  """'train[10000:]+validation' -> ['train', 'validation']."""
  return [s.split('[')[0].strip() for s in split.split('+')]


def get_builder(data_config, *, prepare: bool | None = None,
                needed_splits: tuple[str, ...] = ()):
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
          config.name, [p for s in absent for p in expected.get(s, [])],
          f'the records in {builder.data_dir} were built without split(s) '
          f'{absent}; add the files and delete that directory to rebuild. '
          + module.HOW_TO_GET)
    return builder
  missing = {s: [p for p in patterns if not config.manual_dir
                 or not tf.io.gfile.glob(p)]
             for s, patterns in expected.items()}
  if needed_splits:
    absent = sorted({p for s in needed_splits for p in missing.get(s, [])})
  elif all(missing.values()):
    absent = sorted({p for paths in missing.values() for p in paths})
  else:
    absent = []
  if absent or not prepare:
    how = module.HOW_TO_GET
    if not prepare:
      how += (f'; data_config.prepare is False, so the records expected in '
              f'{builder.data_dir} are not built here')
    raise errors.MissingDataError(config.name,
                                  absent or [str(builder.data_dir)], how)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          manual_dir=config.manual_dir))
  return builder


def _is_prepared(builder) -> bool:
  return tf.io.gfile.exists(os.path.join(builder.data_dir,
                                         'dataset_info.json'))


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
  builder = get_builder(config, needed_splits=tuple(_base_splits(split_str)))
  if config.get('num_classes') is None:
    config.num_classes = len(builder.info.metadata['class_names'])
  is_training = split == 'train'
  host_split = tfds.even_splits(split_str, n=process_count,
                                drop_remainder=False)[process_index]
  read_config = tfds.ReadConfig(
      shuffle_seed=shuffle_seed, interleave_cycle_length=4,
      add_tfds_id=False)
  ds = builder.as_dataset(
      split=host_split, shuffle_files=is_training, read_config=read_config,
      decoders=module.decoders(config))
  if config.cache:
    ds = ds.cache()
  if is_training:
    # Before repeat: the buffer never holds more than one epoch.
    ds = ds.shuffle(config.shuffle_buffer, seed=shuffle_seed)
  repeat = is_training if config.repeat is None else config.repeat
  if repeat:
    ds = ds.repeat()
  filter_fn = getattr(module, 'filter_fn', lambda c, t: None)(
      config, is_training)
  if filter_fn is not None:
    ds = ds.filter(filter_fn)
  parallel = (tf.data.AUTOTUNE if config.num_parallel_calls < 0
              else config.num_parallel_calls)
  if is_training:
    # Augmentation draws from per-example seeds (see rng.py): the same
    # shuffle_seed gives the same batches.
    ds = tf.data.Dataset.zip(ds, rng_lib.example_seeds(shuffle_seed))
    ds = ds.map(lambda ex, seed: module.preprocess(
        ex, config, True, rng_lib.SeedStream(seed)),
                num_parallel_calls=parallel)
  else:
    ds = ds.map(lambda ex: module.preprocess(ex, config, False, None),
                num_parallel_calls=parallel)
  drop = is_training if config.drop_remainder is None else config.drop_remainder
  ds = ds.batch(batch_size, drop_remainder=drop)
  batch_fn = module.batch_fn(config, is_training)
  if batch_fn is not None:
    batch_seed = None if shuffle_seed is None else shuffle_seed + 1
    ds = tf.data.Dataset.zip(ds, rng_lib.example_seeds(batch_seed))
    ds = ds.map(lambda b, seed: batch_fn(b, rng_lib.SeedStream(seed)),
                num_parallel_calls=parallel)
  return ds.prefetch(tf.data.AUTOTUNE)
