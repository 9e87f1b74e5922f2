"""Kinetics-style clips (video + audio track + class label) for autoencoding.

manual_dir layout (see ../shared/reference/DATASETS.md):
  train.csv, validate.csv, test.csv   the public annotation lists, header
      `label,youtube_id,time_start,time_end,split` (test.csv may lack
      `label`: its rows are then skipped, there is nothing to score).
  clips anywhere below manual_dir, one file per row, named
      `<youtube_id>_<start:06d>_<end:06d>.<ext>` as in the public downloads
      (commonly `<split>/<label>/...mp4`); ext any container PyAV decodes.
Video is resampled to 25 fps with the shorter side shrunk to
`stored_video_size` (audioset.read_video); the clip's audio track is mixed to
mono and resampled to 48 kHz (PyAV's resampler). Rows without a clip file are
skipped and counted (`missing_clips`), clips without an audio track keep
silence and are counted (`no_audio`), unreadable files follow `on_corrupt`.
Classes are the sorted distinct labels of the CSVs present.

Preprocessing (Perceiver IO multimodal autoencoding, PAPERS.md): a window
of `num_frames` frames at 25 fps (random start in training, the centred
window in evaluation) and the aligned audio, `audio_samples_per_frame`
(1,920) samples per frame: video f32 [T, S, S, 3] in [0, 1] (centre square,
resized to `video_size`), audio f32 [T * 1920, 1] in [-1, 1], label i32.
"""

import csv
import io
import os

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from perceiver.data import audioset
from perceiver.data import clip_builder
from perceiver.data import errors
from perceiver.data import rng as rng_lib
from perceiver.data._tf import tf

SAMPLE_RATE = audioset.SAMPLE_RATE  # 48 kHz
FPS = audioset.FPS  # 25
SPLIT_CSVS = {'train': 'train.csv', 'validate': 'validate.csv', 'test': 'test.csv'}
HEADER = ('label', 'youtube_id', 'time_start', 'time_end', 'split')
HOW_TO_GET = (
  'put the Kinetics annotation CSVs (train.csv, validate.csv, test.csv with '
  'the header label,youtube_id,time_start,time_end,split) in manual_dir and '
  'the downloaded clips (<youtube_id>_<start 6 digits>_<end 6 digits>.mp4, '
  'any sub-folders) below it; for small real data in this layout run '
  'scripts/make_sample_data.py --what kinetics'
)
# Kinetics clips last 10 s; a longer row is a typo that would otherwise
# allocate end - start seconds of frames and audio.
MAX_CLIP_S = 60.0
# Bounds on what a hostile manual_dir can make the indexer walk.
MAX_INDEXED_FILES = 2_000_000
MAX_CSV_BYTES = 512 * 2**20


# ------------------------------------------------------------ CSV parsing


def read_annotations(path: str) -> list[tuple[str, str, int, int]]:
  """Rows (label or '', youtube_id, start_s, end_s) of a Kinetics CSV.

  Needs the columns youtube_id, time_start, time_end (label and split
  optional); integer seconds with 0 <= start < end <= start + MAX_CLIP_S.
  Anything else raises CorruptDataError naming the file and the line.
  """
  with tf.io.gfile.GFile(path, 'rb') as f:
    raw = f.read(MAX_CSV_BYTES + 1)
  if len(raw) > MAX_CSV_BYTES:
    raise errors.CorruptDataError(path, f'larger than {MAX_CSV_BYTES} bytes')
  try:
    text = raw.decode('utf-8-sig')
  except UnicodeDecodeError as e:
    raise errors.CorruptDataError(path, f'not UTF-8 text ({e})') from None
  if '\0' in text:
    raise errors.CorruptDataError(path, 'NUL byte')
  try:
    lines = list(csv.reader(io.StringIO(text, newline='')))
  except csv.Error as e:
    raise errors.CorruptDataError(path, f'not CSV ({e})') from None
  lines = [(n, r) for n, r in enumerate(lines, 1) if any(f.strip() for f in r)]
  if not lines:
    raise errors.CorruptDataError(path, 'empty')
  header = [h.strip() for h in lines[0][1]]
  needed = ('youtube_id', 'time_start', 'time_end')
  if any(h not in header for h in needed) or len(set(header)) != len(header):
    raise errors.CorruptDataError(path, f'line 1: expected the header {",".join(HEADER)}')
  col = {h: i for i, h in enumerate(header)}
  rows = []
  for number, row in lines[1:]:
    if len(row) != len(header):
      raise errors.CorruptDataError(path, f'line {number}: expected {len(header)} fields, got {len(row)}')
    ytid = row[col['youtube_id']].strip()
    try:
      start, end = int(row[col['time_start']]), int(row[col['time_end']])
    except ValueError:
      start = end = -1
    if not (ytid and 0 <= start < end <= start + MAX_CLIP_S):
      raise errors.CorruptDataError(
        path,
        f'line {number}: expected a youtube_id and integer seconds '
        f'0 <= time_start < time_end <= time_start + {MAX_CLIP_S:g}',
      )
    label = row[col['label']].strip() if 'label' in col else ''
    rows.append((label, ytid, start, end))
  return rows


