"""AudioSet builder and pipeline on real Asterisk voice prompts."""

import importlib.util
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

import perceiver.data as pdata
from perceiver.data import audioset
from perceiver.data._tf import tf


# Without PyAV the sample copy has no video, which video presets now refuse
# (test_video_presets_without_any_decodable_video_fail_at_start).
_NEEDS_PYAV = pytest.mark.skipif(
  importlib.util.find_spec('av') is None, reason='needs av (PyAV: pip install av) to write sample videos'
)


def _first(config, split, batch_size=2):
  return next(pdata.get_dataset(config, split=split, batch_size=batch_size, shuffle_seed=0).as_numpy_iterator())


def test_segment_csv_parsing(audioset_config):
  rows = audioset.read_segments(os.path.join(audioset_config['manual_dir'], 'eval_segments.csv'))
  assert len(rows) == 15  # 3 per language
  ytid, start, end, mids = rows[0]
  assert len(ytid) == 11 and end - start == 10.0
  assert mids[0] == '/m/09x0r' and len(mids) == 3  # Quoted list of 3.
  classes = audioset.read_class_labels(os.path.join(audioset_config['manual_dir'], 'class_labels_indices.csv'))
  assert classes[1] == ('/m/05zppz', 'Male speech, man speaking')


def test_builder_splits_and_labels(audioset_config):
  builder = pdata.get_builder(audioset_config)
  splits = {k: v.num_examples for k, v in builder.info.splits.items()}
  assert splits == {'balanced_train': 40, 'unbalanced_train': 5, 'eval': 15}
  assert len(builder.info.metadata['class_mids']) == 8
  assert builder.info.metadata['missing_audio'] == []
  ex = next(builder.as_dataset(split='eval').as_numpy_iterator())
  assert ex['audio'].dtype == np.int16
  assert ex['audio'].shape == (480_000,)  # 10 s resampled to 48 kHz.


@pytest.mark.parametrize('name,rate', [('Y{}.wav', 16000), ('{}.flac', 44100)])
def test_resampling_to_48khz_keeps_the_signal(tmp_path, name, rate):
  import soundfile as sf  # pylint: disable=g-import-not-at-top

  t = np.arange(rate) / rate
  path = str(tmp_path / name.format('abc'))
  sf.write(path, 0.5 * np.sin(2 * np.pi * 440 * t), rate)
  x = audioset.read_audio(path, 48_000).astype(np.float32) / 32768
  spectrum = np.abs(np.fft.rfft(x))
  assert np.argmax(spectrum) == 440  # 1 Hz bins over 1 s.
  assert np.max(np.abs(x)) == pytest.approx(0.5, abs=0.01)


def test_raw_audio_training_batch(audioset_config):
  batch = _first(audioset_config, 'train', batch_size=4)
  assert batch['audio'].shape == (4, 480, 128)
  assert batch['label'].shape == (4, 8) and batch['label'].dtype == np.float32
  # Speech + the speaker's sex + the language.
  np.testing.assert_array_equal(batch['label'].sum(-1), 3)


def test_mel_batch_has_4800_inputs_and_specaugment(audioset_config):
  config = dict(audioset_config, audio_repr='mel')
  batch = _first(config, 'train')
  assert batch['audio'].shape == (2, 96, 50)  # 4,800 inputs.
  mel = batch['audio']
  # Masked bins hold the clip mean: whole masked rows/columns repeat it.
  frozen_cols = (np.ptp(mel, axis=1) == 0).sum()
  frozen_rows = (np.ptp(mel, axis=2) == 0).sum()
  assert frozen_cols + frozen_rows > 0
  off = _first(dict(config, specaugment=False), 'train')
  off_mel = off['audio']
  assert (np.ptp(off_mel, axis=1) == 0).sum() == 0


@_NEEDS_PYAV
def test_audio_video_batch_has_12544_patches(audioset_config):
  config = dict(audioset_config, modality='audio_video', video_patched=True)
  batch = _first(config, 'train')
  assert batch['audio'].shape == (2, 480, 128)
  assert batch['video'].shape == (2, 12544, 2 * 8 * 8 * 3)
  video = _first(dict(audioset_config, modality='video'), 'train')['video']
  assert video.shape == (2, 32, 224, 224, 3)
  assert np.abs(video).sum() > 0


