"""Throughput of each training pipeline, one JSON line per pipeline.

  python -m perceiver_tools.data_benchmark --data_dir DIR [--tfds_dir T]
      [--batch_size 32] [--batches 20] [--only imagenet2012,audioset/mel]
      [--baselines]

DIR is laid out as scripts/make_sample_data.py writes it (DIR/imagenet,
DIR/audioset, DIR/modelnet). Records are built into --tfds_dir (default
DIR/tfds) on first use; that build and the first (warm-up) batches are not
timed. With --baselines, also prints the linear baseline of each dataset.
"""

import argparse
import json
import os
import time

from perceiver.data import baselines
from perceiver.data import pipeline

# name -> (data_config overrides, dataset subdirectory).
PIPELINES = {
    'imagenet2012': (dict(name='imagenet2012', train_split='train[100:]',
                          valid_split='train[:100]'), 'imagenet'),
    'audioset/raw': (dict(name='audioset'), 'audioset'),
    'audioset/mel': (dict(name='audioset', audio_repr='mel'), 'audioset'),
    'audioset/audio_video': (dict(name='audioset', modality='audio_video',
                                  video_patched=True), 'audioset'),
    'modelnet40/off': (dict(name='modelnet40', source='off'), 'modelnet'),
    'modelnet40/hdf5': (dict(name='modelnet40', source='hdf5'), 'modelnet'),
}
_BASELINE_SPLITS = {
    'imagenet2012': ('train', 'validation'),
    'audioset/raw': ('balanced_train+unbalanced_train', 'eval'),
    'modelnet40/hdf5': ('train', 'test'),
}


def configs(data_dir: str, tfds_dir: str) -> dict[str, dict]:
  return {name: dict(overrides, manual_dir=os.path.join(data_dir, sub),
                     data_dir=tfds_dir)
          for name, (overrides, sub) in PIPELINES.items()}


def throughput(config: dict, batch_size: int, batches: int,
               warmup: int = 2) -> float:
  """Training examples per second after `warmup` batches."""
  ds = pipeline.get_dataset(config, split='train', batch_size=batch_size,
                            shuffle_seed=0)
  it = ds.as_numpy_iterator()
  for _ in range(warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', required=True)
  parser.add_argument('--tfds_dir', default=None)
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--batches', type=int, default=20)
  parser.add_argument('--only', default='',
                      help=f'comma-separated subset of {list(PIPELINES)}')
  parser.add_argument('--baselines', action='store_true')
  args = parser.parse_args(argv)
  tfds_dir = args.tfds_dir or os.path.join(args.data_dir, 'tfds')
  only = [n for n in args.only.split(',') if n]
  unknown = set(only) - set(PIPELINES)
  if unknown:
    parser.error(f'unknown pipelines {sorted(unknown)}')
  for name, config in configs(args.data_dir, tfds_dir).items():
    if only and name not in only:
      continue
    pipeline.get_builder(config)  # Build records outside the timing.
    rate = throughput(config, args.batch_size, args.batches)
    print(json.dumps({'pipeline': name, 'examples_per_s': round(rate, 1),
                      'batch_size': args.batch_size,
                      'batches': args.batches, 'cpus': os.cpu_count()}),
          flush=True)
    if args.baselines and name in _BASELINE_SPLITS:
      result = baselines.linear_baseline(config, *_BASELINE_SPLITS[name])
      print(json.dumps({'baseline': name, **result}), flush=True)


if __name__ == '__main__':
  main()
