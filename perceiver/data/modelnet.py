"""ModelNet40 point clouds from the Princeton OFF tree or PointNet HDF5.

Two TFDS builders, both yielding `points` float32 [P, 3] and an int label:
  * `ModelNet40Off` reads `ModelNet40/<class>/{train,test}/<class>_NNNN.off`
    (classes = sorted folder names) and samples `stored_points` points
    uniformly over each mesh's surface (area-weighted, trimesh), seeded by
    the file name so the records are reproducible. The one-line header
    defect of many ModelNet files (`OFF28048 35408 0`) is handled by
    trimesh's OFF reader (tested).
  * `ModelNet40Hdf5` reads PointNet's `ply_data_{train,test}<n>.h5` (`data`
    [N, 2048, 3], `label` [N, 1]) and `shape_names.txt`.

Preprocessing (Perceiver paper, Sec. 4.3): take `num_points` points (a fresh
random subset when training, the first ones otherwise), zero-centre; when
training scale each point by a factor drawn from `scale_range` (one factor
per point, all axes); then zero-mean and scale into the unit cube [-1, 1]^3
(max |coordinate| = 1, the range of the Fourier position features).
"""

import glob
import hashlib
import io
import os

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from perceiver.data import errors
from perceiver.data import rng as rng_lib
from perceiver.data._tf import tf

HOW_TO_GET = (
    'ModelNet40: unzip ModelNet40.zip (Princeton ModelNet) into manual_dir so '
    'that manual_dir/ModelNet40/<class>/{train,test}/<class>_NNNN.off exist '
    "(source='off'), or unzip PointNet's modelnet40_ply_hdf5_2048.zip so that "
    'ply_data_{train,test}<n>.h5 and shape_names.txt are in manual_dir or '
    "manual_dir/modelnet40_ply_hdf5_2048 (source='hdf5'); for small real "
    'data in both layouts run scripts/make_sample_data.py --what modelnet')
_H5_DIR = 'modelnet40_ply_hdf5_2048'


def _metadata_info(builder, points_shape) -> tfds.core.DatasetInfo:
  return tfds.core.DatasetInfo(
      builder=builder,
      features=tfds.features.FeaturesDict({
          'points': tfds.features.Tensor(shape=points_shape,
                                         dtype=np.float32),
          'label': tfds.features.Scalar(dtype=np.int64),
          'file_name': tfds.features.Text(),
      }),
      metadata=tfds.core.MetadataDict(),  # class_names, skipped_files.
      homepage='https://modelnet.cs.princeton.edu/',
  )


# ------------------------------------------------------------- OFF tree


def off_root(manual_dir: str) -> str:
  """manual_dir/ModelNet40 if present, else manual_dir (the tree itself)."""
  nested = os.path.join(manual_dir, 'ModelNet40')
  return nested if tf.io.gfile.isdir(nested) else manual_dir


def read_off(data: bytes) -> tuple[np.ndarray, np.ndarray]:
  """Vertices float [V, 3] and triangles int [F, 3] of an OFF file."""
  import trimesh  # pylint: disable=g-import-not-at-top
  mesh = trimesh.load(io.BytesIO(data), file_type='off', process=False)
  if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
    raise ValueError('no triangles in the file')
  return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int,
                   seed: int) -> np.ndarray:
  """`count` points uniform over the surface (area-weighted); f32 [P, 3]."""
  import trimesh  # pylint: disable=g-import-not-at-top
  mesh = trimesh.Trimesh(vertices, faces, process=False)
  if not np.isfinite(mesh.vertices).all() or mesh.area <= 0:
    raise ValueError('mesh has non-finite vertices or zero surface area')
  points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
  return points.astype(np.float32)


