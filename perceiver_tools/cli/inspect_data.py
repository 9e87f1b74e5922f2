#!/usr/bin/env python
r"""Checks a dataset before training: builds/reads it, decodes everything.

  python scripts/inspect_data.py --config=configs/imagenet.py:small_data \
      --config.data.manual_dir=DIR [--config.data.data_dir=RECORDS] \
      [--out=grid.png] [--grid=16]

Takes the same `--config` (and `--config.data.*` overrides) as
experiments/main.py. Builds the records if absent (listing every skipped,
converted or missing file in the records' build_report.tsv), then reads
every split of the config (train / valid / test) once through the
production pipeline, as training and evaluation will, and prints per split:
the number of examples, the count per class, and decoded examples per
second. Finally writes a grid picture of the first `--grid` training
examples as the model sees them (augmented), with their labels: images,
point clouds (x-y projection) or log-mel spectrograms.

A file that cannot be decoded fails here, with its path, instead of in a
training run. Datasets: imagenet2012, audioset, modelnet40.
"""

import collections
import math
import os
import sys
import time
from typing import List, Optional

from absl import flags
from ml_collections import config_flags
import numpy as np

from perceiver_tools.cli import _flags


def _label_list(label: np.ndarray) -> list[int]:
  """Class indices of one example's label (int, one-hot or multi-hot)."""
  if label.ndim == 0:
    return [int(label)]
  return [int(i) for i in np.flatnonzero(label > 0.5)]


def count_split(data_config, split: str, batch_size: int) -> dict:
  """Reads `split` once (no repeat, no partial-batch drop, hard labels)."""
  from perceiver.data import pipeline  # pylint: disable=g-import-not-at-top

  overrides = dict(repeat=0, drop_remainder=0)
  for mix in ('mixup_alpha', 'cutmix_alpha'):  # Soft labels hide classes.
    if mix in data_config:
      overrides[mix] = 0.0
  config = dict(data_config.items(), **overrides)
  ds = pipeline.get_dataset(config, split=split, batch_size=batch_size, shuffle_seed=0)
  counts = collections.Counter()
  n = 0
  start = time.perf_counter()
  for batch in ds.as_numpy_iterator():
    for label in batch['label']:
      counts.update(_label_list(np.asarray(label)))
    n += len(batch['label'])
  seconds = time.perf_counter() - start
  return dict(
    examples=n, per_class=dict(sorted(counts.items())), examples_per_s=n / max(seconds, 1e-9), seconds=seconds
  )


def _panel(ax, name: str, example: dict, data_config) -> None:
  """One decoded training example on a matplotlib axis."""
  if name == 'imagenet2012':
    from perceiver.data import imagenet  # pylint: disable=g-import-not-at-top

    image = example['image'] * np.array(imagenet.STDDEV_RGB) + np.array(imagenet.MEAN_RGB)
    ax.imshow(np.clip(image, 0, 255).astype(np.uint8))
  elif name == 'modelnet40':
    points = example['points']  # [N, 3]
    ax.scatter(points[:, 0], points[:, 1], s=0.3, c=points[:, 2], cmap='viridis')
    ax.set_aspect('equal')
  else:
    audio = example['audio']
    if data_config.audio_repr == 'raw':  # [480, 128] -> log-mel [96, 50].
      from perceiver.data import audioset  # pylint: disable=g-import-not-at-top

      audio = audioset.log_mel(
        audio.reshape(-1).astype(np.float32), data_config.mel_frames, data_config.mel_bins
      ).numpy()
    ax.imshow(audio.T, origin='lower', aspect='auto', cmap='magma')
  ax.set_xticks([])
  ax.set_yticks([])


