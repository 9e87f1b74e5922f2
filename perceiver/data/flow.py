"""Optical-flow data: file formats, TFDS builders and the training pipeline.

Formats (../shared/reference/DATASETS.md), each with a reader and a writer:
  * Middlebury `.flo`: float32 magic 202021.25 (`PIEH`), int32 width, int32
    height, then height x width x (u, v) float32, little-endian.
  * KITTI 2015 flow PNGs: 16-bit RGB, u = (R - 2^15) / 64,
    v = (G - 2^15) / 64, valid = B > 0.

Builders (TFDS, reading the public layouts from `manual_dir`):
  * `SintelFlow` (config 'clean' or 'final'):
    training/{clean,final}/<scene>/frame_NNNN.png,
    training/flow/<scene>/frame_NNNN.flo (frame N -> N + 1) and, where
    present, training/invalid/... and training/occlusions/... masks.
  * `KittiFlow`: training/image_2/NNNNNN_{10,11}.png,
    training/flow_occ/NNNNNN_10.png (all valid pixels) and, where present,
    training/flow_noc/NNNNNN_10.png (the non-occluded ones).
  * `FlyingChairsFlow`: data/NNNNN_img{1,2}.ppm, data/NNNNN_flow.flo and
    FlyingChairs_train_val.txt (line i: pair i is 1 = train, 2 = validation).
Every example: `image1`, `image2` uint8 [H, W, 3], `flow` f32 [H, W, 2]
(pixels, x then y), `valid` uint8 [H, W] (1 where the ground truth counts),
`occluded` uint8 [H, W] (1 = occluded; all 0 when unknown),
`has_occlusion` (whether the dataset gives occlusions) and `name`.

Pipeline batches (`get_dataset`): `frames` f32 [B, 2, H, W, 3] in [-1, 1]
(the released model's input scaling: the reference colab feeds
image / 255 * 2 - 1), `flow` f32 [B, H, W, 2], `valid`, `occluded` f32
[B, H, W] and `has_occlusion` f32 [B]. Training takes `crop_size` crops
after the augmentation below; evaluation keeps whole frames, padded to
`eval_pad_to` (padding is invalid) when frame sizes differ (KITTI).

Training augmentation (photometric and spatial; the flow follows every
spatial change). The Perceiver IO paper (Sec. 4.3 / Appendix on optical
flow) trains on AutoFlow with AutoFlow's augmentation; its exact
magnitudes are not reproduced in ../shared/reference/PAPERS.md, so the
defaults in `DEFAULTS` are the RAFT augmentor's (Teed & Deng, 2020, the
recipe AutoFlow and later work build on) and each is marked there.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterator, Mapping

from absl import logging
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from perceiver.data import errors
from perceiver.data import registry
from perceiver.data import rng as rng_lib
from perceiver.data._tf import tf

FLO_MAGIC = 202021.25
FLO_MAGIC_BYTES = np.float32(FLO_MAGIC).tobytes()  # b'PIEH'
MAX_DIM = 16_384  # Largest width/height a reader accepts (bounded memory).
KITTI_SCALE = 64.0
KITTI_OFFSET = 2**15

# ----------------------------------------------------------------- formats


def read_flo(source: str | bytes, path: str | None = None) -> np.ndarray:
  """Flow f32 [H, W, 2] of a Middlebury `.flo` file (a path or its bytes).

  Raises CorruptDataError naming the file when the magic, the declared size
  (1..MAX_DIM per side) or the body length is wrong, or a value is NaN.
  """
  if isinstance(source, (bytes, bytearray)):
    data, path = bytes(source), path or '<.flo bytes>'
  else:
    path = path or os.fspath(source)
    with open(source, 'rb') as f:
      data = f.read(12)
      if len(data) == 12 and data[:4] == FLO_MAGIC_BYTES:
        w, h = np.frombuffer(data[4:12], '<i4')
        if 0 < w <= MAX_DIM and 0 < h <= MAX_DIM:
          data += f.read(int(w) * int(h) * 8 + 1)  # +1: detect trailing bytes.
  if len(data) < 12:
    raise errors.CorruptDataError(path, 'shorter than the 12-byte .flo header')
  if data[:4] != FLO_MAGIC_BYTES:
    raise errors.CorruptDataError(path, 'not a Middlebury .flo file (magic 202021.25 / "PIEH" missing)')
  w, h = (int(v) for v in np.frombuffer(data[4:12], '<i4'))
  if not (0 < w <= MAX_DIM and 0 < h <= MAX_DIM):
    raise errors.CorruptDataError(path, f'declared width/height outside 1..{MAX_DIM}')
  if len(data) - 12 != w * h * 8:
    raise errors.CorruptDataError(
      path, 'body length does not match the declared width x height x 2 float32 (truncated or trailing bytes)'
    )
  flow = np.frombuffer(data[12:], '<f4').reshape(h, w, 2).astype(np.float32)
  if np.isnan(flow).any():
    raise errors.CorruptDataError(path, 'NaN flow values')
  return flow


def encode_flo(flow: np.ndarray) -> bytes:
  flow = _check_flow_array(flow)
  h, w = flow.shape[:2]
  return FLO_MAGIC_BYTES + np.asarray([w, h], '<i4').tobytes() + flow.astype('<f4').tobytes()


def write_flo(path: str, flow: np.ndarray) -> None:
  """Writes f32 [H, W, 2] flow as a Middlebury `.flo` file."""
  data = encode_flo(flow)
  with open(path, 'wb') as f:
    f.write(data)


def _check_flow_array(flow: np.ndarray) -> np.ndarray:
  flow = np.asarray(flow)
  if flow.ndim != 3 or flow.shape[-1] != 2 or not (0 < flow.shape[0] <= MAX_DIM and 0 < flow.shape[1] <= MAX_DIM):
    raise ValueError(f'flow must be [H, W, 2] with 1 <= H, W <= {MAX_DIM}, got shape {flow.shape}')
  return flow


def encode_kitti_png(flow: np.ndarray, valid: np.ndarray | None = None) -> bytes:
  """KITTI 2015 16-bit PNG bytes of flow [H, W, 2] (+ valid [H, W] bool).

  Values are rounded to 1/64 px and must lie within +-512 px (the format's
  range); invalid pixels are written as zeros, like the benchmark's files.
  """
  flow = _check_flow_array(flow).astype(np.float64)
  if valid is None:
    valid = np.ones(flow.shape[:2], bool)
  valid = np.asarray(valid, bool)
  if valid.shape != flow.shape[:2]:
    raise ValueError(f'valid {valid.shape} does not match flow {flow.shape[:2]}')
  coded = np.round(flow * KITTI_SCALE) + KITTI_OFFSET
  if np.any(valid & ((coded < 0) | (coded > 65535)).any(-1)):
    raise ValueError('flow outside the KITTI PNG range (|u|, |v| < 512 px)')
  out = np.zeros(flow.shape[:2] + (3,), np.uint16)
  out[..., :2] = np.where(valid[..., None], coded, 0).astype(np.uint16)
  out[..., 2] = valid
  return tf.io.encode_png(tf.constant(out)).numpy()


def write_kitti_png(path: str, flow: np.ndarray, valid: np.ndarray | None = None) -> None:
  data = encode_kitti_png(flow, valid)
  with open(path, 'wb') as f:
    f.write(data)


def read_kitti_png(source: str | bytes, path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(flow f32 [H, W, 2], valid bool [H, W]) of a KITTI 2015 flow PNG."""
  if isinstance(source, (bytes, bytearray)):
    data, path = bytes(source), path or '<KITTI PNG bytes>'
  else:
    path = path or os.fspath(source)
    with open(source, 'rb') as f:
      data = f.read()
  _check_png_size(data, path)
  try:
    img = tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()
  except (tf.errors.InvalidArgumentError, ValueError) as e:
    raise errors.CorruptDataError(path, f'not a readable PNG ({type(e).__name__})') from None
  if img.ndim != 3 or img.shape[-1] != 3:
    raise errors.CorruptDataError(path, 'a KITTI flow PNG has 3 channels (u, v, valid)')
  valid = img[..., 2] > 0
  flow = (img[..., :2].astype(np.float32) - KITTI_OFFSET) / KITTI_SCALE
  flow[~valid] = 0.0
  return flow, valid


