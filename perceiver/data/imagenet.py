"""ImageNet (TFDS `imagenet2012`, manual tars) with the Perceiver preprocessing.

Records are built by `Imagenet2012`, a subclass of TFDS's own builder with
the same name, version and features (records built by either are
interchangeable). It differs in two ways:
  * validation labels come from the line of TFDS's validation_labels.txt
    given by the number in the file name (ILSVRC2012_val_<i>.JPEG). TFDS
    pairs the sorted file names with the *first* N lines, which is the same
    for the full 50,000 images but mislabels any subset, e.g. the sample data;
  * every image is decoded once while building with the decoder training
    uses (TF's JPEG decoder): a file it rejects but PIL reads (a PNG or
    another format named .JPEG) and a CMYK JPEG (which TF decodes to wrong
    colours) are re-encoded as RGB JPEGs; one nobody reads is skipped and
    counted or raises with its path (`on_corrupt`). Every such file is
    listed in the records' build_report.tsv, so no undecodable image ever
    reaches a training run;
  * the class list and validation labels may be the user's own
    (`class_list`, `validation_labels`): an ImageNet-layout set of any
    classes gets labels 0..K-1 in its own order. Records built with one
    class list are refused for another.

Preprocessing (the Perceiver reference): Inception crop (area 8-100%,
aspect 3/4-4/3) decoded straight from the JPEG, bicubic resize, random flip,
RandAugment(N, M), ImageNet mean/std normalisation; eval: centre crop of
size/(size+32) of the shorter side. MixUp / CutMix act on whole batches.

Positions (`pos` [B, H*W, 2], (y, x) in [-1, 1], row-major like the pixels):
  'crop'  the crop's own grid, linspace(-1, 1) along each axis. The paper
          computes Fourier features relative to the crop, so this is the
          same grid for every example (kept as an explicit input so the
          model need not assume it);
  'image' where each output pixel came from in the ORIGINAL image, also in
          [-1, 1] (flip-aware): the ablation the paper argues against;
  'none'  no `pos` key (the model builds the grid itself).
"""

import io
import os
import re
import tarfile

from absl import logging
import tensorflow_datasets as tfds
from tensorflow_datasets.datasets.imagenet2012 import imagenet2012_dataset_builder as tfds_imagenet
from tensorflow_datasets.datasets.imagenet2012 import imagenet_common

from perceiver.data import errors
from perceiver.data import randaugment
from perceiver.data import rng as rng_lib
from perceiver.data._tf import tf

MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)

TRAIN_TAR = 'ILSVRC2012_img_train.tar'
VAL_TAR = 'ILSVRC2012_img_val.tar'
_HOW_TO_GET = (
  'register at https://image-net.org/download-images and put '
  f'{TRAIN_TAR} and {VAL_TAR} (ILSVRC 2012) into manual_dir; for '
  'small real data in the same layout run '
  'scripts/make_sample_data.py --what imagenet'
)
_VAL_NAME = re.compile(r'ILSVRC2012_val_(\d+)\.JPEG$')


def training_decodable(data: bytes) -> bytes:
  """`data` as bytes that training's JPEG decoder reads, else raises.

  Training runs tf.image.extract_jpeg_shape and decode_and_crop_jpeg on the
  stored bytes; the same decoder runs here. Returns `data` itself when it
  decodes as an RGB or greyscale JPEG, otherwise PIL's RGB re-encoding
  (quality 95) of whatever PIL can read. Raises ValueError (or PIL's
  error) for a file neither decoder reads.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  try:
    tf.image.extract_jpeg_shape(data)
    tf.io.decode_jpeg(data, channels=3)
    tf_ok = True
  except (tf.errors.InvalidArgumentError, ValueError):
    tf_ok = False
  with Image.open(io.BytesIO(data)) as img:
    if tf_ok and img.format == 'JPEG' and img.mode in ('RGB', 'L'):
      return data  # CMYK decodes in TF, with wrong colours: converted.
    img.load()
    out = io.BytesIO()
    img.convert('RGB').save(out, format='JPEG', quality=95)
  converted = out.getvalue()
  tf.io.decode_jpeg(converted, channels=3)  # PIL's output must decode too.
  return converted


def _read_lines(path: str, field: str) -> list[str]:
  """Non-empty stripped lines of a user's text file named by `field`."""
  try:
    with tf.io.gfile.GFile(path) as f:
      names = [line.strip() for line in f.read().splitlines()]
  except (tf.errors.NotFoundError, OSError) as e:
    raise errors.MissingDataError('imagenet2012', [path], f'data.{field} names this file', field=f'data.{field}') from e
  except UnicodeDecodeError:
    raise errors.CorruptDataError(path, f'data.{field}: not UTF-8 text') from None
  names = [n for n in names if n]
  if not names:
    raise errors.CorruptDataError(path, f'data.{field}: no names in the file')
  return names


