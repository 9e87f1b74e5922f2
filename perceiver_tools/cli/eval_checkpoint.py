"""ImageNet top-1/top-5 of a released (or converted) Perceiver IO checkpoint.

  python scripts/eval_checkpoint.py --checkpoint=imagenet_fourier_position_encoding.pystate \\
      --data_dir=~/tensorflow_datasets [--manual_dir=DIR_WITH_TARS] [--split=validation] \\
      [--config=FILE.json|FILE.npz | --preset=NAME] [--batch_size=50] [--max_examples=N] \\
      [--workdir=DIR]
  perceiver-eval --checkpoint=... ...   # installed

Reads the checkpoint with `perceiver.checkpoints.load_checkpoint` (DeepMind
`.pystate`, this project's `.npz`, Hugging Face weights; pickles are read
without executing code), rebuilds the model with
`perceiver.models.build_from_reference_config`, and evaluates it on the TFDS
`imagenet2012` split with the Perceiver IO reference's eval preprocessing,
which is the production pipeline's (perceiver/data/imagenet.py):
centre crop of size/(size+32) of the shorter side, bicubic resize to the
model's size (224), clip to [0, 255], then (x - 255*mean) / (255*std) with
ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).

A `.pystate` carries no config: `--preset` gives the full-size one of a
released file (picked from the file name when omitted), `--config` a
reference-style config (JSON, or the `__config__` of an `.npz`). A training
run's `params.npz` (`--config.checkpoint.export_npz=True`) carries the run's
config: its evaluation (data, split, metrics) is rerun as the runner does it.
Expected (Perceiver IO paper, released config A checkpoints, 50,000
validation images): learned positions 72.7, 2-D Fourier 79.0, conv 82.1.
`--workdir` writes DIR/result.json for scripts/make_tables.py.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

from absl import flags
import numpy as np

from perceiver import checkpoints
from perceiver.checkpoints import published
from perceiver.train.progress import Progress
from perceiver_tools import paper_results
from perceiver_tools import tables
from perceiver_tools.cli import _flags

# Released ImageNet checkpoint -> its row of the Perceiver IO ImageNet table.
TABLE_ROWS = {
  'imagenet_learned_position_encoding': 'Learned position (no 2-D information)',
  'imagenet_fourier_position_encoding': '2-D Fourier features',
  'imagenet_conv_preprocessing': 'Conv preprocessing',
}
_COLUMN = 'released checkpoint'


def expected_top1(preset: str) -> Optional[float]:
  row = TABLE_ROWS.get(preset)
  return paper_results.paper_figure(paper_results.Tag('perceiver_io_imagenet', row, _COLUMN)) if row else None


def read_config(path: str) -> Dict[str, Any]:
  """A reference-style config from a JSON file or an `.npz`'s `__config__`."""
  if path.endswith('.npz'):
    with np.load(path, allow_pickle=False) as data:
      if '__config__' not in data.files:
        raise ValueError(f'{path}: no __config__ entry')
      return json.loads(str(data['__config__']))
  with open(path) as f:
    return json.load(f)


def preset_for(checkpoint: str) -> Optional[str]:
  return published.RELEASED_FILES.get(os.path.basename(checkpoint))


def _num_examples(ds, batch_size: int, max_examples: int) -> Optional[int]:
  """The images the loop will see (for the ETA); None if tf.data cannot tell."""
  batches = int(ds.cardinality())
  if batches < 0:  # Unknown or infinite.
    return max_examples or None
  return min(batches * batch_size, max_examples or batches * batch_size)


def evaluate(
  checkpoint: str,
  data_config: Dict[str, Any],
  *,
  split: str = 'validation',
  config: Optional[Dict[str, Any]] = None,
  batch_size: int = 50,
  max_examples: int = 0,
  keep_logits: bool = False,
) -> Dict[str, Any]:
  """Top-1 / top-5 (fractions) and the example count of `checkpoint` on `split`
  (plus `logits` [N, K] and `labels` [N] with `keep_logits`)."""
  import jax  # pylint: disable=g-import-not-at-top
  from perceiver import data  # pylint: disable=g-import-not-at-top
  from perceiver import models  # pylint: disable=g-import-not-at-top

  params, state, config = checkpoints.load_checkpoint(checkpoint, config=config)
  if config is None:
    raise ValueError(f'{checkpoint} carries no config: pass --preset or --config')
  if config.get('model') != 'image_classifier':
    raise ValueError(f'{checkpoint}: not an ImageNet classifier (model={config.get("model")!r})')
  image_size = int((config.get('image_shape') or (224,))[0])
  model = models.build_from_reference_config(config)
  example = jax.numpy.zeros((1, image_size, image_size, 3), jax.numpy.float32)
  want_params, want_state = jax.eval_shape(lambda: model.net.init(jax.random.PRNGKey(0), example, is_training=True))
  checkpoints.check_compatible(want_params, params, what='params')
  checkpoints.check_compatible(want_state, state, what='state')
  apply = jax.jit(lambda p, s, x: model.net.apply(p, s, None, x, is_training=False)[0])
  ds = data.get_dataset(
    dict(data_config, name='imagenet2012', image_size=image_size, pos='none', eval_crop_padding=32, test_split=split),
    split='test',
    batch_size=batch_size,
    shuffle_seed=None,
  )
  correct1 = correct5 = count = 0
  kept = []
  total = _num_examples(ds, batch_size, max_examples)
  progress = Progress(
    total, f'eval {split}:', unit='images', report=lambda line: print(line, file=sys.stderr, flush=True)
  )
  for batch in ds.as_numpy_iterator():
    progress.update(count)
    if max_examples:
      batch = {k: v[: max_examples - count] for k, v in batch.items()}
    logits = np.asarray(apply(params, state, batch['image']))  # [B, K]
    top5 = np.argsort(-logits, axis=-1)[:, :5]
    labels = batch['label'][:, None]
    correct1 += int((top5[:, :1] == labels).sum())
    correct5 += int((top5 == labels).any(axis=-1).sum())
    count += len(labels)
    if keep_logits:
      kept.append((logits, batch['label']))
    if max_examples and count >= max_examples:
      break
  if count == 0:
    raise ValueError(f'split {split!r} has no examples')
  result = {'top1': correct1 / count, 'top5': correct5 / count, 'num_examples': float(count)}
  if keep_logits:
    result['logits'] = np.concatenate([k[0] for k in kept])
    result['labels'] = np.concatenate([k[1] for k in kept])
  return result


