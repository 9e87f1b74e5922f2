"""ModelNet40 builders and pipeline on real CGAL meshes."""

import glob
import os

import numpy as np
import pytest

import perceiver.data as pdata
from perceiver.data import modelnet
from perceiver.data import rng as rng_lib


@pytest.mark.parametrize('source', ['off', 'hdf5'])
def test_batches_have_2048_normalised_points(modelnet_config, source):
  config = dict(modelnet_config, source=source)
  for split in ('train', 'test'):
    batch = next(pdata.get_dataset(config, split=split, batch_size=8, shuffle_seed=0).as_numpy_iterator())
    points = batch['points']
    assert points.shape == (8, 2048, 3) and points.dtype == np.float32
    np.testing.assert_allclose(np.abs(points).max(axis=(1, 2)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(points.mean(axis=1), 0.0, atol=1e-5)
    assert batch['label'].dtype == np.int32


@pytest.mark.parametrize('source,n_train,n_test', [('off', 30, 10), ('hdf5', 800, 100)])
def test_class_names_and_split_sizes(modelnet_config, source, n_train, n_test):
  builder = pdata.get_builder(dict(modelnet_config, source=source))
  names = builder.info.metadata['class_names']
  assert len(names) == 10 and names[1] == 'cow'
  assert builder.info.splits['train'].num_examples == n_train
  assert builder.info.splits['test'].num_examples == n_test
  assert builder.skipped_files == []


def test_one_line_header_defect_is_read(sample_dir):
  files = glob.glob(os.path.join(sample_dir, 'modelnet', 'ModelNet40', '*', '*', '*.off'))
  defective = [f for f in files if open(f).readline().strip() != 'OFF']
  assert defective  # The sample data has the defect.
  with open(defective[0], 'rb') as f:
    data = f.read()
  header, rest = data.split(b'\n', 1)
  counts = header[3:]
  fixed = b'OFF\n' + counts + b'\n' + rest
  v1, f1 = modelnet.read_off(data)
  v2, f2 = modelnet.read_off(fixed)
  n_vertices, n_faces = map(int, counts.split()[:2])
  assert v1.shape == (n_vertices, 3) and f1.shape == (n_faces, 3)
  np.testing.assert_array_equal(v1, v2)
  np.testing.assert_array_equal(f1, f2)


def test_surface_sampling_is_area_weighted():
  # Two triangles in the z=0 plane with areas 1/2 and 3/2 (x < 1 vs x > 1).
  vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [4, 0, 0], [1, 1, 0]], float)
  faces = np.array([[0, 1, 2], [3, 4, 5]])
  points = modelnet.sample_surface(vertices, faces, 20_000, seed=0)
  share_small = np.mean(points[:, 0] < 1)
  assert share_small == pytest.approx(0.25, abs=0.02)


def test_training_scaling_is_small_and_per_point(modelnet_config):
  config = pdata.resolve_config(dict(modelnet_config, source='hdf5'))
  from perceiver.data._tf import tf  # pylint: disable=g-import-not-at-top

  base = np.random.default_rng(0).normal(size=(2048, 3)).astype(np.float32)
  example = {'points': tf.constant(base), 'label': tf.constant(1)}
  evaluated = modelnet.preprocess(example, config, False, None)['points']
  config.scale_range = (2.0, 2.0)  # Uniform scaling: normalisation undoes it.
  rng = rng_lib.SeedStream(tf.constant([0, 0]))
  trained = modelnet.preprocess(example, config, True, rng)['points']
  # Training shuffles the points; as sets, uniform scaling changes nothing.
  np.testing.assert_allclose(np.sort(trained.numpy(), 0), np.sort(evaluated.numpy(), 0), atol=1e-5)


def test_each_host_reads_its_own_shard(modelnet_config):
  config = dict(modelnet_config, source='hdf5')
  shards = []
  for index in range(2):
    ds = pdata.get_dataset(
      config, split='test', batch_size=1000, shuffle_seed=None, process_index=index, process_count=2
    )
    shards.append(next(ds.as_numpy_iterator())['points'])
  assert len(shards[0]) + len(shards[1]) == 100
  assert abs(len(shards[0]) - len(shards[1])) <= 1
  # No example on both hosts.
  first = {p.tobytes() for p in shards[0]}
  assert not any(p.tobytes() in first for p in shards[1])