def read_class_list(path: str) -> list[str]:
  """Class names, one per line, in label order (data.class_list)."""
  names = _read_lines(path, 'class_list')
  if len(set(names)) != len(names):
    raise errors.CorruptDataError(path, 'data.class_list: a class is listed twice')
  return names


class Imagenet2012(errors.SkipsCorruptFiles, tfds_imagenet.Builder, skip_registration=True):
  """TFDS imagenet2012 with index-based val labels and corrupt-file checks."""

  name = 'imagenet2012'

  def __init__(
    self,
    *,
    on_corrupt: str = 'raise',
    class_names: list[str] | None = None,
    validation_synsets: list[str] | None = None,
    **kwargs,
  ):
    """class_names: label order (None: TFDS's labels.txt);
    validation_synsets: line i = class of ILSVRC2012_val_<i>.JPEG (None:
    TFDS's validation_labels.txt)."""
    self._init_corrupt(on_corrupt, logging)
    self._class_names = class_names
    self._validation_synsets = validation_synsets
    super().__init__(**kwargs)

  def _info(self):
    info = super()._info()
    if self._class_names is not None:
      # Same features, the user's labels: K = len(class_names).
      info = self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(
          {
            'image': tfds.features.Image(encoding_format='jpeg'),
            'label': tfds.features.ClassLabel(names=self._class_names),
            'file_name': tfds.features.Text(),
          }
        ),
        supervised_keys=('image', 'label'),
        homepage='https://image-net.org/',
      )
    return info

  def _split_generators(self, dl_manager):
    manual = dl_manager.manual_dir
    splits = []
    for split, tar, labels in (
      (tfds.Split.TRAIN, TRAIN_TAR, None),
      (tfds.Split.VALIDATION, VAL_TAR, lambda: _validation_labels(self._validation_synsets)),
    ):
      path = os.path.join(manual, tar)
      if tf.io.gfile.exists(path):
        splits.append(tfds.core.SplitGenerator(name=split, gen_kwargs=dict(path=path, val_labels=labels)))
    if not splits:
      raise errors.MissingDataError(
        'imagenet2012', [os.path.join(manual, TRAIN_TAR), os.path.join(manual, VAL_TAR)], _HOW_TO_GET
      )
    return splits

  def _generate_examples(self, path: str, val_labels):
    try:
      outer = tarfile.open(path, mode='r|')
    except (tarfile.TarError, OSError) as e:
      raise errors.CorruptDataError(path, f'{type(e).__name__}: {e}') from e
    with outer:
      if val_labels is not None:
        labels = val_labels()
        for name, data in _iter_tar(outer, path, self._corrupt):
          yield from self._example(f'{path}:{name}', name, data, labels.get(name))
        return
      for inner_name, inner_data in _iter_tar(outer, path, self._corrupt, MAX_INNER_TAR_BYTES):
        synset = os.path.basename(inner_name)[:-4]  # 'n01440764.tar'
        inner_path = f'{path}:{inner_name}'
        try:
          inner = tarfile.open(fileobj=io.BytesIO(inner_data), mode='r|')
        except (tarfile.TarError, OSError) as e:
          self._corrupt.report(inner_path, e)
          continue
        with inner:
          for name, data in _iter_tar(inner, inner_path, self._corrupt):
            yield from self._example(f'{inner_path}:{name}', name, data, synset)

  def _example(self, where: str, name: str, data: bytes, label):
    if label is None:
      self._corrupt.report(
        where,
        ValueError(
          'no label: file name not of the form ILSVRC2012_val_<index>.JPEG '
          'or its index is past the end of the validation labels'
        ),
      )
      return
    names = self.info.features['label'].names
    if label not in names:
      # Deliberate for a subset (the user's class_list); listed, not fatal.
      self._corrupt.note('not_in_class_list', where, 'class not in the class list; left out')
      return
    try:
      image = training_decodable(data)
    except Exception as e:  # pylint: disable=broad-except
      self._corrupt.report(where, e)
      return
    if image is not data:
      self._corrupt.note(
        'converted', where, "not an RGB/greyscale JPEG that TF's decoder reads; re-encoded as an RGB JPEG"
      )
    yield name, {'file_name': name, 'image': io.BytesIO(image), 'label': label}


