"""The Kinetics reader: CSV parsing, clip naming, builder, pipeline, errors."""

import os
import shutil

import numpy as np
import pytest

import perceiver.data as pdata
from perceiver.data import errors
from perceiver.data import kinetics

HEADER = 'label,youtube_id,time_start,time_end,split\n'


def _write(path, text):
  with open(path, 'w') as f:
    f.write(text)
  return str(path)


def test_annotations_parse(tmp_path):
  path = _write(tmp_path / 'train.csv', HEADER + '"abseiling",abc_-1234,14,24,train\n\nair drumming,x,0,10,train\n')
  assert kinetics.read_annotations(path) == [('abseiling', 'abc_-1234', 14, 24), ('air drumming', 'x', 0, 10)]
  # test.csv of Kinetics-700 has no label column.
  path = _write(tmp_path / 'test.csv', 'youtube_id,time_start,time_end,split\nq,3,13,test\n')
  assert kinetics.read_annotations(path) == [('', 'q', 3, 13)]
  assert kinetics.clip_stem('abc', 14, 24) == 'abc_000014_000024'


@pytest.mark.parametrize(
  'text, fragment',
  [
    ('label,start\nx,1\n', 'line 1: expected the header'),
    (HEADER + 'a,b,10,5,train\n', 'line 2'),
    (HEADER + 'a,b,0,1000,train\n', 'line 2'),
    (HEADER + 'a,b,zero,10,train\n', 'line 2'),
    (HEADER + 'a,b,0,10\n', 'line 2: expected 5 fields'),
    (HEADER + 'a,b\0,0,10,train\n', 'NUL byte'),
    ('', 'empty'),
  ],
)
def test_bad_annotations_name_file_and_line(tmp_path, text, fragment):
  path = _write(tmp_path / 'train.csv', text)
  with pytest.raises(errors.CorruptDataError, match=fragment) as e:
    kinetics.read_annotations(path)
  assert str(path) in str(e.value)


def test_not_utf8(tmp_path):
  path = tmp_path / 'train.csv'
  path.write_bytes(HEADER.encode() + b'\xff\xfe,b,0,10,train\n')
  with pytest.raises(errors.CorruptDataError, match='not UTF-8'):
    kinetics.read_annotations(str(path))


def test_missing_manual_files_name_them(tmp_path):
  config = dict(name='kinetics', manual_dir=str(tmp_path), data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(errors.MissingDataError, match='train.csv') as e:
    pdata.get_dataset(config, split='train', batch_size=2, shuffle_seed=0)
  assert 'make_sample_data.py --what kinetics' in str(e.value)


def test_pipeline_on_real_sample_clips(kinetics_config):
  ds = pdata.get_dataset(kinetics_config, split='train', batch_size=4, shuffle_seed=0)
  batch = next(iter(ds.as_numpy_iterator()))
  assert batch['video'].shape == (4, 8, 32, 32, 3) and batch['video'].dtype == np.float32
  assert 0.0 <= batch['video'].min() and batch['video'].max() <= 1.0
  assert batch['video'].std() > 0.05  # A real photo, not a blank frame.
  assert batch['audio'].shape == (4, 8 * 1920, 1)
  assert np.abs(batch['audio']).max() > 0.05  # Speech, not silence.
  assert batch['label'].shape == (4,) and set(batch['label']) <= {0, 1, 2, 3}
  # Evaluation: the centred window, each clip once, in order.
  valid = list(pdata.get_dataset(kinetics_config, split='valid', batch_size=3, shuffle_seed=None).as_numpy_iterator())
  labels = np.concatenate([b['label'] for b in valid])
  assert sorted(labels) == [0, 1, 2, 3]
  again = next(pdata.get_dataset(kinetics_config, split='valid', batch_size=3, shuffle_seed=None).as_numpy_iterator())
  np.testing.assert_array_equal(again['video'], valid[0]['video'])
  builder = pdata.get_builder(kinetics_config)
  assert builder.info.metadata['class_names'][0] == 'pan over china (en speech)'
  assert builder.info.splits['train'].num_examples == 12


def test_audio_track_matches_written_speech(tmp_path):
  pytest.importorskip('av')
  from perceiver_tools import kinetics_samples  # pylint: disable=g-import-not-at-top

  t = np.arange(2 * 48000) / 48000
  audio = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
  video = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, None, :, None], (50, 32, 1, 3))
  path = str(tmp_path / 'c_000000_000002.mp4')
  kinetics_samples.write_clip(path, video, audio)
  got = kinetics.read_audio_track(path, 2 * 48000) / 32768.0
  # AAC's encoder delay shifts the track by < 3,000 samples; compare the
  # 440 Hz tone's level and frequency, not the sample alignment.
  assert abs(np.sqrt(np.mean(got[4000:-4000] ** 2)) - 0.3 / np.sqrt(2)) < 0.02
  spectrum = np.abs(np.fft.rfft(got[4000:-4000]))
  peak_hz = np.argmax(spectrum) * 48000 / len(got[4000:-4000])
  assert abs(peak_hz - 440) < 5


def test_corrupt_and_missing_clips(kinetics_dir, tmp_path):
  manual = tmp_path / 'manual'
  shutil.copytree(kinetics_dir, manual)
  clips = sorted(kinetics.index_clips(str(manual)).values())
  with open(clips[0], 'wb') as f:
    f.write(b'not a video at all')
  os.remove(clips[1])
  config = dict(name='kinetics', manual_dir=str(manual), data_dir=str(tmp_path / 'tfds'), num_frames=8, video_size=32)
  with pytest.raises(errors.CorruptDataError) as e:
    pdata.get_builder(config)
  assert clips[0] in str(e.value)
  config.update(on_corrupt='skip', data_dir=str(tmp_path / 'tfds2'))
  builder = pdata.get_builder(config)
  assert builder.info.metadata['skipped_files'] == [clips[0]]
  assert len(builder.info.metadata['missing_clips']) == 1
  total = sum(s.num_examples for s in builder.info.splits.values())
  assert total == 16 - 2