def _check_png_size(data: bytes, path: str) -> None:
  """Refuses a PNG whose header declares more than MAX_DIM per side."""
  if data[:8] != b'\x89PNG\r\n\x1a\n' or len(data) < 24:
    raise errors.CorruptDataError(path, 'not a PNG file')
  w, h = np.frombuffer(data[16:24], '>u4')
  if not (0 < w <= MAX_DIM and 0 < h <= MAX_DIM):
    raise errors.CorruptDataError(path, f'declared width/height outside 1..{MAX_DIM}')


def read_image(path: str) -> np.ndarray:
  """uint8 RGB [H, W, 3] of a PNG/PPM/JPEG frame (bounded size)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  try:
    with Image.open(path) as img:
      if not (0 < img.width <= MAX_DIM and 0 < img.height <= MAX_DIM):
        raise errors.CorruptDataError(path, f'image width/height outside 1..{MAX_DIM}')
      return np.asarray(img.convert('RGB'), np.uint8)
  except (errors.CorruptDataError, FileNotFoundError):
    raise
  except (OSError, ValueError, SyntaxError) as e:
    raise errors.CorruptDataError(path, f'not a readable image ({type(e).__name__})') from None


def read_mask(path: str) -> np.ndarray:
  """bool [H, W]: nonzero pixels of a Sintel mask PNG."""
  img = read_image(path)
  return img.max(-1) > 0


# ----------------------------------------------------------------- layouts

SINTEL_HOW_TO_GET = (
  'download MPI-Sintel-complete.zip (http://sintel.is.tue.mpg.de) and unzip '
  'it into manual_dir so that manual_dir/training/{clean,final}/<scene>/'
  'frame_NNNN.png and training/flow/<scene>/frame_NNNN.flo exist; for '
  'small real data in this layout run scripts/make_sample_data.py --what '
  'flow'
)
KITTI_HOW_TO_GET = (
  'download data_scene_flow.zip (KITTI 2015, http://www.cvlibs.net/'
  'datasets/kitti/eval_scene_flow.php) and unzip it into manual_dir so '
  'that manual_dir/training/image_2/NNNNNN_10.png and training/flow_occ/ '
  'exist; for small real data in this layout run scripts/make_sample_data.py'
  ' --what flow'
)
CHAIRS_HOW_TO_GET = (
  'download FlyingChairs.zip and FlyingChairs_train_val.txt (LMB Freiburg) '
  'into manual_dir so that manual_dir/data/NNNNN_img1.ppm and '
  'manual_dir/FlyingChairs_train_val.txt exist (manual_dir/FlyingChairs_'
  'release/ is also accepted); for small real data in this layout run '
  'scripts/make_sample_data.py --what flow'
)

_SINTEL_FRAME = re.compile(r'frame_(\d{4})\.png$')
_KITTI_FRAME = re.compile(r'(\d{6})_10\.png$')
_CHAIRS_FLOW = re.compile(r'(\d{5})_flow\.flo$')


def sintel_pairs(root: str, pass_name: str) -> list[dict[str, Any]]:
  """Frame pairs with flow in a Sintel `training` tree, sorted."""
  base = os.path.join(root, 'training')
  frames_dir = os.path.join(base, pass_name)
  if not os.path.isdir(frames_dir):
    return []
  pairs = []
  for scene in sorted(os.listdir(frames_dir)):
    names = sorted(n for n in os.listdir(os.path.join(frames_dir, scene)) if _SINTEL_FRAME.search(n))
    for name in names:
      num = int(_SINTEL_FRAME.search(name).group(1))
      nxt = os.path.join(frames_dir, scene, f'frame_{num + 1:04d}.png')
      flo = os.path.join(base, 'flow', scene, name[:-4] + '.flo')
      if not os.path.exists(nxt):
        continue  # The last frame of a scene has no successor.
      pairs.append(
        dict(
          key=f'{scene}/{name[:-4]}',
          image1=os.path.join(frames_dir, scene, name),
          image2=nxt,
          flow=flo,
          invalid=os.path.join(base, 'invalid', scene, name),
          occlusions=os.path.join(base, 'occlusions', scene, name),
        )
      )
  return pairs


def kitti_pairs(root: str) -> list[dict[str, Any]]:
  base = os.path.join(root, 'training')
  image_dir = os.path.join(base, 'image_2')
  if not os.path.isdir(image_dir):
    return []
  pairs = []
  for name in sorted(os.listdir(image_dir)):
    m = _KITTI_FRAME.search(name)
    if not m:
      continue
    pairs.append(
      dict(
        key=m.group(1),
        image1=os.path.join(image_dir, name),
        image2=os.path.join(image_dir, f'{m.group(1)}_11.png'),
        flow_occ=os.path.join(base, 'flow_occ', name),
        flow_noc=os.path.join(base, 'flow_noc', name),
      )
    )
  return pairs


def chairs_root(manual_dir: str) -> str:
  nested = os.path.join(manual_dir, 'FlyingChairs_release')
  return nested if os.path.isdir(nested) else manual_dir


def chairs_pairs(root: str) -> tuple[list[dict[str, Any]], list[int]]:
  """(pairs sorted by number, split flag per pair) of a FlyingChairs tree."""
  data_dir = os.path.join(root, 'data')
  split_file = os.path.join(root, 'FlyingChairs_train_val.txt')
  if not os.path.isdir(data_dir) or not os.path.exists(split_file):
    return [], []
  nums = sorted(int(m.group(1)) for m in map(_CHAIRS_FLOW.search, os.listdir(data_dir)) if m)
  pairs = [
    dict(
      key=f'{n:05d}',
      image1=os.path.join(data_dir, f'{n:05d}_img1.ppm'),
      image2=os.path.join(data_dir, f'{n:05d}_img2.ppm'),
      flow=os.path.join(data_dir, f'{n:05d}_flow.flo'),
    )
    for n in nums
  ]
  with open(split_file, 'rb') as f:
    text = f.read(64 * 1024 * 1024)
  try:
    flags = [int(t) for t in text.split()]
  except ValueError:
    raise errors.CorruptDataError(split_file, 'expected one 1 (train) or 2 (validation) per line') from None
  if any(v not in (1, 2) for v in flags):
    raise errors.CorruptDataError(split_file, 'expected one 1 (train) or 2 (validation) per line')
  if nums and max(nums) > len(flags):
    raise errors.CorruptDataError(split_file, f'has {len(flags)} lines but data/ holds pair number {max(nums)}')
  return pairs, [flags[p - 1] for p in nums]


def load_sintel_pair(p: Mapping[str, str]) -> dict[str, Any]:
  img1, img2 = read_image(p['image1']), read_image(p['image2'])
  flow = read_flo(p['flow'])
  _check_same_size(p['flow'], flow, img1, img2)
  shape = flow.shape[:2]
  valid = np.ones(shape, bool)
  if os.path.exists(p['invalid']):
    valid = ~_mask_of_size(p['invalid'], shape)
  has_occ = os.path.exists(p['occlusions'])
  occ = _mask_of_size(p['occlusions'], shape) if has_occ else np.zeros(shape, bool)
  return _example(p['key'], img1, img2, flow, valid, occ, has_occ)


def load_kitti_pair(p: Mapping[str, str]) -> dict[str, Any]:
  img1, img2 = read_image(p['image1']), read_image(p['image2'])
  flow, valid = read_kitti_png(p['flow_occ'])
  _check_same_size(p['flow_occ'], flow, img1, img2)
  has_occ = os.path.exists(p['flow_noc'])
  occ = np.zeros(valid.shape, bool)
  if has_occ:
    _, noc = read_kitti_png(p['flow_noc'])
    if noc.shape != valid.shape:
      raise errors.CorruptDataError(p['flow_noc'], 'size differs from flow_occ')
    occ = valid & ~noc
  return _example(p['key'], img1, img2, flow, valid, occ, has_occ)


def load_chairs_pair(p: Mapping[str, str]) -> dict[str, Any]:
  img1, img2 = read_image(p['image1']), read_image(p['image2'])
  flow = read_flo(p['flow'])
  _check_same_size(p['flow'], flow, img1, img2)
  shape = flow.shape[:2]
  return _example(p['key'], img1, img2, flow, np.ones(shape, bool), np.zeros(shape, bool), False)


def _mask_of_size(path: str, shape) -> np.ndarray:
  mask = read_mask(path)
  if mask.shape != tuple(shape):
    raise errors.CorruptDataError(path, 'mask size differs from the flow')
  return mask


def _check_same_size(path, flow, img1, img2) -> None:
  if not (img1.shape == img2.shape and img1.shape[:2] == flow.shape[:2]):
    raise errors.CorruptDataError(path, 'flow and the two frames do not have the same size')


def _example(key, img1, img2, flow, valid, occ, has_occ) -> dict[str, Any]:
  if not np.isfinite(flow[valid]).all():
    raise ValueError('non-finite flow at valid pixels')
  return dict(
    name=key,
    image1=img1,
    image2=img2,
    flow=np.where(valid[..., None], flow, 0).astype(np.float32),
    valid=valid.astype(np.uint8),
    occluded=occ.astype(np.uint8),
    has_occlusion=bool(has_occ),
  )


# ----------------------------------------------------------------- builders


def _flow_info(builder, homepage: str) -> tfds.core.DatasetInfo:
  zlib = tfds.features.Encoding.ZLIB
  return tfds.core.DatasetInfo(
    builder=builder,
    features=tfds.features.FeaturesDict(
      {
        'image1': tfds.features.Image(shape=(None, None, 3)),
        'image2': tfds.features.Image(shape=(None, None, 3)),
        'flow': tfds.features.Tensor(shape=(None, None, 2), dtype=np.float32, encoding=zlib),
        'valid': tfds.features.Tensor(shape=(None, None), dtype=np.uint8, encoding=zlib),
        'occluded': tfds.features.Tensor(shape=(None, None), dtype=np.uint8, encoding=zlib),
        'has_occlusion': tfds.features.Scalar(dtype=np.bool_),
        'name': tfds.features.Text(),
      }
    ),
    metadata=tfds.core.MetadataDict(),  # skipped_files.
    homepage=homepage,
  )


def split_pairs(dataset: str, root: str, pass_name: str = 'clean') -> dict[str, list[dict[str, Any]]]:
  """TFDS split -> the pairs of a layout found under `root` (may be empty)."""
  if dataset == 'sintel':
    return {'train': sintel_pairs(root, pass_name)}
  if dataset == 'kitti':
    return {'train': kitti_pairs(root)}
  pairs, flags = chairs_pairs(chairs_root(root))
  return {
    'train': [p for p, f in zip(pairs, flags) if f == 1],
    'validation': [p for p, f in zip(pairs, flags) if f == 2],
  }


_LOADERS = {'sintel': load_sintel_pair, 'kitti': load_kitti_pair, 'flying_chairs': load_chairs_pair}


class _FlowBuilder(errors.SkipsCorruptFiles, tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared: the layout's splits, on_corrupt handling, example generation."""

  DATASET = ''
  HOW_TO_GET = ''
  HOMEPAGE = ''

  def __init__(self, *, on_corrupt: str = 'raise', **kwargs):
    self._init_corrupt(on_corrupt, logging)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return _flow_info(self, self.HOMEPAGE)

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    pass_name = self.builder_config.name if self.builder_config else 'clean'
    splits = split_pairs(self.DATASET, root, pass_name)
    if not any(splits.values()):
      raise errors.MissingDataError(self.name, expected_files(self.DATASET, root, pass_name)['train'], self.HOW_TO_GET)
    self.info.metadata['skipped_files'] = self._corrupt.skipped
    load = _LOADERS[self.DATASET]
    return {split: self._generate_examples(pairs, load) for split, pairs in splits.items()}

  def _generate_examples(self, pairs, load) -> Iterator[tuple[str, dict[str, Any]]]:
    for p in pairs:
      try:
        example = load(p)
      except FileNotFoundError as e:
        raise errors.MissingDataError(self.name, [e.filename or str(e)], self.HOW_TO_GET) from None
      except Exception as e:  # pylint: disable=broad-except
        path = e.path if isinstance(e, errors.CorruptDataError) else p['key']
        self._corrupt.report(path, e)
        continue
      yield p['key'], example


