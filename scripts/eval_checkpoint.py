#!/usr/bin/env python
"""ImageNet top-1/top-5 of a released (or converted) Perceiver IO checkpoint.

  python scripts/eval_checkpoint.py --checkpoint imagenet_fourier_position_encoding.pystate \\
      --data_dir ~/tensorflow_datasets [--manual_dir DIR_WITH_TARS] [--split validation] \\
      [--config FILE.json|FILE.npz | --preset NAME] [--batch_size 50] [--max_examples N] \\
      [--workdir DIR]

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

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=wrong-import-position

from perceiver import checkpoints  # pylint: disable=wrong-import-position
from perceiver import paper_results  # pylint: disable=wrong-import-position
from perceiver.checkpoints import published  # pylint: disable=wrong-import-position

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


def evaluate(checkpoint: str, data_config: Dict[str, Any], *, split: str = 'validation',
             config: Optional[Dict[str, Any]] = None, batch_size: int = 50,
             max_examples: int = 0, keep_logits: bool = False) -> Dict[str, Any]:
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
  want_params, want_state = jax.eval_shape(
      lambda: model.net.init(jax.random.PRNGKey(0), example, is_training=True))
  checkpoints.check_compatible(want_params, params, what='params')
  checkpoints.check_compatible(want_state, state, what='state')
  apply = jax.jit(lambda p, s, x: model.net.apply(p, s, None, x, is_training=False)[0])
  ds = data.get_dataset(dict(data_config, name='imagenet2012', image_size=image_size, pos='none',
                             eval_crop_padding=32, test_split=split),
                        split='test', batch_size=batch_size, shuffle_seed=None)
  correct1 = correct5 = count = 0
  kept = []
  for batch in ds.as_numpy_iterator():
    if max_examples:
      batch = {k: v[:max_examples - count] for k, v in batch.items()}
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
    raise ValueError(f'{checkpoint}: a training export without the run config (written before '
                     'it was stored); evaluate it with --config.init_from and the preset')
  config = ml_collections.ConfigDict(saved['config'])
  config.init_from = os.path.abspath(checkpoint)
  with tempfile.TemporaryDirectory() as workdir:
    return train.train_and_evaluate(config, workdir, 'eval')['eval']


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--checkpoint', required=True)
  parser.add_argument('--data_dir', help='TFDS data_dir (prepared imagenet2012 records)')
  parser.add_argument('--manual_dir', help='ILSVRC2012 tars, to build the records if absent')
  parser.add_argument('--split', default='validation', help='TFDS split string')
  group = parser.add_mutually_exclusive_group()
  group.add_argument('--config', help='reference-style config: .json, or an .npz with __config__')
  group.add_argument('--preset', choices=sorted(TABLE_ROWS), help='full-size released config')
  parser.add_argument('--batch_size', type=int, default=50)
  parser.add_argument('--max_examples', type=int, default=0, help='0: the whole split')
  parser.add_argument('--workdir', help='write WORKDIR/result.json for scripts/make_tables.py')
  args = parser.parse_args(argv)

  from perceiver import api  # pylint: disable=g-import-not-at-top
  own = read_config(args.checkpoint) if args.checkpoint.endswith('.npz') and not (
      args.config or args.preset) and os.path.isfile(args.checkpoint) else None
  if api.is_runner_export(own):  # A training run's params.npz: rerun its evaluation.
    result = evaluate_export(args.checkpoint, own)
    print(f'{os.path.basename(args.checkpoint)} (training export, its run\'s eval split): '
          + ', '.join(f'{k} {v:.4f}' for k, v in sorted(result.items())))
    if args.workdir:
      from perceiver import tables  # pylint: disable=g-import-not-at-top
      print('wrote', tables.write_result(args.workdir, None, result,
                                         checkpoint=os.path.abspath(args.checkpoint), split='run'))
    return 0
  preset = args.preset or (None if args.config else preset_for(args.checkpoint))
  config = read_config(args.config) if args.config else (
      published.published_config(preset) if preset else None)
  start = time.time()
  try:
    result = evaluate(args.checkpoint, dict(data_dir=args.data_dir, manual_dir=args.manual_dir),
                      split=args.split, config=config, batch_size=args.batch_size,
                      max_examples=args.max_examples)
  except (checkpoints.CheckpointError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  expected = expected_top1(preset) if preset and not args.config else None
  print(f'{os.path.basename(args.checkpoint)} on {args.split} ({int(result["num_examples"])} images, '
        f'{time.time() - start:.0f} s): top-1 {100 * result["top1"]:.2f}%  top-5 {100 * result["top5"]:.2f}%'
        + (f'  (published top-1: {expected})' if expected is not None else ''))
  if args.workdir:
    from perceiver import tables  # pylint: disable=g-import-not-at-top
    tag = (paper_results.Tag('perceiver_io_imagenet', TABLE_ROWS[preset], _COLUMN)
           if preset and not args.config else None)
    path = tables.write_result(args.workdir, tag, result, checkpoint=os.path.abspath(args.checkpoint),
                               split=args.split)
    print(f'wrote {path}' + ('' if tag else ' (no table tag: not a full-size released config)'))
  return 0


if __name__ == '__main__':
  sys.exit(main())