def write_grid(data_config, path: str, count: int, names: list[str]) -> str:
  """PNG of the first `count` training examples with their labels."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from perceiver.data import pipeline  # pylint: disable=g-import-not-at-top

  config = (
    dict(data_config.items(), mixup_alpha=0.0, cutmix_alpha=0.0)
    if ('mixup_alpha' in data_config)
    else dict(data_config.items())
  )
  batch = next(pipeline.get_dataset(config, split='train', batch_size=count, shuffle_seed=0).as_numpy_iterator())
  count = len(batch['label'])
  cols = math.ceil(math.sqrt(count))
  rows = math.ceil(count / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.6 * rows), squeeze=False)
  for i, ax in enumerate(axes.flat):
    if i >= count:
      ax.axis('off')
      continue
    example = {k: v[i] for k, v in batch.items()}
    _panel(ax, data_config.name, example, data_config)
    labels = [names[c] if c < len(names) else str(c) for c in _label_list(np.asarray(example['label']))]
    shown = [l[:24] for l in labels[:4]] + (['...'] if len(labels) > 4 else [])
    ax.set_title('\n'.join(shown), fontsize=6)  # Multi-label: one per line.
  fig.suptitle(f'{data_config.name}: first {count} training examples (augmented, as the model sees them)', fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=80)
  plt.close(fig)
  return path


def inspect(data_config, out: str, grid: int = 16, batch_size: int = 64, log=print) -> dict:
  """Builds/reads `data_config`; prints and returns counts, writes the grid."""
  from perceiver.data import config as config_lib  # pylint: disable=g-import-not-at-top
  from perceiver.data import errors  # pylint: disable=g-import-not-at-top
  from perceiver.data import pipeline  # pylint: disable=g-import-not-at-top

  if data_config.name not in config_lib.NAMES:
    raise ValueError(f'data.name={data_config.name!r}: inspect_data reads the file datasets {config_lib.NAMES}')
  start = time.perf_counter()
  builder = pipeline.get_builder(data_config)
  names = pipeline.label_names(builder)
  log(
    f'{data_config.name}: records in {builder.data_dir} '
    f'({time.perf_counter() - start:.1f} s to build or open); '
    f'{len(names)} classes'
  )
  report = os.path.join(builder.data_dir, errors.REPORT_NAME)
  if os.path.exists(report):
    with open(report) as f:
      kinds = collections.Counter(line.split('\t')[0] for line in f if not line.startswith('kind\t'))
    log(f'  build report: {dict(kinds)} -> {report}')
  result = dict(name=data_config.name, classes=names, splits={})
  for split in pipeline.SPLITS:
    split_str = pipeline.tfds_split(data_config, split)
    stats = count_split(data_config, split, batch_size)
    result['splits'][split] = stats
    per_class = ', '.join(f'{names[c] if c < len(names) else c}: {n}' for c, n in stats['per_class'].items())
    log(
      f'  {split} ({split_str}): {stats["examples"]} examples, {stats["examples_per_s"]:.1f} examples/s | {per_class}'
    )
  out = out or f'inspect_{data_config.name}.png'
  result['grid'] = write_grid(data_config, out, grid, names)
  log(f'  grid of training examples: {result["grid"]}')
  return result


def _define_flags(argv: List[str]) -> flags.FlagValues:
  """This tool's flags, a fresh set for the command line `argv`.

  Fresh per call, not module-level: config_flags defines a flag for each
  `--config.*` override it finds in `argv` while parsing `--config`, and a
  second parse into the same set would define those flags twice.
  """
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file(
    'config',
    None,
    'Experiment config, e.g. configs/imagenet.py:small_data.',
    flag_values=flag_values,
    lock_config=True,
    sys_argv=['inspect_data', *argv],
  )
  flags.DEFINE_string(
    'out', '', "Grid PNG ('' : inspect_<dataset>.png in the current directory).", flag_values=flag_values
  )
  flags.DEFINE_integer('grid', 16, 'Training examples in the grid.', flag_values=flag_values)
  flags.DEFINE_integer('batch_size', 64, 'Batch size while reading.', flag_values=flag_values)
  flags.mark_flags_as_required(['config'], flag_values=flag_values)
  return flag_values


def main(argv: Optional[List[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  flag_values = _define_flags(argv)
  _flags.parse(flag_values, argv, __doc__)
  try:
    inspect(flag_values.config.data, flag_values.out, flag_values.grid, flag_values.batch_size)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f'inspect_data.py: error: {e}')
  return 0


def run() -> None:
  sys.exit(main())


if __name__ == '__main__':
  run()