class SintelFlow(_FlowBuilder):
  """MPI-Sintel training pairs of one pass ('clean' or 'final')."""

  name = 'sintel_flow'
  DATASET = 'sintel'
  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = SINTEL_HOW_TO_GET
  HOW_TO_GET = SINTEL_HOW_TO_GET
  HOMEPAGE = 'http://sintel.is.tue.mpg.de/'
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name='clean'), tfds.core.BuilderConfig(name='final')]


class KittiFlow(_FlowBuilder):
  """KITTI 2015 scene-flow training pairs (frames 10 -> 11)."""

  name = 'kitti_flow'
  DATASET = 'kitti'
  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = KITTI_HOW_TO_GET
  HOW_TO_GET = KITTI_HOW_TO_GET
  HOMEPAGE = 'http://www.cvlibs.net/datasets/kitti/eval_scene_flow.php'


class FlyingChairsFlow(_FlowBuilder):
  """FlyingChairs with its official train / validation split."""

  name = 'flying_chairs_flow'
  DATASET = 'flying_chairs'
  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = CHAIRS_HOW_TO_GET
  HOW_TO_GET = CHAIRS_HOW_TO_GET
  HOMEPAGE = 'https://lmb.informatik.uni-freiburg.de/resources/datasets/FlyingChairs.en.html'


