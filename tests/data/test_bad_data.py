"""Missing and corrupt files: clear messages with paths, or skip-and-count."""

import io
import pathlib
import shutil
import tarfile

import numpy as np
import pytest

import perceiver.data as pdata
from perceiver.data import audioset
from perceiver.data import errors


# ------------------------------------------------------------ missing files


@pytest.mark.parametrize(
  'name,expected',
  [
    ('imagenet2012', ['ILSVRC2012_img_train.tar', 'image-net.org']),
    ('audioset', ['balanced_train_segments.csv', 'class_labels_indices.csv', 'audio', 'make_sample_data.py']),
    ('modelnet40', ['ModelNet40', 'make_sample_data.py']),
  ],
)
def test_missing_manual_files_name_what_and_where(tmp_path, name, expected):
  manual = tmp_path / 'empty'
  manual.mkdir()
  config = dict(name=name, manual_dir=str(manual), data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(pdata.MissingDataError) as info:
    pdata.get_dataset(config, split='train', batch_size=2, shuffle_seed=0)
  message = str(info.value)
  for text in expected:
    assert text in message
  assert str(manual) in message


def test_missing_hdf5_files(tmp_path):
  config = dict(name='modelnet40', source='hdf5', manual_dir=str(tmp_path), data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(pdata.MissingDataError, match=r'ply_data_train\*.h5'):
    pdata.get_builder(config)


def test_prepare_false_without_records(tmp_path, sample_dir):
  config = dict(name='modelnet40', manual_dir=f'{sample_dir}/modelnet', data_dir=str(tmp_path / 'tfds'), prepare=False)
  with pytest.raises(pdata.MissingDataError, match='prepare is False'):
    pdata.get_builder(config)


# ------------------------------------------------------------ corrupt files


def _tar_bytes(members: dict[str, bytes]) -> bytes:
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode='w') as tar:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return buf.getvalue()


@pytest.fixture
def imagenet_with_bad_jpeg(tmp_path, sample_dir):
  """A train tar with 3 real JPEGs and one garbage .JPEG."""
  with tarfile.open(f'{sample_dir}/imagenet/ILSVRC2012_img_train.tar') as t:
    inner_name = t.getnames()[0]
    inner = tarfile.open(fileobj=t.extractfile(inner_name))
    jpegs = {n: inner.extractfile(n).read() for n in inner.getnames()[:3]}
  synset = inner_name[:-4]
  jpegs[f'{synset}_bad.JPEG'] = b'\xff\xd8 this is not a jpeg'
  manual = tmp_path / 'manual'
  manual.mkdir()
  (manual / 'ILSVRC2012_img_train.tar').write_bytes(_tar_bytes({inner_name: _tar_bytes(jpegs)}))
  return str(manual), f'{synset}_bad.JPEG'


def test_corrupt_jpeg_raises_with_its_path(tmp_path, imagenet_with_bad_jpeg):
  manual, bad = imagenet_with_bad_jpeg
  config = dict(name='imagenet2012', manual_dir=manual, data_dir=str(tmp_path / 'tfds'), train_split='train')
  with pytest.raises(pdata.CorruptDataError) as info:
    pdata.get_builder(config)
  assert 'ILSVRC2012_img_train.tar' in str(info.value)
  assert bad in str(info.value)
  assert "on_corrupt='skip'" in str(info.value)


def test_corrupt_jpeg_is_skipped_and_counted(tmp_path, imagenet_with_bad_jpeg):
  manual, bad = imagenet_with_bad_jpeg
  config = dict(
    name='imagenet2012', manual_dir=manual, on_corrupt='skip', data_dir=str(tmp_path / 'tfds'), train_split='train'
  )
  builder = pdata.get_builder(config)
  assert builder.info.splits['train'].num_examples == 3
  assert len(builder.skipped_files) == 1 and bad in builder.skipped_files[0]
  batch = next(
    pdata.get_dataset(
      dict(config, image_size=32, mixup_alpha=0.0, cutmix_alpha=0.0, randaugment_num_layers=0),
      split='train',
      batch_size=3,
      shuffle_seed=0,
    ).as_numpy_iterator()
  )
  assert batch['image'].shape == (3, 32, 32, 3)


def test_truncated_tar_is_reported(tmp_path, sample_dir):
  manual = tmp_path / 'manual'
  manual.mkdir()
  src = f'{sample_dir}/imagenet/ILSVRC2012_img_train.tar'
  with open(src, 'rb') as f:
    (manual / 'ILSVRC2012_img_train.tar').write_bytes(f.read()[:20_000])
  config = dict(name='imagenet2012', manual_dir=str(manual), data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(pdata.CorruptDataError, match='ILSVRC2012_img_train.tar'):
    pdata.get_builder(config)


def _eval_only_copy(tmp_path, sample_dir):
  """The sample AudioSet's eval split, copied; (dir, first row, its audio)."""
  manual = tmp_path / 'audioset'
  shutil.copytree(f'{sample_dir}/audioset', manual, ignore=shutil.ignore_patterns('video', '*train*'))
  row = audioset.read_segments(str(manual / 'eval_segments.csv'))[0]
  files = audioset._index_files(str(manual / 'audio'), ('.wav', '.flac'))  # pylint: disable=protected-access
  path = pathlib.Path(audioset._find(files, *row[:3]))  # pylint: disable=protected-access
  return manual, row, path


@pytest.fixture
def audioset_with_bad_file(tmp_path, sample_dir):
  manual, _, bad = _eval_only_copy(tmp_path, sample_dir)
  bad.write_bytes(b'RIFF garbage that no decoder accepts')
  return str(manual), str(bad)


def test_corrupt_audio_raises_or_is_skipped(tmp_path, audioset_with_bad_file):
  manual, bad = audioset_with_bad_file
  config = dict(name='audioset', manual_dir=manual, data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(pdata.CorruptDataError) as info:
    pdata.get_builder(config)
  assert bad in str(info.value)
  builder = pdata.get_builder(dict(config, on_corrupt='skip', data_dir=str(tmp_path / 'tfds2')))
  assert builder.skipped_files == [bad]
  assert builder.info.splits['eval'].num_examples == 14
  assert builder.info.metadata['skipped_files'] == [bad]


def test_corrupt_off_and_hdf5(tmp_path, sample_dir):
  tree = tmp_path / 'modelnet'
  shutil.copytree(f'{sample_dir}/modelnet', tree)
  bad_off = tree / 'ModelNet40' / 'cow' / 'test' / 'cow_0001.off'
  bad_off.write_text('OFF\n3 1 0\n0 0 0\n1 0\n')  # Truncated.
  config = dict(name='modelnet40', manual_dir=str(tree), data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(pdata.CorruptDataError, match='cow_0001.off'):
    pdata.get_builder(config)
  builder = pdata.get_builder(dict(config, on_corrupt='skip'))
  assert builder.skipped_files == [str(bad_off)]
  assert builder.info.splits['test'].num_examples == 9

  bad_h5 = tree / 'modelnet40_ply_hdf5_2048' / 'ply_data_test0.h5'
  bad_h5.write_bytes(b'\x89HDF\r\n garbage')
  config = dict(config, source='hdf5', data_dir=str(tmp_path / 'tfds_h5'))
  with pytest.raises(pdata.CorruptDataError, match='ply_data_test0.h5'):
    pdata.get_builder(config)


def test_corrupt_counter_rejects_unknown_mode():
  with pytest.raises(ValueError, match="'skip' or 'raise'"):
    errors.CorruptCounter('ignore')


def test_unknown_config_fields_are_rejected():
  with pytest.raises(
    ValueError,
    match=r'unknown data_config field\(s\) '
    r"\['image_sise'\]",
  ):
    pdata.resolve_config(dict(name='imagenet2012', image_sise=128))
  with pytest.raises(ValueError, match='on_corrupt'):
    pdata.resolve_config(dict(name='modelnet40', on_corrupt='ignore'))
  with pytest.raises(ValueError, match='audio_repr'):
    pdata.resolve_config(dict(name='audioset', audio_repr='wave'))
  with pytest.raises(ValueError, match='split must be one of'):
    pdata.get_dataset(dict(name='modelnet40'), split='training', batch_size=1, shuffle_seed=0)


def test_every_config_field_is_documented():
  doc = pdata.__doc__
  for name in ('imagenet2012', 'audioset', 'modelnet40'):
    for field in pdata.default_config(name):
      assert field in doc, f'{name}.{field} missing from the docstring'
  assert np.all([f in doc for f in ('on_corrupt', 'manual_dir')])


def test_sample_script_names_a_missing_source(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  repo = pathlib.Path(__file__).resolve().parents[2]
  proc = subprocess.run(
    [
      sys.executable,
      str(repo / 'scripts' / 'make_sample_data.py'),
      '--out',
      str(tmp_path),
      '--what',
      'audioset',
      '--asterisk_sounds',
      str(tmp_path / 'nowhere'),
    ],
    capture_output=True,
    text=True,
    check=False,
  )
  assert proc.returncode == 2
  assert 'asterisk-core-sounds-en-gsm' in proc.stderr
  assert 'install_sample_sources.sh' in proc.stderr


def test_audio_named_with_other_times_is_reported_at_warning(tmp_path, sample_dir, caplog):
  """A file whose <ytid>_<start_ms>_<end_ms> name rounds differently from
  its CSV row is not matched: a WARNING and a report line naming it."""
  manual, (ytid, start, end, _), found = _eval_only_copy(tmp_path, sample_dir)
  renamed = found.with_name(f'{ytid}_{round(start * 1000)}_{round(end * 1000) - 1}{found.suffix}')
  found.rename(renamed)
  with caplog.at_level('WARNING'):
    builder = pdata.get_builder(dict(name='audioset', manual_dir=str(manual), data_dir=str(tmp_path / 'tfds')))
  assert builder.info.metadata['missing_audio'] == [ytid]
  warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
  assert any('without audio' in m for m in warnings)
  assert any('build_report.tsv' in m and '1 missing' in m for m in warnings)
  report = (pathlib.Path(builder.data_dir) / errors.REPORT_NAME).read_text()
  (line,) = [l for l in report.splitlines() if l.startswith('missing')]
  assert str(renamed) in line and f'{ytid}_{round(start * 1000)}_' in line
