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
  'data in both layouts run scripts/make_sample_data.py --what modelnet'
)
_H5_DIR = 'modelnet40_ply_hdf5_2048'


def _metadata_info(builder, points_shape) -> tfds.core.DatasetInfo:
  return tfds.core.DatasetInfo(
    builder=builder,
    features=tfds.features.FeaturesDict(
      {
        'points': tfds.features.Tensor(shape=points_shape, dtype=np.float32),
        'label': tfds.features.Scalar(dtype=np.int64),
        'file_name': tfds.features.Text(),
      }
    ),
    metadata=tfds.core.MetadataDict(),  # class_names, skipped_files.
    homepage='https://modelnet.cs.princeton.edu/',
  )


# ------------------------------------------------------------- OFF tree


def off_root(manual_dir: str) -> str:
  """manual_dir/ModelNet40 if present, else manual_dir (the tree itself)."""
  nested = os.path.join(manual_dir, 'ModelNet40')
  return nested if tf.io.gfile.isdir(nested) else manual_dir


def read_off(data: bytes, path: str = '<OFF bytes>') -> tuple[np.ndarray, np.ndarray]:
  """Vertices float [V, 3] and triangles int [F, 3] of an OFF file.

  Anything else (not OFF, counts that do not match the body, non-numeric or
  non-finite coordinates, faces naming missing vertices, no triangle) raises
  CorruptDataError naming `path`. Declared counts are only checked against
  the lines present, never used to allocate.
  """
  import trimesh  # pylint: disable=g-import-not-at-top

  _check_off_counts(data, path)
  try:
    mesh = trimesh.load(io.BytesIO(data), file_type='off', process=False)
  except Exception as e:  # pylint: disable=broad-except
    raise errors.CorruptDataError(path, f'not a readable OFF mesh ({type(e).__name__}: {e})') from None
  if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
    raise errors.CorruptDataError(path, 'no triangles in the file')
  vertices = np.asarray(mesh.vertices)
  faces = np.asarray(mesh.faces)
  if not np.isfinite(vertices).all():
    raise errors.CorruptDataError(path, 'non-finite vertex coordinates')
  return vertices, faces


def _check_off_counts(data: bytes, path: str) -> None:
  """The header declares as many vertex and face lines as the file has.

  trimesh's reader takes what is there, so a truncated file would lose faces
  silently (and int64 counts near 2**63 overflow inside it).
  """
  lines = [l.split(b'#', 1)[0].strip() for l in data.splitlines()]
  lines = [l for l in lines if l]
  magic = next((m for m in (b'COFF', b'OFF') if lines and lines[0].startswith(m)), None)
  if magic is None:
    raise errors.CorruptDataError(path, "no 'OFF' header")
  counts = lines[0][len(magic) :].split() or (lines[1:2] or [b''])[0].split()
  body = len(lines) - (1 if lines[0] != magic else 2)
  try:
    num_vertices, num_faces = int(counts[0]), int(counts[1])
  except (IndexError, ValueError):
    raise errors.CorruptDataError(path, f'bad vertex/face counts {counts!r}') from None
  if not 0 <= num_vertices <= body or num_vertices + num_faces != body:
    raise errors.CorruptDataError(
      path,
      f'the header declares {num_vertices} vertices and {num_faces} '
      f'faces but the file has {body} such lines (truncated?)',
    )


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int) -> np.ndarray:
  """`count` points uniform over the surface (area-weighted); f32 [P, 3]."""
  import trimesh  # pylint: disable=g-import-not-at-top

  mesh = trimesh.Trimesh(vertices, faces, process=False)
  if not np.isfinite(mesh.vertices).all() or mesh.area <= 0:
    raise ValueError('mesh has non-finite vertices or zero surface area')
  points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
  return points.astype(np.float32)


