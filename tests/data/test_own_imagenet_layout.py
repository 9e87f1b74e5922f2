"""A user's own data in the ImageNet layout: own classes, own labels, bad files.

The set is written here with PIL: 3 classes with the user's own names, a
validation tar labelled by the user's own file, and the quirks of real
copies: a PNG and a CMYK file named .JPEG (neither on TFDS's fix list), a
file no decoder reads, and an image whose class is not in the class list.
"""

import io
import os
import tarfile

import numpy as np
import pytest

import perceiver.data as pdata
from perceiver.data import errors
from perceiver.data import imagenet
from perceiver.data import pipeline
from perceiver.data._tf import tf

CLASSES = ['circle', 'square', 'stripes']


def _image(kind: int, rng) -> np.ndarray:
  """A 24x24 RGB image of class `kind` with random colour and offset."""
  img = np.zeros((24, 24, 3), np.uint8)
  colour = rng.integers(100, 256, 3)
  yy, xx = np.mgrid[:24, :24]
  cy, cx = rng.integers(9, 15, 2)
  if kind == 0:
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 < 36
  elif kind == 1:
    mask = (abs(yy - cy) < 6) & (abs(xx - cx) < 6)
  else:
    mask = (xx // 3) % 2 == 0
  img[mask] = colour
  return img


def _encode(img: np.ndarray, fmt: str = 'JPEG', mode: str = 'RGB') -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  buf = io.BytesIO()
  Image.fromarray(img).convert(mode).save(buf, format=fmt)
  return buf.getvalue()


def _add(tar, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def write_set(root: str, per_class: int = 12, num_val: int = 9) -> dict:
  """The user's ImageNet-layout set; returns the quirky files' names."""
  rng = np.random.default_rng(0)
  os.makedirs(root, exist_ok=True)
  quirks = dict(png='circle_png.JPEG', cmyk='square_cmyk.JPEG', garbage='stripes_garbage.JPEG')
  with tarfile.open(os.path.join(root, imagenet.TRAIN_TAR), 'w') as outer:
    for k, cls in enumerate(CLASSES + ['unlisted']):
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode='w') as tar:
        for i in range(per_class if cls != 'unlisted' else 2):
          _add(tar, f'{cls}_{i}.JPEG', _encode(_image(k % 3, rng)))
        if k == 0:
          _add(tar, quirks['png'], _encode(_image(0, rng), 'PNG'))
        if k == 1:
          _add(tar, quirks['cmyk'], _encode(_image(1, rng), mode='CMYK'))
        if k == 2:
          _add(tar, quirks['garbage'], b'\xff\xd8 not an image')
      _add(outer, f'{cls}.tar', inner.getvalue())
  labels = [CLASSES[i % 3] for i in range(num_val)]
  with tarfile.open(os.path.join(root, imagenet.VAL_TAR), 'w') as tar:
    for i, cls in enumerate(labels):
      _add(tar, f'ILSVRC2012_val_{i + 1:08d}.JPEG', _encode(_image(CLASSES.index(cls), rng)))
  with open(os.path.join(root, 'my_classes.txt'), 'w') as f:
    f.write('\n'.join(CLASSES) + '\n')
  with open(os.path.join(root, 'my_val_labels.txt'), 'w') as f:
    f.write('\n'.join(labels) + '\n')
  return quirks


@pytest.fixture(scope='module')
def own_set(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('own_imagenet'))
  quirks = write_set(root)
  config = dict(
    name='imagenet2012',
    manual_dir=root,
    data_dir=str(tmp_path_factory.mktemp('own_records')),
    class_list='my_classes.txt',
    validation_labels='my_val_labels.txt',
    on_corrupt='skip',
    train_split='train[20%:]',
    valid_split='train[:20%]',
    image_size=16,
    pos='none',
    randaugment_num_layers=0,
    mixup_alpha=0.0,
    cutmix_alpha=0.0,
  )
  return config, quirks


def _report(builder) -> list[list[str]]:
  path = os.path.join(builder.data_dir, errors.REPORT_NAME)
  with open(path) as f:
    return [line.rstrip('\n').split('\t') for line in f][1:]


def test_build_converts_or_skips_and_reports_every_bad_file(own_set, caplog):
  config, quirks = own_set
  with caplog.at_level('WARNING'):
    builder = pdata.get_builder(config)
  report = {(kind, os.path.basename(path.split(':')[-1])) for kind, path, _ in _report(builder)}
  assert ('converted', quirks['png']) in report
  assert ('converted', quirks['cmyk']) in report
  assert ('skipped', quirks['garbage']) in report
  assert {k for k, n in report if n.startswith('unlisted_')} == {'not_in_class_list'}
  assert any('build_report.tsv' in r.getMessage() and r.levelname == 'WARNING' for r in caplog.records)
  # Every stored image decodes with training's decoder, as RGB.
  ds = builder.as_dataset(split='train', decoders={'image': pipeline.tfds.decode.SkipDecoding()})
  names = []
  for ex in ds:
    tf.image.extract_jpeg_shape(ex['image'])
    assert tf.io.decode_jpeg(ex['image'], channels=3).shape[-1] == 3
    names.append(ex['file_name'].numpy().decode())
  assert quirks['png'] in names and quirks['cmyk'] in names
  assert quirks['garbage'] not in names
  assert len(names) == 3 * 12 + 2


def test_own_class_list_and_validation_labels(own_set):
  config, _ = own_set
  builder = pdata.get_builder(config)
  assert pipeline.label_names(builder) == CLASSES
  assert pipeline.num_classes(config) == 3
  ds = builder.as_dataset(split='validation', decoders={'image': pipeline.tfds.decode.SkipDecoding()})
  for ex in ds.as_numpy_iterator():
    index = int(ex['file_name'].decode()[len('ILSVRC2012_val_') : -5])
    assert ex['label'] == (index - 1) % 3
  with pytest.raises(ValueError, match='data.num_classes=1000'):
    pipeline.num_classes(dict(config, num_classes=1000))


def test_records_of_another_class_list_are_refused(own_set, tmp_path):
  config, _ = own_set
  other = tmp_path / 'other.txt'
  other.write_text('circle\nsquare\n')
  with pytest.raises(errors.CorruptDataError, match='another class list'):
    pdata.get_builder(dict(config, class_list=str(other)))


def test_a_split_too_large_names_the_field_and_a_fix(own_set):
  config, _ = own_set
  with pytest.raises(
    ValueError,
    match=r"data.train_split='train\[10000:\]'"
    r".*--config.data.train_split='train\[10%:\]'",
  ):
    next(
      iter(pdata.get_dataset(dict(config, train_split='train[10000:]'), split='train', batch_size=2, shuffle_seed=0))
    )


def test_training_sees_only_decodable_images(own_set):
  config, _ = own_set
  ds = pdata.get_dataset(dict(config, repeat=False), split='train', batch_size=8, shuffle_seed=0)
  n = 0
  for batch in ds.as_numpy_iterator():
    assert np.isfinite(batch['image']).all()
    assert batch['label'].max() < 3
    n += len(batch['label'])
  assert n == 38 - round(38 * 0.2) - 6  # train[20%:], full batches only.


def test_trains_with_a_head_of_its_own_size(own_set, tmp_path):
  """The real runner: the head has the set's 3 classes; a 1,000-way head is
  refused before compiling, with the override that fixes it."""
  from perceiver_configs import imagenet as imagenet_configs  # pylint: disable=g-import-not-at-top
  from perceiver import train  # pylint: disable=g-import-not-at-top
  from perceiver.train import config_checks  # pylint: disable=g-import-not-at-top

  data, _ = own_set
  config = imagenet_configs.get_config('small_data')
  config.data.update(dict(data, image_size=16))
  config.model.input.max_resolution = (8, 8)
  config.model.decoder.num_classes = 1000
  common = pytest.importorskip('configs.common')
  common.smoke_runner(config, batch_size=4, num_steps=2)
  with pytest.raises(config_checks.ConfigError, match=r'--config.model.decoder.num_classes=3'):
    train.train_and_evaluate(config, str(tmp_path / 'wrong'), 'train')
  config.model.decoder.num_classes = 3
  result = train.train_and_evaluate(config, str(tmp_path / 'run'), 'train_and_eval')
  assert result['step'] == 2
  assert result['eval']['num_examples'] == 9