# Largest member read into memory: an image, or one class's inner tar of the
# training archive (the biggest is ~0.3 GB). Larger declared sizes are refused
# unread, like sparse members, whose holes tarfile would fill with zeros (a
# 10 KB archive can declare a 100 GB sparse file).
MAX_IMAGE_BYTES = 64 << 20
MAX_INNER_TAR_BYTES = 4 << 30


def _skip_member_data(tar: tarfile.TarFile) -> None:
  """Reads past a refused member's stored data, stopping at the archive's end.

  (tarfile would seek there itself, but a stream's seek loops over the
  *declared* size: minutes for a 1 TB header on a 10 KB archive.)
  """
  remaining = tar.offset - tar.fileobj.tell()
  while remaining > 0:
    chunk = tar.fileobj.read(min(remaining, 1 << 20))
    if not chunk:
      raise EOFError('the archive ends inside a refused member')
    remaining -= len(chunk)


def _iter_tar(tar: tarfile.TarFile, path: str, corrupt: errors.CorruptCounter, max_bytes: int = MAX_IMAGE_BYTES):
  """Yields (member name, bytes) of the regular files of a streamed tar.

  Sparse members and members over ``max_bytes`` are reported to ``corrupt``
  (skipped and counted, or raised) without reading their data.
  """
  try:
    for member in tar:
      if not member.isfile():
        continue
      name = os.path.basename(member.name)
      if member.issparse() or member.size > max_bytes:
        why = (
          'sparse tar member refused'
          if member.issparse()
          else f'tar member of {member.size} bytes refused (limit {max_bytes})'
        )
        corrupt.report(f'{path}:{name[:200]}', errors.CorruptDataError(f'{path}:{name[:200]}', why))
        _skip_member_data(tar)
        continue
      yield name, tar.extractfile(member).read()
  except (tarfile.TarError, OSError, EOFError, MemoryError) as e:
    # A truncated or garbled archive: nothing after this point is readable.
    corrupt.report(path, e)


def _validation_labels(synsets: list[str] | None = None) -> dict[str, str]:
  """File name -> synset, by the index in the name (see module docstring)."""
  if synsets is None:
    with tf.io.gfile.GFile(os.fspath(tfds.core.tfds_path(imagenet_common._VALIDATION_LABELS_FNAME))) as f:  # pylint: disable=protected-access
      synsets = f.read().split()
  return {f'ILSVRC2012_val_{i + 1:08d}.JPEG': s for i, s in enumerate(synsets)}


def expected_manual_files(config) -> dict[str, list[str]]:
  """TFDS split -> manual files it is built from."""
  manual = config.manual_dir or ''
  return {'train': [os.path.join(manual, TRAIN_TAR)], 'validation': [os.path.join(manual, VAL_TAR)]}


HOW_TO_GET = _HOW_TO_GET


def _user_file(config, path: str) -> str:
  """A relative class_list / validation_labels path is under manual_dir."""
  return path if os.path.isabs(path) else os.path.join(config.manual_dir, path)


def make_builder(config) -> tfds.core.DatasetBuilder:
  class_names = read_class_list(_user_file(config, config.class_list)) if config.class_list else None
  validation = (
    _read_lines(_user_file(config, config.validation_labels), 'validation_labels') if config.validation_labels else None
  )
  builder = Imagenet2012(
    data_dir=config.data_dir or None,
    on_corrupt=config.on_corrupt,
    class_names=class_names,
    validation_synsets=validation,
  )
  built = os.path.join(builder.data_dir, 'label.labels.txt')
  if tf.io.gfile.exists(built):
    with tf.io.gfile.GFile(built) as f:
      built_names = f.read().split('\n')
    built_names = [n for n in built_names if n]
    wanted = list(builder.info.features['label'].names)
    if built_names != wanted:
      raise errors.CorruptDataError(
        os.fspath(builder.data_dir),
        f'these records were built with another class list '
        f'({len(built_names)} classes) than data.class_list='
        f'{config.class_list!r} ({len(wanted)}); point data.data_dir at a '
        'fresh directory (or delete this one) to rebuild',
      )
  return builder


