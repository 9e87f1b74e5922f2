"""`get_dataset`: builder -> host shard -> shuffle -> preprocess -> batch."""

import os
from typing import Any

import ml_collections
import tensorflow_datasets as tfds

from perceiver.data import config as config_lib
from perceiver.data import errors
from perceiver.data._tf import tf

SPLITS = ('train', 'valid', 'test')


def _module(name: str):
  # Imported lazily: each module pulls in its own readers (h5py, PyAV, ...).
  if name == 'imagenet2012':
    from perceiver.data import imagenet as module  # pylint: disable=g-import-not-at-top
  elif name == 'audioset':
    from perceiver.data import audioset as module  # pylint: disable=g-import-not-at-top
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

  Raises MissingDataError naming the expected manual files (and where to get
  them) when the records are absent and cannot be built.
  """
  config = config_lib.resolve_config(data_config)
  module = _module(config.name)
  builder = module.make_builder(config)
  prepare = config.prepare if prepare is None else prepare
  if not _is_prepared(builder):
    expected = module.expected_manual_files(config)
    wanted = sorted({s for s in needed_splits if s in expected}) or sorted(
        expected)
    missing = [p for s in wanted for p in expected[s]
               if not config.manual_dir or not tf.io.gfile.exists(p)]
    if missing or not prepare:
      where = (f' (or prepared records under {builder.data_dir})'
               if not missing else '')
      raise errors.MissingDataError(
          config.name, (missing or [str(builder.data_dir)]),
          module.HOW_TO_GET + where +
          ('' if prepare else '; data_config.prepare is False, so records '
           'are not built here'))
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
  repeat = is_training if config.repeat is None else config.repeat
  if repeat:
    ds = ds.repeat()
  if is_training:
    ds = ds.shuffle(config.shuffle_buffer, seed=shuffle_seed)
  filter_fn = getattr(module, 'filter_fn', lambda c, t: None)(
      config, is_training)
  if filter_fn is not None:
    ds = ds.filter(filter_fn)
  parallel = (tf.data.AUTOTUNE if config.num_parallel_calls < 0
              else config.num_parallel_calls)
  ds = ds.map(lambda ex: module.preprocess(ex, config, is_training),
              num_parallel_calls=parallel, deterministic=not is_training)
  drop = is_training if config.drop_remainder is None else config.drop_remainder
  ds = ds.batch(batch_size, drop_remainder=drop)
  batch_fn = module.batch_fn(config, is_training)
  if batch_fn is not None:
    ds = ds.map(batch_fn, num_parallel_calls=parallel)
  return ds.prefetch(tf.data.AUTOTUNE)