def clip_stem(ytid: str, start: int, end: int) -> str:
  """The public downloads' file stem: `<ytid>_<start:06d>_<end:06d>`."""
  return f'{ytid}_{start:06d}_{end:06d}'


def index_clips(root: str) -> dict[str, str]:
  """Stem -> path of every video file below `root` (first one wins)."""
  found, seen = {}, 0
  for directory, _, names in tf.io.gfile.walk(root):
    for name in names:
      seen += 1
      if seen > MAX_INDEXED_FILES:
        raise errors.CorruptDataError(root, f'more than {MAX_INDEXED_FILES} files below it')
      stem, ext = os.path.splitext(name)
      if ext.lower() in clip_builder.VIDEO_EXTS:
        found.setdefault(stem, os.path.join(directory, name))
  return found


def read_audio_track(path: str, num_samples: int) -> np.ndarray | None:
  """The clip's first audio track as mono int16 [num_samples] at 48 kHz.

  None when the file has no audio track. PyAV's resampler does the mixing
  and rate conversion (any codec/layout/rate FFmpeg decodes).
  """
  import av  # pylint: disable=g-import-not-at-top

  chunks, total = [], 0
  with av.open(path) as container:
    if not container.streams.audio:
      return None
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format='flt', layout='mono', rate=SAMPLE_RATE)
    for frame in container.decode(stream):
      for out in resampler.resample(frame):
        chunks.append(out.to_ndarray().reshape(-1))
        total += chunks[-1].size
      if total >= num_samples:  # Bounded: never more than the row's length.
        break
    else:
      for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
  x = np.concatenate(chunks) if chunks else np.zeros([0], np.float32)
  return audioset.to_int16_48k(x, SAMPLE_RATE, num_samples)


# --------------------------------------------------------------- builder