def decoders(config) -> dict:
  del config
  return {'image': tfds.decode.SkipDecoding()}  # Crop before decoding.


# ------------------------------------------------------------ preprocessing


def _crop_window_train(shape: tf.Tensor, config, rng: rng_lib.SeedStream) -> tf.Tensor:
  """Inception-style random crop window [y, x, h, w] of a [H, W, C] image."""
  bbox = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, shape=[1, 1, 4])
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
    shape,
    bounding_boxes=bbox,
    seed=rng(),
    min_object_covered=0.1,
    aspect_ratio_range=tuple(config.crop_aspect_range),
    area_range=tuple(config.crop_area_range),
    max_attempts=10,
    use_image_if_no_bounding_boxes=True,
  )
  window = tf.stack([begin[0], begin[1], size[0], size[1]])
  # After 10 failed attempts TF returns the whole image; use the eval crop.
  return tf.cond(tf.reduce_all(size[:2] == shape[:2]), lambda: _crop_window_eval(shape, config), lambda: window)


def _crop_window_eval(shape: tf.Tensor, config) -> tf.Tensor:
  """Centre crop of size/(size+padding) of the shorter side."""
  h, w = shape[0], shape[1]
  ratio = config.image_size / (config.image_size + config.eval_crop_padding)
  side = tf.cast(ratio * tf.cast(tf.minimum(h, w), tf.float32), tf.int32)
  return tf.stack([(h - side + 1) // 2, (w - side + 1) // 2, side, side])


def crop_positions(window: tf.Tensor, image_shape: tf.Tensor, size: int, mode: str, flipped: tf.Tensor) -> tf.Tensor:
  """(y, x) positions in [-1, 1] of a size x size crop; float32 [size**2, 2].

  mode 'crop': the crop's own grid. mode 'image': the original-image
  coordinates of the crop's pixels (`window` = [y, x, h, w] in pixels).
  """
  t = tf.linspace(0.0, 1.0, size)  # [S]
  if mode == 'crop':
    ys, xs = 2.0 * t - 1.0, 2.0 * t - 1.0
  else:
    window = tf.cast(window, tf.float32)
    h = tf.cast(image_shape[0], tf.float32)
    w = tf.cast(image_shape[1], tf.float32)
    ys = 2.0 * (window[0] + t * (window[2] - 1.0)) / tf.maximum(h - 1, 1) - 1
    xs = 2.0 * (window[1] + t * (window[3] - 1.0)) / tf.maximum(w - 1, 1) - 1
    xs = tf.where(flipped, xs[::-1], xs)
  grid = tf.stack(tf.meshgrid(ys, xs, indexing='ij'), axis=-1)  # [S, S, 2]
  return tf.reshape(grid, [size * size, 2])


def normalize(image: tf.Tensor) -> tf.Tensor:
  return (image - tf.constant(MEAN_RGB)) / tf.constant(STDDEV_RGB)


def preprocess(example: dict, config, is_training: bool, rng: rng_lib.SeedStream | None) -> dict:
  """One encoded example -> {'image' [S, S, 3], 'label' [], 'pos'?}."""
  size = config.image_size
  data = example['image']  # Encoded JPEG bytes.
  shape = tf.image.extract_jpeg_shape(data)
  if is_training:
    window = _crop_window_train(shape, config, rng)
  else:
    window = _crop_window_eval(shape, config)
  image = tf.image.decode_and_crop_jpeg(data, window, channels=3)
  image = tf.image.resize(tf.cast(image, tf.float32), [size, size], method='bicubic')
  image = tf.clip_by_value(image, 0.0, 255.0)
  flipped = tf.constant(False)
  if is_training and config.random_flip:
    flipped = rng.coin()
    image = tf.where(flipped, image[:, ::-1], image)
  if is_training and config.randaugment_num_layers > 0:
    image = randaugment.randaugment(image, config.randaugment_num_layers, config.randaugment_magnitude, rng)
  out = {
    'image': normalize(image),  # [S, S, 3]
    'label': tf.cast(example['label'], tf.int32),
  }
  if config.pos != 'none':
    out['pos'] = crop_positions(window, shape, size, config.pos, flipped)
  return out


# ------------------------------------------------------- MixUp and CutMix


def _beta(alpha: float, shape, rng: rng_lib.SeedStream) -> tf.Tensor:
  a = tf.random.stateless_gamma(shape, rng(), alpha)
  b = tf.random.stateless_gamma(shape, rng(), alpha)
  return a / (a + b)


def mixup(images: tf.Tensor, labels: tf.Tensor, alpha: float, rng: rng_lib.SeedStream):
  """MixUp of each example with the batch reversed.

  Args:
    images: float32 [B, H, W, C].
    labels: float32 [B, K] (one-hot or already soft).
    alpha: Beta(alpha, alpha) parameter of the mixing weight.
    rng: the batch's seed stream.

  Returns:
    images [B, H, W, C], labels [B, K], lam [B] (weight of the original).
  """
  lam = _beta(alpha, [tf.shape(images)[0]], rng)  # [B]
  return _mix(images, labels, lam[:, None, None, None], lam)


def cutmix(images: tf.Tensor, labels: tf.Tensor, alpha: float, rng: rng_lib.SeedStream):
  """CutMix: paste a box of the reversed batch; label weight = area kept."""
  b, h, w = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
  lam = _beta(alpha, [b], rng)  # [B] target fraction kept
  hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
  cut = tf.sqrt(1.0 - lam)
  cy = rng.uniform([b]) * hf
  cx = rng.uniform([b]) * wf
  y0 = tf.clip_by_value(cy - cut * hf / 2, 0, hf)[:, None]  # [B, 1]
  y1 = tf.clip_by_value(cy + cut * hf / 2, 0, hf)[:, None]
  x0 = tf.clip_by_value(cx - cut * wf / 2, 0, wf)[:, None]
  x1 = tf.clip_by_value(cx + cut * wf / 2, 0, wf)[:, None]
  ys = tf.range(hf)[None] + 0.5  # [1, H]
  xs = tf.range(wf)[None] + 0.5
  in_y = tf.cast((ys >= y0) & (ys < y1), tf.float32)  # [B, H]
  in_x = tf.cast((xs >= x0) & (xs < x1), tf.float32)  # [B, W]
  box = in_y[:, :, None] * in_x[:, None, :]  # [B, H, W]
  keep = 1.0 - box[..., None]  # [B, H, W, 1]
  lam = 1.0 - tf.reduce_mean(box, axis=[1, 2])  # actual area kept
  return _mix(images, labels, keep, lam)


def _mix(images, labels, weight, lam):
  images = weight * images + (1.0 - weight) * images[::-1]
  labels = lam[:, None] * labels + (1.0 - lam[:, None]) * labels[::-1]
  return images, labels, lam


def mix_batch(batch: dict, config, rng: rng_lib.SeedStream) -> dict:
  """MixUp or CutMix (chosen per batch) on a batch; labels become soft.

  `label` changes from int32 [B] to float32 [B, num_classes] soft targets
  (to be used with softmax cross-entropy on probabilities).
  """
  labels = tf.one_hot(batch['label'], config.num_classes)  # [B, K]
  images = batch['image']
  use_mixup = config.mixup_alpha > 0
  use_cutmix = config.cutmix_alpha > 0
  if use_mixup and use_cutmix:
    images, labels, _ = tf.cond(
      rng.coin(config.mix_switch_prob),
      lambda: cutmix(images, labels, config.cutmix_alpha, rng),
      lambda: mixup(images, labels, config.mixup_alpha, rng),
    )
  elif use_cutmix:
    images, labels, _ = cutmix(images, labels, config.cutmix_alpha, rng)
  elif use_mixup:
    images, labels, _ = mixup(images, labels, config.mixup_alpha, rng)
  return dict(batch, image=images, label=labels)


def batch_fn(config, is_training: bool):
  if is_training and (config.mixup_alpha > 0 or config.cutmix_alpha > 0):
    return lambda batch, rng: mix_batch(batch, config, rng)
  return None