DATASETS = ('sintel', 'kitti', 'flying_chairs')


def expected_files(dataset: str, root: str, pass_name: str = 'clean') -> dict[str, list[str]]:
  """TFDS split -> the manual files (patterns) that split is built from."""
  if dataset == 'sintel':
    t = os.path.join(root, 'training')
    files = [
      os.path.join(t, pass_name, '<scene>', 'frame_NNNN.png'),
      os.path.join(t, 'flow', '<scene>', 'frame_NNNN.flo'),
    ]
    return {'train': files}
  if dataset == 'kitti':
    t = os.path.join(root, 'training')
    return {'train': [os.path.join(t, 'image_2', 'NNNNNN_10.png'), os.path.join(t, 'flow_occ', 'NNNNNN_10.png')]}
  root = chairs_root(root)
  files = [
    os.path.join(root, 'data', 'NNNNN_img1.ppm'),
    os.path.join(root, 'data', 'NNNNN_flow.flo'),
    os.path.join(root, 'FlyingChairs_train_val.txt'),
  ]
  return {'train': files, 'validation': files}


def make_builder(config) -> tfds.core.DatasetBuilder:
  kwargs = dict(data_dir=config.data_dir or None, on_corrupt=config.on_corrupt)
  if config.dataset == 'sintel':
    return SintelFlow(config=config.sintel_pass, **kwargs)
  if config.dataset == 'kitti':
    return KittiFlow(**kwargs)
  return FlyingChairsFlow(**kwargs)