def evaluate_export(checkpoint: str, saved: Dict[str, Any]) -> Dict[str, Any]:
  """Re-runs the evaluation of the training run that exported `checkpoint`
  (its params.npz carries the run's config): same data, split and metrics."""
  import tempfile  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from perceiver import train  # pylint: disable=g-import-not-at-top

  if not isinstance(saved.get('config'), dict):
    raise ValueError(
      f'{checkpoint}: a training export without the run config (written before '
      'it was stored); evaluate it with --config.init_from and the preset'
    )
  config = ml_collections.ConfigDict(saved['config'])
  config.init_from = os.path.abspath(checkpoint)
  with tempfile.TemporaryDirectory() as workdir:
    return train.train_and_evaluate(config, workdir, 'eval')['eval']


FLAGS = flags.FlagValues()
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'checkpoint file', flag_values=FLAGS)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data_dir (prepared imagenet2012 records)', flag_values=FLAGS)
_MANUAL_DIR = flags.DEFINE_string(
  'manual_dir', None, 'ILSVRC2012 tars, to build the records if absent', flag_values=FLAGS
)
_SPLIT = flags.DEFINE_string('split', 'validation', 'TFDS split string', flag_values=FLAGS)
_CONFIG = flags.DEFINE_string(
  'config', None, 'reference-style config: .json, or an .npz with __config__', flag_values=FLAGS
)
_PRESET = flags.DEFINE_enum('preset', None, sorted(TABLE_ROWS), 'full-size released config', flag_values=FLAGS)
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 50, 'examples per batch', lower_bound=1, flag_values=FLAGS)
_MAX_EXAMPLES = flags.DEFINE_integer('max_examples', 0, '0: the whole split', lower_bound=0, flag_values=FLAGS)
_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'write WORKDIR/result.json for scripts/make_tables.py', flag_values=FLAGS
)
flags.mark_flag_as_required('checkpoint', flag_values=FLAGS)
flags.mark_flags_as_mutual_exclusive(['config', 'preset'], flag_values=FLAGS)


def main(argv: Optional[List[str]] = None) -> int:
  _flags.parse(FLAGS, argv, __doc__)
  from perceiver import api  # pylint: disable=g-import-not-at-top

  checkpoint = _CHECKPOINT.value
  own = (
    read_config(checkpoint)
    if checkpoint.endswith('.npz') and not (_CONFIG.value or _PRESET.value) and os.path.isfile(checkpoint)
    else None
  )
  if api.is_runner_export(own):  # A training run's params.npz: rerun its evaluation.
    result = evaluate_export(checkpoint, own)
    print(
      f"{os.path.basename(checkpoint)} (training export, its run's eval split): "
      + ', '.join(f'{k} {v:.4f}' for k, v in sorted(result.items()))
    )
    if _WORKDIR.value:
      print(
        'wrote', tables.write_result(_WORKDIR.value, None, result, checkpoint=os.path.abspath(checkpoint), split='run')
      )
    return 0
  preset = _PRESET.value or (None if _CONFIG.value else preset_for(_CHECKPOINT.value))
  config = read_config(_CONFIG.value) if _CONFIG.value else (published.published_config(preset) if preset else None)
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  start = time.time()
  try:
    result = evaluate(
      _CHECKPOINT.value,
      dict(data_dir=_DATA_DIR.value, manual_dir=_MANUAL_DIR.value),
      split=_SPLIT.value,
      config=config,
      batch_size=_BATCH_SIZE.value,
      max_examples=_MAX_EXAMPLES.value,
    )
  except (checkpoints.CheckpointError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  expected = expected_top1(preset) if preset and not _CONFIG.value else None
  print(
    f'{os.path.basename(_CHECKPOINT.value)} on {_SPLIT.value} ({int(result["num_examples"])} images, '
    f'{time.time() - start:.0f} s): top-1 {100 * result["top1"]:.2f}%  top-5 {100 * result["top5"]:.2f}%'
    + (f'  (published top-1: {expected})' if expected is not None else '')
  )
  if _WORKDIR.value:
    tag = (
      paper_results.Tag('perceiver_io_imagenet', TABLE_ROWS[preset], _COLUMN) if preset and not _CONFIG.value else None
    )
    path = tables.write_result(
      _WORKDIR.value, tag, result, checkpoint=os.path.abspath(_CHECKPOINT.value), split=_SPLIT.value
    )
    print(f'wrote {path}' + ('' if tag else ' (no table tag: not a full-size released config)'))
  return 0


def run() -> None:
  sys.exit(main())


if __name__ == '__main__':
  run()