class ModelNet40Off(errors.SkipsCorruptFiles,
                    tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Princeton ModelNet40 OFF tree, surface-sampled."""

  name = 'modelnet40_off'
  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = HOW_TO_GET

  def __init__(self, *, stored_points: int = 10_000,
               on_corrupt: str = 'raise', **kwargs):
    self._stored_points = stored_points
    self._init_corrupt(on_corrupt, logging)
    kwargs.setdefault('config', tfds.core.BuilderConfig(
        name=f'{stored_points}_points'))
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return _metadata_info(self, (self._stored_points, 3))

  def _split_generators(self, dl_manager):
    root = off_root(os.fspath(dl_manager.manual_dir))
    classes = sorted(d for d in tf.io.gfile.listdir(root)
                     if tf.io.gfile.isdir(os.path.join(root, d, 'train')))
    if not classes:
      raise errors.MissingDataError(
          'modelnet40', [os.path.join(root, '<class>', 'train',
                                      '<class>_NNNN.off')], HOW_TO_GET)
    self.info.metadata['class_names'] = classes
    self.info.metadata['skipped_files'] = self._corrupt.skipped
    return {split: self._generate_examples(root, classes, split)
            for split in ('train', 'test')}

  def _generate_examples(self, root: str, classes: list[str], split: str):
    for label, cls in enumerate(classes):
      for path in sorted(glob.glob(os.path.join(root, cls, split, '*.off'))):
        name = os.path.basename(path)
        try:
          with open(path, 'rb') as f:
            vertices, faces = read_off(f.read())
          seed = int(hashlib.md5(name.encode()).hexdigest()[:8], 16)
          points = sample_surface(vertices, faces, self._stored_points, seed)
        except Exception as e:  # pylint: disable=broad-except
          self._corrupt.report(path, e)
          continue
        yield f'{cls}/{name}', {'points': points, 'label': label,
                                'file_name': f'{cls}/{split}/{name}'}


# ----------------------------------------------------------------- HDF5


def h5_root(manual_dir: str) -> str:
  nested = os.path.join(manual_dir, _H5_DIR)
  return nested if tf.io.gfile.isdir(nested) else manual_dir


class ModelNet40Hdf5(errors.SkipsCorruptFiles,
                    tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """PointNet's modelnet40_ply_hdf5_2048 files."""

  name = 'modelnet40_hdf5'
  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = HOW_TO_GET

  def __init__(self, *, on_corrupt: str = 'raise', **kwargs):
    self._init_corrupt(on_corrupt, logging)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return _metadata_info(self, (None, 3))

  def _split_generators(self, dl_manager):
    root = h5_root(os.fspath(dl_manager.manual_dir))
    with tf.io.gfile.GFile(os.path.join(root, 'shape_names.txt')) as f:
      self.info.metadata['class_names'] = f.read().split()
    self.info.metadata['skipped_files'] = self._corrupt.skipped
    return {split: self._generate_examples(root, split)
            for split in ('train', 'test')}

  def _generate_examples(self, root: str, split: str):
    import h5py  # pylint: disable=g-import-not-at-top
    for path in sorted(glob.glob(os.path.join(root,
                                              f'ply_data_{split}*.h5'))):
      try:
        with h5py.File(path, 'r') as f:
          data = np.asarray(f['data'], np.float32)  # [N, P, 3]
          labels = np.asarray(f['label']).reshape(-1)  # [N]
        if data.ndim != 3 or data.shape[-1] != 3 or len(data) != len(labels):
          raise ValueError(f'bad shapes: data {data.shape}, label '
                           f'{labels.shape}')
      except Exception as e:  # pylint: disable=broad-except
        self._corrupt.report(path, e)
        continue
      name = os.path.basename(path)
      for i, (points, label) in enumerate(zip(data, labels)):
        yield f'{name}/{i}', {'points': points, 'label': int(label),
                              'file_name': f'{name}[{i}]'}


# ------------------------------------------------------------- pipeline


def expected_manual_files(config) -> dict[str, list[str]]:
  """TFDS split -> glob patterns that must match for it to be built."""
  manual = config.manual_dir or ''
  if config.source == 'off':
    root = off_root(manual)
    return {s: [os.path.join(root, '*', s, '*.off')]
            for s in ('train', 'test')}
  root = h5_root(manual)
  return {s: [os.path.join(root, 'shape_names.txt'),
              os.path.join(root, f'ply_data_{s}*.h5')]
          for s in ('train', 'test')}


def make_builder(config) -> tfds.core.DatasetBuilder:
  if config.source == 'off':
    return ModelNet40Off(data_dir=config.data_dir,
                         stored_points=config.stored_points,
                         on_corrupt=config.on_corrupt)
  return ModelNet40Hdf5(data_dir=config.data_dir,
                        on_corrupt=config.on_corrupt)


def decoders(config) -> None:
  del config
  return None


def normalize_points(points: tf.Tensor) -> tf.Tensor:
  """Zero-mean, then scale so that max |coordinate| = 1; [N, 3] -> [N, 3]."""
  points -= tf.reduce_mean(points, axis=0, keepdims=True)
  return points / tf.maximum(tf.reduce_max(tf.abs(points)), 1e-9)


def preprocess(example: dict, config, is_training: bool,
               rng: rng_lib.SeedStream | None) -> dict:
  points = tf.cast(example['points'], tf.float32)  # [P, 3]
  n = config.num_points
  tf.debugging.assert_greater_equal(
      tf.shape(points)[0], n,
      message=f'fewer stored points than num_points={n}')
  if is_training:
    order = tf.argsort(rng.uniform([tf.shape(points)[0]]))
    points = tf.gather(points, order)
  points = points[:n]  # [N, 3]
  points -= tf.reduce_mean(points, axis=0, keepdims=True)  # Zero-centre.
  if is_training:
    lo, hi = config.scale_range
    points *= rng.uniform([n, 1], lo, hi)
  points = tf.ensure_shape(normalize_points(points), [n, 3])
  return {'points': points, 'label': tf.cast(example['label'], tf.int32)}


def batch_fn(config, is_training: bool) -> None:
  del config, is_training
  return None