def get_builder(config, *, split: str | None = None) -> tfds.core.DatasetBuilder:
  """The prepared builder (built from manual_dir on first use)."""
  builder = make_builder(config)
  if os.path.exists(os.path.join(builder.data_dir, 'dataset_info.json')):
    return builder
  how = {'sintel': SINTEL_HOW_TO_GET, 'kitti': KITTI_HOW_TO_GET, 'flying_chairs': CHAIRS_HOW_TO_GET}[config.dataset]
  found = (
    config.manual_dir
    and os.path.isdir(config.manual_dir)
    and any(split_pairs(config.dataset, config.manual_dir, config.sintel_pass).values())
  )
  if not found or not config.prepare:
    if not config.prepare:
      how += f'; data.prepare is False, so the records expected in {builder.data_dir} are not built here'
    root = config.manual_dir or '<data.manual_dir>'
    expected = expected_files(config.dataset, root, config.sintel_pass)
    raise errors.MissingDataError(builder.name, expected.get(split or 'train', expected['train']), how)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=config.manual_dir))
  return builder


# ----------------------------------------------------------------- pipeline

# Every field of a flow `config.data` section (unknown fields are rejected).
DEFAULTS: dict[str, Any] = dict(
  name='flow',
  dataset='flying_chairs',  # 'sintel' | 'kitti' | 'flying_chairs'.
  sintel_pass='clean',  # 'clean' | 'final'.
  # '' : TFDS's default data_dir / no manual files (strings, so that both
  # can be set from the command line).
  data_dir='',
  manual_dir='',
  on_corrupt='raise',
  prepare=True,
  # TFDS split strings behind split='train' / 'valid' / 'test'.
  train_split='train',
  valid_split='validation',
  test_split='validation',
  shuffle_buffer=1_000,
  cache=False,
  num_parallel_calls=-1,
  # 368 x 496: the released model's training crop (Perceiver IO, Sec. 4.3
  # and the reference colab's TRAIN_SIZE).
  crop_size=(368, 496),
  eval_pad_to=(),  # (H, W): pad eval frames (KITTI sizes vary); () off.
  # Spatial augmentation, RAFT augmentor values (Teed & Deng 2020, the
  # FlyingChairs stage: min_scale -0.1, max_scale 1.0): scale = 2^U(lo, hi)
  # with probability spatial_prob; x/y stretched by 2^U(-s, s) with
  # probability stretch_prob; flips with flip probabilities.
  spatial_prob=0.8,
  scale_range=(-0.1, 1.0),
  stretch_prob=0.8,
  max_stretch=0.2,
  hflip_prob=0.5,
  vflip_prob=0.1,
  # Photometric (RAFT: ColorJitter(0.4, 0.4, 0.4, 0.5 / pi), applied to
  # both frames alike, independently per frame with probability 0.2).
  brightness=0.4,
  contrast=0.4,
  saturation=0.4,
  hue=0.5 / 3.14159,
  asymmetric_color_prob=0.2,
  # Occlusion augmentation (RAFT's eraser: 1-2 boxes of 50-100 px filled
  # with frame 2's mean colour, probability 0.5).
  eraser_prob=0.5,
  eraser_size=(50, 100),
)