class Kinetics(clip_builder.ClipBuilder, skip_registration=True):
  """Kinetics-style clips: 25 fps JPEG frames, 48 kHz audio, class label."""

  name = 'kinetics'
  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = HOW_TO_GET
  HOMEPAGE = 'https://github.com/cvdfoundation/kinetics-dataset'
  TALLIES = ('missing_clips', 'no_audio')  # Metadata: class_names, skipped_files, missing_clips, no_audio.

  def _row_features(self) -> dict:
    return {'label': tfds.features.Tensor(shape=(), dtype=np.int64), 'clip': tfds.features.Text()}

  def _split_generators(self, dl_manager):
    manual = os.fspath(dl_manager.manual_dir)
    tables = {
      split: (os.path.join(manual, name), read_annotations(os.path.join(manual, name)))
      for split, name in SPLIT_CSVS.items()
      if tf.io.gfile.exists(os.path.join(manual, name))
    }
    if not tables:
      raise errors.MissingDataError('kinetics', [os.path.join(manual, n) for n in SPLIT_CSVS.values()], HOW_TO_GET)
    classes = sorted({r[0] for _, rows in tables.values() for r in rows if r[0]})
    self._publish_metadata(class_names=classes)
    clips = index_clips(manual)
    if not clips:
      raise errors.MissingDataError(
        'kinetics', [os.path.join(manual, '**', '<youtube_id>_<start>_<end>.mp4')], HOW_TO_GET
      )
    index = {name: i for i, name in enumerate(classes)}
    return {split: self._generate_examples(rows, index, clips) for split, (_, rows) in tables.items()}

  def _generate_examples(self, rows, class_index, clips):
    for label, ytid, start, end in rows:
      if not label:
        continue  # Unlabelled (test) rows: nothing to score.
      stem = clip_stem(ytid, start, end)
      path = clips.get(stem)
      if path is None:
        self._tallies['missing_clips'].append(stem)
        continue
      seconds = end - start
      try:
        frames = audioset.read_video(path, int(round(seconds * FPS)), self._video_size)
        wav = read_audio_track(path, int(round(seconds * SAMPLE_RATE)))
      except Exception as e:  # pylint: disable=broad-except
        self._corrupt.report(path, e)
        continue
      if wav is None:
        self._tallies['no_audio'].append(stem)
        wav = np.zeros([int(round(seconds * SAMPLE_RATE))], np.int16)
      yield stem, {'audio': wav, 'video': frames, 'clip': stem, 'label': class_index[label]}
    if self._tallies['missing_clips']:
      logging.info('kinetics: %d rows without a clip file so far', len(self._tallies['missing_clips']))


def expected_manual_files(config) -> dict[str, list[str]]:
  manual = config.manual_dir or ''
  return {split: [os.path.join(manual, name)] for split, name in SPLIT_CSVS.items()}


def make_builder(config) -> tfds.core.DatasetBuilder:
  return Kinetics(data_dir=config.data_dir, stored_video_size=config.stored_video_size, on_corrupt=config.on_corrupt)


# Frames stay JPEG strings until the window is chosen; no batch transform.
decoders = audioset.decoders
batch_fn = audioset.batch_fn


# ------------------------------------------------------------ transforms


def window(num_frames_stored: tf.Tensor, config, rng: rng_lib.SeedStream | None) -> tf.Tensor:
  """First frame of the window: random in training, centred otherwise."""
  last = tf.maximum(num_frames_stored - config.num_frames, 0)
  if rng is None:
    return last // 2
  return rng.randint(0, last + 1, shape=[1])[0]


def preprocess(example: dict, config, is_training: bool, rng: rng_lib.SeedStream | None) -> dict:
  t, size = config.num_frames, config.video_size
  n = t * config.audio_samples_per_frame
  encoded = example['video']  # [F] JPEG strings
  start = window(tf.shape(encoded)[0], config, rng if is_training else None)
  idx = tf.minimum(start + tf.range(t), tf.shape(encoded)[0] - 1)
  frames = tf.map_fn(
    lambda s: tf.io.decode_jpeg(s, channels=3),
    tf.gather(encoded, idx),
    fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
  )
  shape = tf.shape(frames)
  side = tf.minimum(shape[1], shape[2])
  top, left = (shape[1] - side) // 2, (shape[2] - side) // 2
  frames = frames[:, top : top + side, left : left + side]
  video = tf.image.resize(
    tf.cast(frames, tf.float32) / 255.0, [size, size], method='area'
  )  # area: no aliasing when shrinking.
  video = tf.ensure_shape(tf.clip_by_value(video, 0.0, 1.0), [t, size, size, 3])
  audio = tf.cast(example['audio'], tf.float32) / 32768.0
  a0 = start * SAMPLE_RATE // FPS
  audio = audio[a0 : a0 + n]
  audio = tf.pad(audio, [[0, n - tf.shape(audio)[0]]])
  return {'video': video, 'audio': tf.reshape(audio, [n, 1]), 'label': tf.cast(example['label'], tf.int32)}
