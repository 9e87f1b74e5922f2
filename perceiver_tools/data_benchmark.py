"""Throughput of each training pipeline, one JSON line per pipeline.

  python -m perceiver_tools.data_benchmark --data_dir=DIR [--tfds_dir=T]
      [--batch_size=32] [--batches=20] [--only=imagenet2012,audioset/mel]
      [--baselines]
  perceiver-data-benchmark --data_dir=DIR ...   # installed

DIR is laid out as scripts/make_sample_data.py writes it (DIR/imagenet,
DIR/audioset, DIR/modelnet). Records are built into --tfds_dir (default
DIR/tfds) on first use; that build and the first (warm-up) batches are not
timed. With --baselines, also prints the linear baseline of each dataset.
"""

import json
import os
import sys
import time

from absl import flags

from perceiver.data import baselines
from perceiver.data import pipeline
from perceiver_tools.cli import _flags

# name -> (data_config overrides, dataset subdirectory).
PIPELINES = {
  'imagenet2012': (dict(name='imagenet2012', train_split='train[100:]', valid_split='train[:100]'), 'imagenet'),
  'audioset/raw': (dict(name='audioset'), 'audioset'),
  'audioset/mel': (dict(name='audioset', audio_repr='mel'), 'audioset'),
  'audioset/audio_video': (dict(name='audioset', modality='audio_video', video_patched=True), 'audioset'),
  'modelnet40/off': (dict(name='modelnet40', source='off'), 'modelnet'),
  'modelnet40/hdf5': (dict(name='modelnet40', source='hdf5'), 'modelnet'),
}
_BASELINE_SPLITS = {
  'imagenet2012': ('train', 'validation'),
  'audioset/raw': ('balanced_train+unbalanced_train', 'eval'),
  'modelnet40/hdf5': ('train', 'test'),
}


def configs(data_dir: str, tfds_dir: str) -> dict[str, dict]:
  return {
    name: dict(overrides, manual_dir=os.path.join(data_dir, sub), data_dir=tfds_dir)
    for name, (overrides, sub) in PIPELINES.items()
  }


def throughput(config: dict, batch_size: int, batches: int, warmup: int = 2) -> float:
  """Training examples per second after `warmup` batches."""
  ds = pipeline.get_dataset(config, split='train', batch_size=batch_size, shuffle_seed=0)
  it = ds.as_numpy_iterator()
  for _ in range(warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * batch_size / (time.perf_counter() - start)


FLAGS = flags.FlagValues()
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'sample data (scripts/make_sample_data.py)', flag_values=FLAGS)
_TFDS_DIR = flags.DEFINE_string('tfds_dir', None, 'TFDS records (default: DATA_DIR/tfds)', flag_values=FLAGS)
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 32, 'examples per batch', lower_bound=1, flag_values=FLAGS)
_BATCHES = flags.DEFINE_integer('batches', 20, 'timed batches', lower_bound=1, flag_values=FLAGS)
_ONLY = flags.DEFINE_list('only', [], f'subset of {list(PIPELINES)}', flag_values=FLAGS)
_BASELINES = flags.DEFINE_bool('baselines', False, 'also print the linear baselines', flag_values=FLAGS)
flags.mark_flag_as_required('data_dir', flag_values=FLAGS)


def main(argv: list[str] | None = None) -> int:
  _flags.parse(FLAGS, argv, __doc__)
  tfds_dir = _TFDS_DIR.value or os.path.join(_DATA_DIR.value, 'tfds')
  only = [n for n in _ONLY.value if n]
  unknown = set(only) - set(PIPELINES)
  if unknown:
    print(f'error: --only: unknown pipelines {sorted(unknown)}', file=sys.stderr)
    return 2
  for name, config in configs(_DATA_DIR.value, tfds_dir).items():
    if only and name not in only:
      continue
    pipeline.get_builder(config)  # Build records outside the timing.
    rate = throughput(config, _BATCH_SIZE.value, _BATCHES.value)
    print(
      json.dumps(
        {
          'pipeline': name,
          'examples_per_s': round(rate, 1),
          'batch_size': _BATCH_SIZE.value,
          'batches': _BATCHES.value,
          'cpus': os.cpu_count(),
        }
      ),
      flush=True,
    )
    if _BASELINES.value and name in _BASELINE_SPLITS:
      result = baselines.linear_baseline(config, *_BASELINE_SPLITS[name])
      print(json.dumps({'baseline': name, **result}), flush=True)
  return 0


def run() -> None:
  sys.exit(main())


if __name__ == '__main__':
  run()