_CHOICES = {'dataset': DATASETS, 'sintel_pass': ('clean', 'final'), 'on_corrupt': ('raise', 'skip')}


def resolve_config(data_config) -> ml_collections.ConfigDict:
  """DEFAULTS overlaid with `data_config`; one-line errors naming the field."""
  given = dict(data_config.items() if hasattr(data_config, 'items') else data_config)
  unknown = sorted(set(given) - set(DEFAULTS))
  if unknown:
    raise ValueError(f'unknown data field(s) {unknown} for the flow pipeline; known: {sorted(DEFAULTS)}')
  config = ml_collections.ConfigDict(dict(DEFAULTS))
  with config.unlocked():
    for key, value in given.items():
      if isinstance(value, ml_collections.ConfigDict):
        value = value.to_dict()
      config[key] = value
  for field, choices in _CHOICES.items():
    if config[field] not in choices:
      raise ValueError(f'data.{field} must be one of {choices}, got {config[field]!r}')
  crop = tuple(config.crop_size)
  if len(crop) != 2 or min(crop) < 1:
    raise ValueError(f'data.crop_size must be (H, W) >= 1, got {crop}')
  if config.eval_pad_to and len(tuple(config.eval_pad_to)) != 2:
    raise ValueError(f'data.eval_pad_to must be (H, W) or (), got {config.eval_pad_to!r}')
  return config


def split_string(config, split: str) -> str:
  if split not in ('train', 'valid', 'test'):
    raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
  return config[f'{split}_split']


def num_examples(data_config, split: str) -> int:
  config = resolve_config(data_config)
  split_str = split_string(config, split)
  builder = get_builder(config, split=split_str.split('[')[0])
  return builder.info.splits[split_str].num_examples