class ModelNet40Off(errors.SkipsCorruptFiles, tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Princeton ModelNet40 OFF tree, surface-sampled."""

  name = 'modelnet40_off'
  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = HOW_TO_GET

  def __init__(self, *, stored_points: int = 10_000, on_corrupt: str = 'raise', **kwargs):
    self._stored_points = stored_points
    self._init_corrupt(on_corrupt, logging)
    kwargs.setdefault('config', tfds.core.BuilderConfig(name=f'{stored_points}_points'))
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return _metadata_info(self, (self._stored_points, 3))

  def _split_generators(self, dl_manager):
    root = off_root(os.fspath(dl_manager.manual_dir))
    classes = sorted(d for d in tf.io.gfile.listdir(root) if tf.io.gfile.isdir(os.path.join(root, d, 'train')))
    if not classes:
      raise errors.MissingDataError(
        'modelnet40', [os.path.join(root, '<class>', 'train', '<class>_NNNN.off')], HOW_TO_GET
      )
    self.info.metadata['class_names'] = classes
    self.info.metadata['skipped_files'] = self._corrupt.skipped
    return {split: self._generate_examples(root, classes, split) for split in ('train', 'test')}

  def _generate_examples(self, root: str, classes: list[str], split: str):
    for label, cls in enumerate(classes):
      for path in sorted(glob.glob(os.path.join(root, cls, split, '*.off'))):
        name = os.path.basename(path)
        try:
          with open(path, 'rb') as f:
            vertices, faces = read_off(f.read(), path)
          seed = int(hashlib.md5(name.encode()).hexdigest()[:8], 16)
          points = sample_surface(vertices, faces, self._stored_points, seed)
        except Exception as e:  # pylint: disable=broad-except
          self._corrupt.report(path, e)
          continue
        yield f'{cls}/{name}', {'points': points, 'label': label, 'file_name': f'{cls}/{split}/{name}'}


# ----------------------------------------------------------------- HDF5


def h5_root(manual_dir: str) -> str:
  nested = os.path.join(manual_dir, _H5_DIR)
  return nested if tf.io.gfile.isdir(nested) else manual_dir


class ModelNet40Hdf5(errors.SkipsCorruptFiles, tfds.core.GeneratorBasedBuilder, skip_registration=True):
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
    num_classes = len(self.info.metadata['class_names'])
    return {split: self._generate_examples(root, split, num_classes) for split in ('train', 'test')}

  def _generate_examples(self, root: str, split: str, num_classes: int):
    for path in sorted(glob.glob(os.path.join(root, f'ply_data_{split}*.h5'))):
      try:
        data, labels = read_h5(path, num_classes)
      except errors.CorruptDataError as e:
        self._corrupt.report(path, e)
        continue
      name = os.path.basename(path)
      for i, (points, label) in enumerate(zip(data, labels)):
        yield f'{name}/{i}', {'points': points, 'label': int(label), 'file_name': f'{name}[{i}]'}


# An HDF5 dataset can declare far more data than its file holds (unallocated
# chunks read as the fill value); refuse to read more than this many times
# the file's size (PointNet's files are uncompressed: 1x).
_H5_MAX_EXPANSION = 64


def read_h5(path: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """Points f32 [N, P, 3] and labels int64 [N] of a PointNet HDF5 file.

  Raises CorruptDataError naming `path` if the file is not HDF5, lacks the
  `data` or `label` dataset, has other shapes or non-numeric types,
  non-finite points, labels outside [0, num_classes), or declares more data
  than its size can hold.
  """
  import h5py  # pylint: disable=g-import-not-at-top

  def fail(reason):
    raise errors.CorruptDataError(path, reason)

  budget = _H5_MAX_EXPANSION * max(os.path.getsize(path), 1 << 20)
  try:
    with h5py.File(path, 'r') as f:
      found = {}
      for key, kinds in (('data', 'fiu'), ('label', 'iu')):
        d = f.get(key)
        if not isinstance(d, h5py.Dataset):
          fail(f'no {key!r} dataset (found: {sorted(f.keys())})')
        if d.dtype.kind not in kinds or d.nbytes > budget:
          fail(
            f'{key!r} is {d.dtype} {d.shape} ({d.nbytes} bytes), expected '
            f'{"numbers" if key == "data" else "integers"} fitting in '
            'the file'
          )
        found[key] = d
      shape, label_shape = found['data'].shape, found['label'].shape
      if len(shape) != 3 or shape[-1] != 3 or int(np.prod(label_shape)) != shape[0]:
        fail(f'bad shapes: data {shape}, label {label_shape} (expected [N, P, 3] and N labels)')
      data = np.asarray(found['data'], np.float32)
      labels = np.asarray(found['label']).reshape(-1).astype(np.int64)
  except errors.CorruptDataError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    fail(f'not a readable HDF5 file ({type(e).__name__}: {e})')
  if not np.isfinite(data).all():
    fail('non-finite point coordinates')
  if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
    fail(f'labels outside [0, {num_classes}) (shape_names.txt has {num_classes} classes)')
  return data, labels


# ------------------------------------------------------------- pipeline


def expected_manual_files(config) -> dict[str, list[str]]:
  """TFDS split -> glob patterns that must match for it to be built."""
  manual = config.manual_dir or ''
  if config.source == 'off':
    root = off_root(manual)
    return {s: [os.path.join(root, '*', s, '*.off')] for s in ('train', 'test')}
  root = h5_root(manual)
  return {
    s: [os.path.join(root, 'shape_names.txt'), os.path.join(root, f'ply_data_{s}*.h5')] for s in ('train', 'test')
  }


def make_builder(config) -> tfds.core.DatasetBuilder:
  if config.source == 'off':
    return ModelNet40Off(
      data_dir=config.data_dir or None, stored_points=config.stored_points, on_corrupt=config.on_corrupt
    )
  return ModelNet40Hdf5(data_dir=config.data_dir or None, on_corrupt=config.on_corrupt)


def decoders(config) -> None:
  del config
  return None


def normalize_points(points: tf.Tensor) -> tf.Tensor:
  """Zero-mean, then scale so that max |coordinate| = 1; [N, 3] -> [N, 3]."""
  points -= tf.reduce_mean(points, axis=0, keepdims=True)
  return points / tf.maximum(tf.reduce_max(tf.abs(points)), 1e-9)


def preprocess(example: dict, config, is_training: bool, rng: rng_lib.SeedStream | None) -> dict:
  points = tf.cast(example['points'], tf.float32)  # [P, 3]
  n = config.num_points
  tf.debugging.assert_greater_equal(tf.shape(points)[0], n, message=f'fewer stored points than num_points={n}')
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
