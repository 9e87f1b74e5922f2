"""scripts/eval_checkpoint.py: released-format checkpoints on real sample images.

The released ImageNet weights are not available offline; the scaled-down
golden models are written in the same formats (`.pystate` pickles, `.npz`),
so the same code path runs: safe loading, model rebuild, the reference's
eval preprocessing through the production pipeline, top-1/top-5.
"""

import importlib
import importlib.util
import json
import math
import os
import shutil
import tarfile

import numpy as np
import pytest

from tables_testlib import script

MEAN_RGB = np.array([0.485, 0.456, 0.406]) * 255
STDDEV_RGB = np.array([0.229, 0.224, 0.225]) * 255


def _module():
  return importlib.import_module('perceiver_tools.cli.eval_checkpoint')


def _tfds_file(name: str) -> str:
  root = os.path.dirname(importlib.util.find_spec('tensorflow_datasets').origin)
  return os.path.join(root, 'datasets', 'imagenet2012', name)


def _reference_eval(manual_dir: str, golden_npz: str):
  """The reference protocol written out independently: labels from TFDS's
  validation_labels.txt line of each file, full decode, centre crop of
  size/(size+32) of the shorter side, bicubic resize, clip, normalise; the
  model from the golden .npz (not the checkpoint under test)."""
  import jax  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from perceiver import models  # pylint: disable=import-outside-toplevel
  from perceiver_tools import golden  # pylint: disable=import-outside-toplevel

  case = golden.load_golden(golden_npz)
  size = case.config['image_shape'][0]
  with open(_tfds_file('labels.txt')) as f:
    index = {s: i for i, s in enumerate(f.read().split())}
  with open(_tfds_file('validation_labels.txt')) as f:
    val = f.read().split()
  images, labels = [], []
  with tarfile.open(os.path.join(manual_dir, 'ILSVRC2012_img_val.tar')) as tar:
    for member in tar.getmembers():
      data = tar.extractfile(member).read()
      labels.append(index[val[int(member.name.split('_')[-1].split('.')[0]) - 1]])
      img = tf.io.decode_jpeg(data, channels=3).numpy().astype(np.float32)
      h, w = img.shape[:2]
      side = int(size / (size + 32) * min(h, w))
      top, left = (h - side + 1) // 2, (w - side + 1) // 2
      crop = img[top : top + side, left : left + side]
      resized = np.clip(tf.image.resize(crop, [size, size], method='bicubic').numpy(), 0, 255)
      images.append((resized - MEAN_RGB) / STDDEV_RGB)
  model = models.build_from_reference_config(case.config)
  logits = jax.jit(lambda x: model.net.apply(case.params, case.state, None, x, is_training=False)[0])(
    np.stack(images).astype(np.float32)
  )
  return np.asarray(logits), np.asarray(labels)


def _match(ours_logits, ours_labels, ref_logits, ref_labels):
  """Each reference example is one of ours (the split's order is TFDS's, not the tar's)."""
  assert len(ours_logits) == len(ref_logits)
  used = set()
  for logit, label in zip(ref_logits, ref_labels):
    dist = np.abs(ours_logits - logit).max(axis=1)
    j = int(np.argmin(dist))
    assert dist[j] < 1e-4 and ours_labels[j] == label and j not in used
    used.add(j)


def _topk(logits, labels, k):
  return float(np.mean([label in np.argsort(-row)[:k] for row, label in zip(logits, labels)]))


@pytest.mark.parametrize(
  'checkpoint, golden',
  [
    ('pickles/imagenet_fourier_position_encoding.pystate', 'imagenet_fourier_position_encoding.npz'),
    ('pickles/imagenet_conv_preprocessing.pystate', 'imagenet_conv_preprocessing.npz'),
    ('imagenet_learned_position_encoding.npz', 'imagenet_learned_position_encoding.npz'),
  ],
)
def test_released_format_checkpoints_follow_the_reference_protocol(golden_dir, imagenet_sample, checkpoint, golden):
  golden_npz = os.path.join(golden_dir, golden)
  config = _module().read_config(golden_npz)
  result = _module().evaluate(
    os.path.join(golden_dir, checkpoint), imagenet_sample, config=config, batch_size=8, keep_logits=True
  )
  ref_logits, ref_labels = _reference_eval(imagenet_sample['manual_dir'], golden_npz)
  _match(result['logits'], result['labels'], ref_logits, ref_labels)
  assert result['num_examples'] == len(ref_labels) > 10
  assert result['top1'] == pytest.approx(_topk(ref_logits, ref_labels, 1))
  assert result['top5'] == pytest.approx(_topk(ref_logits, ref_labels, 5))


def test_command_line_writes_result_and_refuses_mismatched_weights(golden_dir, imagenet_sample, tmp_path):
  pickle = os.path.join(golden_dir, 'pickles', 'imagenet_conv_preprocessing.pystate')
  data = ['--manual_dir', imagenet_sample['manual_dir'], '--data_dir', imagenet_sample['data_dir']]
  proc = script(
    'eval_checkpoint.py',
    '--checkpoint',
    pickle,
    '--config',
    os.path.join(golden_dir, 'imagenet_conv_preprocessing.npz'),
    *data,
    '--max_examples',
    '12',
    '--workdir',
    str(tmp_path / 'run'),
  )
  with open(tmp_path / 'run' / 'result.json') as f:
    result = json.load(f)
  assert result['metrics']['num_examples'] == 12
  top1 = result['metrics']['top1']
  assert f'top-1 {100 * top1:.2f}%' in proc.stdout and 'table' not in result  # Not a full-size model.
  assert math.isclose(round(top1 * 12), top1 * 12, abs_tol=1e-9)
  # Under its released name the file is taken for the full-size released model
  # (config from the name), and the scaled-down weights are refused, listing why.
  released = tmp_path / 'imagenet_conv_preprocessing.pystate'
  shutil.copy(pickle, released)
  proc = script('eval_checkpoint.py', '--checkpoint', str(released), *data, check=False)
  assert proc.returncode == 1 and 'do not fit the model' in proc.stderr
  assert 'mis-shaped' in proc.stderr


def test_published_figures_are_the_papers():
  module = _module()
  assert [module.expected_top1(p) for p in sorted(module.TABLE_ROWS)] == [82.1, 79.0, 72.7]