def get_dataset(
  data_config, *, split: str, batch_size: int, shuffle_seed: int | None, process_index: int = 0, process_count: int = 1
) -> tf.data.Dataset:
  """Batches of `split` for one host (see the module docstring).

  'train' is one epoch in the order given by `shuffle_seed`, augmented
  from per-example seeds (resumable), remainder dropped; 'valid'/'test' are
  each example once, in order, whole frames.
  """
  config = resolve_config(data_config)
  split_str = split_string(config, split)
  builder = get_builder(config, split=split_str.split('[')[0])
  is_training = split == 'train'
  host_split = tfds.even_splits(split_str, n=process_count, drop_remainder=False)[process_index]
  ds = builder.as_dataset(
    split=host_split,
    shuffle_files=is_training,
    read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed, add_tfds_id=False),
  )
  if config.cache:
    ds = ds.cache()
  parallel = tf.data.AUTOTUNE if config.num_parallel_calls < 0 else config.num_parallel_calls
  if is_training:
    ds = ds.shuffle(config.shuffle_buffer, seed=shuffle_seed)
    ds = tf.data.Dataset.zip(ds, rng_lib.example_seeds(shuffle_seed))
    ds = ds.map(lambda ex, seed: preprocess_train(ex, config, rng_lib.SeedStream(seed)), num_parallel_calls=parallel)
  else:
    ds = ds.map(lambda ex: preprocess_eval(ex, config), num_parallel_calls=parallel)
  ds = ds.batch(batch_size, drop_remainder=is_training)
  return ds.prefetch(tf.data.AUTOTUNE)


def _to_unit_range(img: tf.Tensor) -> tf.Tensor:
  """uint8 -> f32 in [-1, 1] (the reference colab's normalisation)."""
  return tf.cast(img, tf.float32) / 255.0 * 2.0 - 1.0


def _batch_dict(img1, img2, flow, valid, occluded, has_occ) -> dict:
  return {
    'frames': tf.stack([img1, img2], 0),
    'flow': tf.cast(flow, tf.float32),
    'valid': tf.cast(valid, tf.float32),
    'occluded': tf.cast(occluded, tf.float32),
    'has_occlusion': tf.cast(has_occ, tf.float32),
  }


def preprocess_eval(example: dict, config) -> dict:
  img1 = _to_unit_range(example['image1'])
  img2 = _to_unit_range(example['image2'])
  flow, valid, occ = example['flow'], example['valid'], example['occluded']
  if config.eval_pad_to:
    h, w = (int(v) for v in config.eval_pad_to)
    tf.debugging.assert_less_equal(
      tf.shape(flow)[:2], tf.constant([h, w]), message=f'a frame is larger than data.eval_pad_to={(h, w)}'
    )
    pad = lambda x: tf.image.pad_to_bounding_box(x if x.shape.rank == 3 else x[..., None], 0, 0, h, w)
    img1, img2, flow = pad(img1), pad(img2), pad(flow)
    valid, occ = pad(valid)[..., 0], pad(occ)[..., 0]
  return _batch_dict(img1, img2, flow, valid, occ, example['has_occlusion'])


def preprocess_train(example: dict, config, rng: rng_lib.SeedStream) -> dict:
  img1 = tf.cast(example['image1'], tf.float32) / 255.0  # [H, W, 3] in [0, 1]
  img2 = tf.cast(example['image2'], tf.float32) / 255.0
  flow = tf.cast(example['flow'], tf.float32)  # [H, W, 2]
  valid = tf.cast(example['valid'], tf.float32)  # [H, W]
  occ = tf.cast(example['occluded'], tf.float32)
  img1, img2 = photometric(img1, img2, config, rng)
  img2 = eraser(img2, config, rng)
  img1, img2, flow, valid, occ = spatial(img1, img2, flow, valid, occ, config, rng)
  return _batch_dict(img1 * 2.0 - 1.0, img2 * 2.0 - 1.0, flow, valid, occ, example['has_occlusion'])


def photometric(img1, img2, config, rng):
  """Colour jitter, shared by both frames or (asymmetric_color_prob) not."""

  def params():
    # Factors as torchvision's ColorJitter draws them; hue is a fraction of
    # the colour circle (tf.image.adjust_hue's delta).
    return (
      rng.uniform([], 1 - config.brightness, 1 + config.brightness),
      rng.uniform([], 1 - config.contrast, 1 + config.contrast),
      rng.uniform([], 1 - config.saturation, 1 + config.saturation),
      rng.uniform([], -config.hue, config.hue),
    )

  def jitter(img, p):
    b, c, s, h = p
    img = tf.clip_by_value(img * b, 0, 1)
    img = tf.clip_by_value(tf.image.adjust_contrast(img, c), 0, 1)
    img = tf.clip_by_value(tf.image.adjust_saturation(img, s), 0, 1)
    return tf.clip_by_value(tf.image.adjust_hue(img, h), 0, 1)

  p1, p2 = params(), params()
  asym = rng.coin(config.asymmetric_color_prob)
  p2 = tuple(tf.where(asym, b, a) for a, b in zip(p1, p2))
  return jitter(img1, p1), jitter(img2, p2)


