"""ImageNet pipeline on real MNIST digits written as ILSVRC2012 tars."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

import perceiver.data as pdata
from perceiver.data import imagenet
from perceiver.data import randaugment
from perceiver.data import rng as rng_lib
from perceiver.data._tf import tf


def _first(ds):
  return next(ds.as_numpy_iterator())


def test_train_batch_has_paper_shapes(imagenet_config):
  batch = _first(pdata.get_dataset(imagenet_config, split='train', batch_size=4, shuffle_seed=0))
  assert batch['image'].shape == (4, 224, 224, 3)
  assert batch['image'].dtype == np.float32
  assert np.isfinite(batch['image']).all()
  assert batch['pos'].shape == (4, 224 * 224, 2)
  # MixUp/CutMix on by default: soft targets over the 1000 classes.
  assert batch['label'].shape == (4, 1000)
  np.testing.assert_allclose(batch['label'].sum(-1), 1.0, rtol=1e-5)
  assert set(np.flatnonzero(batch['label'].sum(0))) <= set(range(10))


def test_splits_follow_the_reference(imagenet_config):
  builder = pdata.get_builder(imagenet_config)
  n_train = builder.info.splits['train'].num_examples
  counts = {}
  for split in ('train', 'valid', 'test'):
    ds = pdata.get_dataset(
      dict(imagenet_config, image_size=32, pos='none', randaugment_num_layers=0),
      split=split,
      batch_size=256,
      shuffle_seed=0,
    )
    if split == 'train':
      ds = ds.take(2)
    counts[split] = sum(len(b['image']) for b in ds.as_numpy_iterator())
  assert counts['valid'] == 100  # train[:100]
  assert counts['test'] == builder.info.splits['validation'].num_examples
  assert n_train == 1350


def test_validation_labels_follow_tfds_validation_labels_txt(imagenet_config):
  builder = pdata.get_builder(imagenet_config)
  with open(tfds.core.tfds_path('datasets/imagenet2012/validation_labels.txt')) as f:
    val_synsets = f.read().split()
  names = builder.info.features['label'].names
  ds = builder.as_dataset(split='validation', decoders={'image': tfds.decode.SkipDecoding()})
  n = 0
  for ex in ds.as_numpy_iterator():
    index = int(ex['file_name'].decode()[len('ILSVRC2012_val_') : -5])
    assert names[ex['label']] == val_synsets[index - 1]
    n += 1
  assert n == 150


def test_eval_is_deterministic_with_int_labels(imagenet_config):
  config = dict(imagenet_config, mixup_alpha=0.0, cutmix_alpha=0.0)
  a = _first(pdata.get_dataset(config, split='test', batch_size=8, shuffle_seed=None))
  b = _first(pdata.get_dataset(config, split='test', batch_size=8, shuffle_seed=None))
  assert a['label'].dtype == np.int32 and a['label'].shape == (8,)
  np.testing.assert_array_equal(a['image'], b['image'])
  # Normalised with the ImageNet statistics: MNIST background is black.
  background = (0 - np.array(imagenet.MEAN_RGB)) / np.array(imagenet.STDDEV_RGB)
  np.testing.assert_allclose(a['image'][:, 0, 0], np.tile(background, (8, 1)), atol=0.1)


def test_crop_positions():
  shape = tf.constant([100, 200, 3])
  full = tf.constant([0, 0, 100, 200])
  crop = imagenet.crop_positions(full, shape, 4, 'crop', tf.constant(False))
  grid = np.stack(np.meshgrid(np.linspace(-1, 1, 4), np.linspace(-1, 1, 4), indexing='ij'), -1).reshape(16, 2)
  np.testing.assert_allclose(crop, grid, atol=1e-6)
  # A crop covering the whole image: image coordinates = crop grid.
  image = imagenet.crop_positions(full, shape, 4, 'image', tf.constant(False))
  np.testing.assert_allclose(image, grid, atol=1e-6)
  # The right half, flipped: x runs from +1 down to ~0.
  half = imagenet.crop_positions(tf.constant([0, 100, 100, 100]), shape, 4, 'image', tf.constant(True)).numpy()
  assert half[0, 1] == pytest.approx(1.0)
  assert half[3, 1] == pytest.approx(2 * 100 / 199 - 1, abs=1e-5)


def test_mixup_and_cutmix_keep_label_mass_and_area():
  rng = rng_lib.SeedStream(tf.constant([0, 1]))
  images = tf.reshape(tf.range(4, dtype=tf.float32), [4, 1, 1, 1]) * tf.ones([4, 16, 16, 1])
  labels = tf.one_hot([0, 1, 2, 3], 4)
  mixed, soft, lam = imagenet.cutmix(images, labels, 1.0, rng)
  # Example 0 is mixed with example 3 (the reversed batch).
  kept = (mixed[0] == 0.0).numpy().mean()
  assert kept == pytest.approx(float(lam[0]))
  np.testing.assert_allclose(soft.numpy().sum(-1), 1.0, rtol=1e-6)
  assert float(soft[0, 0]) == pytest.approx(float(lam[0]))
  mixed, soft, lam = imagenet.mixup(images, labels, 0.2, rng)
  np.testing.assert_allclose(mixed[0, 0, 0, 0], 3 * (1 - lam[0]), rtol=1e-5)
  assert float(soft[0, 3]) == pytest.approx(1 - float(lam[0]))


@pytest.mark.parametrize('op', range(randaugment.NUM_OPS))
def test_randaugment_ops_stay_in_range(op):
  image = tf.cast(tf.random.uniform([32, 32, 3], 0, 256, tf.int32), tf.float32)
  rng = rng_lib.SeedStream(tf.constant([op, 0]))
  out = randaugment._ops(image, tf.constant(0.5), rng)[op]()  # pylint: disable=protected-access
  assert out.shape == image.shape
  assert float(tf.reduce_min(out)) >= 0 and float(tf.reduce_max(out)) <= 255


def test_training_batches_are_a_function_of_the_seed(imagenet_config):
  config = dict(imagenet_config, image_size=64)
  first = [_first(pdata.get_dataset(config, split='train', batch_size=4, shuffle_seed=seed)) for seed in (5, 5, 6)]
  for key in ('image', 'label', 'pos'):
    np.testing.assert_array_equal(first[0][key], first[1][key])
  assert not np.array_equal(first[0]['image'], first[2]['image'])