@_NEEDS_PYAV
def test_eval_has_16_clips_covering_the_segment(audioset_config):
  batch = _first(dict(audioset_config, modality='audio_video', video_size=16), 'test')
  assert batch['audio'].shape == (2, 16, 480, 128)
  assert batch['video'].shape == (2, 16, 32, 16, 16, 3)
  config = pdata.resolve_config(audioset_config)
  starts = audioset.clip_starts(tf.constant(480_000), config).numpy()
  assert starts[0] == 0 and starts[-1] == 480_000 - 61_440
  assert np.all(np.diff(starts) < 61_440)  # Overlapping.


@_NEEDS_PYAV
def test_video_dropout_zeroes_whole_streams(audioset_config):
  config = dict(audioset_config, modality='audio_video', video_dropout=1.0, video_size=16)
  batch = _first(config, 'train', batch_size=4)
  assert np.all(batch['video'] == 0)


def test_patch_video_layout():
  video = tf.reshape(tf.range(4 * 16 * 16 * 3, dtype=tf.float32), [4, 16, 16, 3])
  patches = audioset.patch_video(video, (2, 8, 8)).numpy()
  assert patches.shape == (2 * 2 * 2, 2 * 8 * 8 * 3)
  # Patch 3 = (t 0, y 1, x 1): frames 0-1, rows 8-15, cols 8-15.
  expected = video.numpy()[0:2, 8:16, 8:16].reshape(-1)
  np.testing.assert_array_equal(patches[3], expected)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_mean_average_precision_matches_sklearn(seed):
  rng = np.random.default_rng(seed)
  n, k = 200, 7  # N != K: a transposed matrix would not even fit.
  labels = (rng.random((n, k)) < 0.2).astype(np.float32)
  labels[0] = 1  # Every class has a positive.
  scores = np.round(rng.random((n, k)) + 0.5 * labels, 1)  # With ties.
  expected = np.mean([average_precision_score(labels[:, c], scores[:, c]) for c in range(k)])
  assert audioset.mean_average_precision(scores, labels) == pytest.approx(expected, abs=1e-12)
  per_class = audioset.average_precision(scores, labels)
  assert per_class.shape == (k,)


def test_mean_average_precision_skips_classes_without_positives():
  labels = np.array([[1, 0], [0, 0], [1, 0]])
  scores = np.array([[0.9, 0.1], [0.1, 0.2], [0.8, 0.3]])
  assert audioset.mean_average_precision(scores, labels) == 1.0
  with pytest.raises(ValueError, match=r'\[N, K\]'):
    audioset.mean_average_precision(scores.T, labels)


def test_average_clip_scores():
  scores = np.arange(12, dtype=float).reshape(6, 2)  # 2 segments x 3 clips
  np.testing.assert_allclose(audioset.average_clip_scores(scores, 3), [[2, 3], [8, 9]])


def test_mel_training_batches_are_a_function_of_the_seed(audioset_config):
  config = dict(audioset_config, audio_repr='mel')
  a, b = (_first(config, 'train') for _ in range(2))
  np.testing.assert_array_equal(a['audio'], b['audio'])


def test_video_presets_without_any_decodable_video_fail_at_start(tmp_path):
  """A copy whose videos cannot be decoded (here: none written, as without
  PyAV) fails at once naming the fix, instead of spinning at the first batch
  (the training set is repeated, then filtered)."""
  from perceiver.data.pipeline import NoUsableExamplesError  # pylint: disable=g-import-not-at-top

  out = str(tmp_path / 'sample')
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  proc = subprocess.run(
    [
      sys.executable,
      os.path.join(repo, 'scripts', 'make_sample_data.py'),
      '--out',
      out,
      '--what',
      'audioset',
      '--audioset_per_language',
      '6',
      '--no_video',
    ],
    capture_output=True,
    text=True,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  config = dict(name='audioset', manual_dir=f'{out}/audioset', data_dir=str(tmp_path / 'tfds'))
  _first(config, 'train')  # audio only: fine
  for modality, split in (('audio_video', 'train'), ('video', 'train'), ('audio_video', 'test')):
    start = time.monotonic()
    with pytest.raises(NoUsableExamplesError) as error:
      pdata.get_dataset(dict(config, modality=modality), split=split, batch_size=2, shuffle_seed=0)
    print(f'\n{modality} {split}: refused after {time.monotonic() - start:.1f} s')
    message = str(error.value)
    assert message.startswith(f'audioset {split}: none of the first ') and (
      'no decodable video: install PyAV (pip install av)' in message
    ), message