def eraser(img2, config, rng):
  """Fills 1-2 random boxes of frame 2 with its mean colour (occlusions)."""
  if config.eraser_prob <= 0:
    return img2
  h, w = tf.shape(img2)[0], tf.shape(img2)[1]
  lo, hi = config.eraser_size
  mean = tf.reduce_mean(img2, axis=(0, 1))
  apply = rng.coin(config.eraser_prob)
  ys, xs = tf.range(h)[:, None], tf.range(w)[None, :]
  for i in range(2):
    x0, y0 = rng.randint(0, w), rng.randint(0, h)
    dx, dy = rng.randint(lo, hi), rng.randint(lo, hi)
    box = (ys >= y0) & (ys < y0 + dy) & (xs >= x0) & (xs < x0 + dx)
    use = apply & (rng.coin(0.5) if i else True)
    box = box & use
    img2 = tf.where(box[..., None], mean, img2)
  return img2


def spatial(img1, img2, flow, valid, occ, config, rng):
  """Random scale/stretch, flips and a crop of `crop_size`; flow follows.

  Resizing by (sy, sx) multiplies the flow by (sx, sy); a horizontal flip
  negates u, a vertical flip v. Sparse ground truth (KITTI) is resized by
  normalised convolution (flow * valid and valid resized together) so that
  invalid pixels never leak into valid ones.
  """
  ch, cw = (int(v) for v in config.crop_size)
  h = tf.cast(tf.shape(img1)[0], tf.float32)
  w = tf.cast(tf.shape(img1)[1], tf.float32)
  lo, hi = config.scale_range
  scale = 2.0 ** rng.uniform([], lo, hi)
  stretch = 2.0 ** rng.uniform([2], -config.max_stretch, config.max_stretch)
  stretch = tf.where(rng.coin(config.stretch_prob), stretch, tf.ones([2]))
  sy, sx = scale * stretch[0], scale * stretch[1]
  do = rng.coin(config.spatial_prob)
  sy, sx = tf.where(do, sy, 1.0), tf.where(do, sx, 1.0)
  # Never smaller than the crop (+8 px margin, as RAFT).
  min_s = tf.maximum((ch + 8) / h, (cw + 8) / w)
  sy, sx = tf.maximum(sy, min_s), tf.maximum(sx, min_s)
  nh = tf.cast(tf.math.ceil(h * sy), tf.int32)
  nw = tf.cast(tf.math.ceil(w * sx), tf.int32)
  size = tf.stack([nh, nw])
  img1 = tf.image.resize(img1, size, 'bilinear')
  img2 = tf.image.resize(img2, size, 'bilinear')
  weight = tf.image.resize(valid[..., None], size, 'bilinear')
  flow = tf.image.resize(flow * valid[..., None], size, 'bilinear')
  flow = flow / tf.maximum(weight, 1e-6)
  ry = tf.cast(nh, tf.float32) / h
  rx = tf.cast(nw, tf.float32) / w
  flow = flow * tf.stack([rx, ry])
  valid = tf.cast(weight[..., 0] > 0.99, tf.float32)
  occ = tf.cast(tf.image.resize(occ[..., None], size, 'nearest')[..., 0], tf.float32)
  if config.hflip_prob > 0:
    flip = rng.coin(config.hflip_prob)
    img1, img2, valid, occ = (tf.where(flip, tf.reverse(x, [1]), x) for x in (img1, img2, valid, occ))
    flow = tf.where(flip, tf.reverse(flow, [1]) * [-1.0, 1.0], flow)
  if config.vflip_prob > 0:
    flip = rng.coin(config.vflip_prob)
    img1, img2, valid, occ = (tf.where(flip, tf.reverse(x, [0]), x) for x in (img1, img2, valid, occ))
    flow = tf.where(flip, tf.reverse(flow, [0]) * [1.0, -1.0], flow)
  y0 = rng.randint(0, nh - ch + 1)
  x0 = rng.randint(0, nw - cw + 1)
  crop = lambda x: x[y0 : y0 + ch, x0 : x0 + cw]
  img1, img2, flow, valid, occ = (crop(x) for x in (img1, img2, flow, valid, occ))
  flow = flow * valid[..., None]
  return (
    tf.ensure_shape(img1, [ch, cw, 3]),
    tf.ensure_shape(img2, [ch, cw, 3]),
    tf.ensure_shape(flow, [ch, cw, 2]),
    tf.ensure_shape(valid, [ch, cw]),
    tf.ensure_shape(occ, [ch, cw]),
  )


# The runner's data source `data.name = 'flow'` (perceiver.data.registry).
SOURCE = registry.DataSource('flow', get_dataset, num_examples)
