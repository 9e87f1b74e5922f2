"""AudioSet from the public segment CSVs plus the user's per-segment files.

manual_dir layout (see ../shared/reference/DATASETS.md):
  balanced_train_segments.csv, unbalanced_train_segments.csv,
  eval_segments.csv   three '#' lines, then `YTID, start, end, "mid,mid"`
  class_labels_indices.csv   `index,mid,display_name` (527 rows on AudioSet)
  audio/   one file per segment, holding just that segment: `Y<ytid>.<ext>`,
           `<ytid>.<ext>` or `<ytid>_<start_ms>_<end_ms>.<ext>` with ext any
           format libsndfile reads (wav, flac, ogg, mp3), any sample rate and
           channel count: mixed to mono, resampled to 48 kHz
           (scipy.signal.resample_poly), padded/cut to end - start seconds.
  video/   optional, same naming, any container PyAV (FFmpeg) decodes:
           resampled to 25 fps, shorter side shrunk to `stored_video_size`.
Segments without an audio file are skipped and counted (most AudioSet copies
miss some videos); unreadable files follow `on_corrupt`.

The TFDS builder (`AudioSet`) stores int16 audio at 48 kHz (960 kB per 10 s
segment) and JPEG frames; labels are stored as class indices and turned into
multi-hot vectors [K] by the pipeline.

Preprocessing (Perceiver paper, Sec. 4.2):
  training: one random 1.28 s clip (61,440 samples = 32 frames at 25 fps);
    raw audio -> 480 patches of 128 samples [480, 128];
    or mel: 96 frames (25 ms window, 640-sample hop) x 50 mel bins, log,
    SpecAugment (frequency and time masks): [96, 50] mel frames, which the
    model flattens into the paper's 4,800 inputs (with 2-D positions);
    video: the 32 frames of the same 1.28 s, one Inception-style crop and
    flip for all frames, colour jitter, resized to 224 -> [32, 224, 224, 3]
    or 2x8x8 space-time patches [12544, 384] (video_patched); audio+video
    training zeroes the whole video with probability video_dropout.
  evaluation: num_eval_clips (16) evenly spaced, overlapping clips covering
    the segment, stacked on a clip axis [C, ...]; the model's scores are
    averaged over it (`average_clip_scores`) and scored with
    `mean_average_precision` (per class, then averaged).
"""

import csv
import io
import os

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from perceiver.data import clip_builder
from perceiver.data import errors
from perceiver.data import imagenet
from perceiver.data import rng as rng_lib
from perceiver.data._tf import tf

SAMPLE_RATE = 48_000
FPS = 25
SEGMENT_CSVS = {
  'balanced_train': 'balanced_train_segments.csv',
  'unbalanced_train': 'unbalanced_train_segments.csv',
  'eval': 'eval_segments.csv',
}
CLASS_CSV = 'class_labels_indices.csv'
HOW_TO_GET = (
  'download the segment lists and class_labels_indices.csv from the '
  'AudioSet website (research.google.com/audioset/download.html) and put '
  'one audio file per segment (Y<ytid>.wav / <ytid>.flac ...) under '
  'manual_dir/audio (videos, optional, under manual_dir/video); for small '
  'real data in this layout run scripts/make_sample_data.py --what audioset'
)
_AUDIO_EXTS = ('.wav', '.flac', '.ogg', '.mp3', '.aiff', '.aif')


# ------------------------------------------------------------ CSV parsing


# AudioSet segments last 10 s; a longer one is a typo that would otherwise
# allocate end - start seconds of audio.
MAX_SEGMENT_S = 60.0


def _read_csv_lines(path: str) -> list[str]:
  """The lines of a UTF-8 text file; CorruptDataError naming it otherwise."""
  with tf.io.gfile.GFile(path, 'rb') as f:
    raw = f.read()
  try:
    text = raw.decode('utf-8-sig')
  except UnicodeDecodeError as e:
    raise errors.CorruptDataError(path, f'not UTF-8 text ({e})') from None
  return list(io.StringIO(text, newline=None))  # Splits at \n, \r\n, \r.


def _csv_rows(path: str, lines: list[str], **kwargs):
  """(line number, fields) of the non-empty CSV rows, NULs rejected."""
  for number, line in enumerate(lines, 1):
    if '\0' in line:
      raise errors.CorruptDataError(path, f'line {number}: NUL byte')
    if line.strip():
      try:
        fields = next(csv.reader([line], **kwargs))
      except csv.Error as e:
        raise errors.CorruptDataError(path, f'line {number}: {e}') from None
      yield number, fields


def read_segments(path: str) -> list[tuple[str, float, float, list[str]]]:
  """Rows (ytid, start_s, end_s, [mid, ...]) of a *_segments.csv file.

  Lines starting with '#' are comments. A row that is not `YTID, start, end,
  "mid,..."` with 0 <= start < end <= start + MAX_SEGMENT_S raises
  CorruptDataError naming the file and the line.
  """
  lines = [l if not l.startswith('#') else '' for l in _read_csv_lines(path)]
  rows = []
  for number, row in _csv_rows(path, lines, skipinitialspace=True):
    if len(row) != 4:
      raise errors.CorruptDataError(
        path, f'line {number}: expected 4 fields (YTID, start, end, "mid,..."), got {len(row)}: {row!r}'
      )
    ytid = row[0].strip()
    try:
      start, end = float(row[1]), float(row[2])
    except ValueError:
      start = end = float('nan')
    if not (ytid and 0 <= start < end <= start + MAX_SEGMENT_S):
      raise errors.CorruptDataError(
        path,
        f'line {number}: expected a YTID and 0 <= start < end <= start + {MAX_SEGMENT_S:g} seconds, got {row[:3]!r}',
      )
    rows.append((ytid, start, end, [m.strip() for m in row[3].split(',') if m.strip()]))
  return rows


def read_class_labels(path: str) -> list[tuple[str, str]]:
  """[(mid, display_name)] in index order from class_labels_indices.csv.

  Needs the header `index,mid,display_name`, one row per class with the
  indices 0..K-1 (any order) and distinct non-empty mids; otherwise raises
  CorruptDataError naming the file (and the line).
  """
  rows = list(_csv_rows(path, _read_csv_lines(path)))
  if not rows or rows[0][1][:3] != ['index', 'mid', 'display_name']:
    raise errors.CorruptDataError(path, "expected the header 'index,mid,display_name'")
  by_index = {}
  for number, row in rows[1:]:
    try:
      index = int(row[0]) if len(row) == 3 else -1
    except ValueError:
      index = -1
    if index < 0 or not row[1].strip():
      raise errors.CorruptDataError(path, f'line {number}: expected index,mid,display_name, got {row!r}')
    by_index.setdefault(index, (row[1].strip(), row[2]))
  if sorted(by_index) != list(range(len(rows) - 1)):
    raise errors.CorruptDataError(path, f'indices are not 0..K-1 without repeats ({len(rows) - 1} rows)')
  classes = [by_index[i] for i in range(len(by_index))]
  if not classes or len({m for m, _ in classes}) != len(classes):
    raise errors.CorruptDataError(path, 'no classes or repeated mids')
  return classes


# ------------------------------------------------------------ file reading


def _index_files(directory: str, exts: tuple[str, ...]) -> dict[str, str]:
  """Stem -> path of the files in `directory` with one of `exts`."""
  if not tf.io.gfile.isdir(directory):
    return {}
  found = {}
  for name in tf.io.gfile.listdir(directory):
    stem, ext = os.path.splitext(name)
    if ext.lower() in exts:
      found[stem] = os.path.join(directory, name)
  return found


def _find(files: dict[str, str], ytid: str, start: float, end: float) -> str | None:
  for stem in (f'Y{ytid}', ytid, f'{ytid}_{int(round(start * 1000))}_{int(round(end * 1000))}'):
    if stem in files:
      return files[stem]
  return None


def _timed_stems(files: dict[str, str]) -> dict[str, str]:
  """YTID -> path of the files named `<ytid>_<start_ms>_<end_ms>`."""
  out = {}
  for stem, path in files.items():
    parts = stem.rsplit('_', 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
      out.setdefault(parts[0], path)
  return out


def read_audio(path: str, num_samples: int) -> np.ndarray:
  """Mono int16 [num_samples] at 48 kHz from any libsndfile-readable file."""
  import soundfile as sf  # pylint: disable=g-import-not-at-top

  with tf.io.gfile.GFile(path, 'rb') as f:
    x, rate = sf.read(io.BytesIO(f.read()), dtype='float32', always_2d=True)
  return to_int16_48k(x.mean(axis=1), int(rate), num_samples)


def to_int16_48k(x: np.ndarray, rate: int, num_samples: int) -> np.ndarray:
  """Mono float [T] at `rate` -> int16 [num_samples] at 48 kHz (padded/cut)."""
  from scipy import signal  # pylint: disable=g-import-not-at-top

  if len(x) == 0:
    raise ValueError('no samples')
  if rate != SAMPLE_RATE:
    g = np.gcd(int(rate), SAMPLE_RATE)
    x = signal.resample_poly(x, SAMPLE_RATE // g, int(rate) // g)
  x = np.pad(x[:num_samples], (0, max(0, num_samples - len(x))))
  return (np.clip(x, -1.0, 1.0) * 32767).astype(np.int16)


def read_video(path: str, num_frames: int, max_side: int) -> list:
  """num_frames RGB PIL images at 25 fps (PyAV); shorter side <= max_side.

  PIL images, not arrays: TFDS then JPEG-encodes them with PIL, which is
  far cheaper than its TensorFlow encoder for thousands of small frames.
  """
  import av  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  frames, times = [], []
  with av.open(path) as container:
    stream = container.streams.video[0]
    for frame in container.decode(stream):
      times.append(float(frame.time or 0.0))
      img = frame.to_image().convert('RGB')
      scale = max_side / min(img.size)
      if scale < 1:
        img = img.resize((max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale))), Image.BILINEAR)
      frames.append(img)
  if not frames:
    raise ValueError('no video frames')
  times = np.asarray(times) - times[0]
  # Nearest earlier decoded frame for each 25 fps tick.
  ticks = np.arange(num_frames) / FPS
  idx = np.clip(np.searchsorted(times, ticks + 1e-6) - 1, 0, len(frames) - 1)
  return [frames[i] for i in idx]


# --------------------------------------------------------------- builder


class AudioSet(clip_builder.ClipBuilder, skip_registration=True):
  """AudioSet segments with 48 kHz audio and optional 25 fps video."""

  name = 'audioset'
  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = HOW_TO_GET
  HOMEPAGE = 'https://research.google.com/audioset/'
  TALLIES = ('missing_audio',)  # Metadata: class_mids, class_names, skipped_files, missing_audio.

  @property
  def missing_audio(self) -> list[str]:
    return self._tallies['missing_audio']

  def _row_features(self) -> dict:
    return {'labels': tfds.features.Tensor(shape=(None,), dtype=np.int64), 'ytid': tfds.features.Text()}

  def _split_generators(self, dl_manager):
    manual = os.fspath(dl_manager.manual_dir)
    classes = read_class_labels(os.path.join(manual, CLASS_CSV))
    self._publish_metadata(class_mids=[m for m, _ in classes], class_names=[n for _, n in classes])
    audio_dir = os.path.join(manual, 'audio')
    audio = _index_files(audio_dir, _AUDIO_EXTS)
    video = _index_files(os.path.join(manual, 'video'), clip_builder.VIDEO_EXTS)
    if not audio:
      raise errors.MissingDataError('audioset', [os.path.join(audio_dir, 'Y<ytid>.wav (or .flac, ...)')], HOW_TO_GET)
    mid_index = {m: i for i, (m, _) in enumerate(classes)}
    splits = {}
    for split, csv_name in SEGMENT_CSVS.items():
      path = os.path.join(manual, csv_name)
      if tf.io.gfile.exists(path):
        splits[split] = self._generate_examples(read_segments(path), mid_index, audio, video, path)
    return splits

  def _generate_examples(self, rows, mid_index, audio, video, csv_path):
    timed = None  # Built on the first missing segment.
    for ytid, start, end, mids in rows:
      audio_path = _find(audio, ytid, start, end)
      if audio_path is None:
        self.missing_audio.append(ytid)
        if timed is None:
          timed = _timed_stems(audio)
        near = timed.get(ytid) or timed.get(f'Y{ytid}')
        if near:
          # Usually a name that rounds start/end differently from the row.
          self._corrupt.note(
            'missing',
            near,
            (
              f'{csv_path}: segment {ytid} {start:g}-{end:g} s expects '
              f'{ytid}_{int(round(start * 1000))}_{int(round(end * 1000))}'
              '.<ext> (or Y<ytid> / <ytid>); this file has other times'
            ),
          )
        else:
          self._corrupt.note('missing', f'{ytid}', f'{csv_path}: no audio file for this segment')
        continue
      unknown = [m for m in mids if m not in mid_index]
      if unknown:
        self._corrupt.report(csv_path, ValueError(f'segment {ytid}: labels {unknown} not in {CLASS_CSV}'))
        continue
      seconds = end - start
      try:
        wav = read_audio(audio_path, int(round(seconds * SAMPLE_RATE)))
      except Exception as e:  # pylint: disable=broad-except
        self._corrupt.report(audio_path, e)
        continue
      frames = []
      video_path = _find(video, ytid, start, end)
      if video_path is not None:
        try:
          frames = read_video(video_path, int(round(seconds * FPS)), self._video_size)
        except Exception as e:  # pylint: disable=broad-except
          self._corrupt.report(video_path, e)
      yield (
        ytid,
        {'audio': wav, 'video': frames, 'ytid': ytid, 'labels': np.array([mid_index[m] for m in mids], np.int64)},
      )
    if self.missing_audio:
      logging.warning(
        "%s: %d segments without audio so far (listed in the records' build_report.tsv)",
        csv_path,
        len(self.missing_audio),
      )


def expected_manual_files(config) -> dict[str, list[str]]:
  manual = config.manual_dir or ''
  common = [os.path.join(manual, CLASS_CSV), os.path.join(manual, 'audio')]
  return {split: [os.path.join(manual, name)] + common for split, name in SEGMENT_CSVS.items()}


def make_builder(config) -> tfds.core.DatasetBuilder:
  return AudioSet(
    data_dir=config.data_dir or None, stored_video_size=config.stored_video_size, on_corrupt=config.on_corrupt
  )


def decoders(config) -> dict:
  del config
  return {'video': tfds.decode.SkipDecoding()}  # Decode chosen frames only.


# ------------------------------------------------------------ transforms


def log_mel(audio: tf.Tensor, num_frames: int, num_bins: int) -> tf.Tensor:
  """Log-mel spectrogram of a 48 kHz clip; [T] -> [num_frames, num_bins].

  25 ms window, hop T / num_frames (640 samples for 61,440 and 96 frames).
  """
  hop = audio.shape[-1] // num_frames
  stft = tf.signal.stft(audio, frame_length=1200, frame_step=hop, fft_length=2048, pad_end=True)[..., :num_frames, :]
  mel = tf.signal.linear_to_mel_weight_matrix(
    num_mel_bins=num_bins,
    num_spectrogram_bins=1025,
    sample_rate=SAMPLE_RATE,
    lower_edge_hertz=20.0,
    upper_edge_hertz=SAMPLE_RATE / 2,
  )
  return tf.math.log(tf.matmul(tf.abs(stft), mel) + 1e-6)


def spec_augment(mel: tf.Tensor, config, rng: rng_lib.SeedStream) -> tf.Tensor:
  """SpecAugment (Park et al. 2019) frequency and time masking; [T, F]."""
  t, f = mel.shape
  fill = tf.reduce_mean(mel)
  for axis, count, width, size in (
    (1, config.spec_num_freq_masks, config.spec_freq_mask_max, f),
    (0, config.spec_num_time_masks, config.spec_time_mask_max, t),
  ):
    for _ in range(count):
      w = rng.randint(0, width + 1)
      start = rng.randint(0, size - w + 1)
      idx = tf.range(size)
      masked = (idx >= start) & (idx < start + w)  # [size]
      masked = masked[None, :] if axis == 1 else masked[:, None]
      mel = tf.where(masked, fill, mel)
  return mel


def audio_inputs(clip: tf.Tensor, config, rng: rng_lib.SeedStream | None) -> tf.Tensor:
  """A float clip [61440] -> [480, 128] (raw) or [96, 50] (mel frames).

  `rng` is None for evaluation (no SpecAugment).
  """
  if config.audio_repr == 'raw':
    return tf.reshape(clip, [-1, config.audio_patch_size])
  mel = log_mel(clip, config.mel_frames, config.mel_bins)  # [96, 50]
  if rng is not None and config.specaugment:
    mel = spec_augment(mel, config, rng)
  return mel  # [96, 50]: the model flattens it to 4,800 inputs.


def patch_video(video: tf.Tensor, patch_shape) -> tf.Tensor:
  """Space-time patches; [T, H, W, C] -> [T/pt * H/ph * W/pw, pt*ph*pw*C].

  Patches are in (t, y, x) row-major order; within a patch, (t, y, x, c).
  """
  pt, ph, pw = patch_shape
  t, h, w, c = video.shape
  x = tf.reshape(video, [t // pt, pt, h // ph, ph, w // pw, pw, c])
  x = tf.transpose(x, [0, 2, 4, 1, 3, 5, 6])
  return tf.reshape(x, [(t // pt) * (h // ph) * (w // pw), pt * ph * pw * c])


def _decode_frames(encoded: tf.Tensor) -> tf.Tensor:
  """[T] JPEG strings -> float32 [T, H, W, 3] in [0, 255]."""
  return tf.map_fn(
    lambda s: tf.cast(tf.io.decode_jpeg(s, channels=3), tf.float32),
    encoded,
    fn_output_signature=tf.TensorSpec([None, None, 3], tf.float32),
  )


def _take_frames(encoded: tf.Tensor, start: tf.Tensor, count: int):
  """`count` encoded frames from `start`, repeating the last if too short."""
  n = tf.shape(encoded)[0]
  idx = tf.minimum(start + tf.range(count), n - 1)
  return tf.gather(encoded, idx)


def video_clip(frames: tf.Tensor, config, rng: rng_lib.SeedStream | None) -> tf.Tensor:
  """float [T, H, W, 3] in [0, 255] -> [T, S, S, 3] or patches.

  With `rng` (training): one random crop, flip and colour jitter for the
  whole clip; without: the centre square.
  """
  size = config.video_size
  shape = tf.shape(frames)
  is_training = rng is not None
  if is_training:
    begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape[1:],
      tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=rng(),
      min_object_covered=0.1,
      aspect_ratio_range=(3 / 4, 4 / 3),
      area_range=tuple(config.video_crop_area_range),
      max_attempts=10,
      use_image_if_no_bounding_boxes=True,
    )
    frames = tf.slice(frames, tf.concat([[0], begin], 0), tf.concat([[-1], crop], 0))
  else:
    side = tf.minimum(shape[1], shape[2])
    frames = frames[
      :, (shape[1] - side) // 2 : (shape[1] - side) // 2 + side, (shape[2] - side) // 2 : (shape[2] - side) // 2 + side
    ]
  frames = tf.image.resize(frames, [size, size], method='bilinear')
  frames = tf.clip_by_value(frames, 0.0, 255.0) / 255.0
  if is_training and config.video_random_flip:
    frames = tf.cond(rng.coin(), lambda: frames[:, :, ::-1], lambda: frames)
  if is_training and config.video_color_augment:
    # One colour jitter for the whole clip, SimCLR-style strengths.
    frames = tf.image.adjust_brightness(frames, rng.uniform([], -0.3, 0.3))
    frames = tf.image.adjust_contrast(frames, rng.uniform([], 0.6, 1.4))
    frames = tf.image.adjust_saturation(frames, rng.uniform([], 0.6, 1.4))
    frames = tf.image.adjust_hue(frames, rng.uniform([], -0.1, 0.1))
    frames = tf.clip_by_value(frames, 0.0, 1.0)
  frames = imagenet.normalize(frames * 255.0)
  frames = tf.ensure_shape(frames, [config.video_frames, size, size, 3])
  if config.video_patched:
    return patch_video(frames, tuple(config.video_patch_shape))
  return frames


def filter_fn(config, is_training: bool):
  del is_training
  if config.modality == 'video':
    return lambda ex: tf.size(ex['video']) > 0
  return None


def usable_fn(config):
  """Whether an example has what the modality needs (probed at pipeline start).

  audio_video keeps examples without video (zeros, like the reference), but
  a copy with no decodable video at all is a configuration error.
  """
  if config.modality in ('video', 'audio_video'):
    return lambda ex: tf.size(ex['video']) > 0
  return None


def filter_reason(config) -> str:
  """Why `filter_fn` rejects an example: for the pipeline's error message."""
  del config
  return (
    'no decodable video: install PyAV (pip install av) and rebuild the records '
    '(delete the audioset folder in data_dir), or use an audio-only preset '
    '(modality=audio)'
  )


def clip_starts(num_samples: tf.Tensor, config) -> tf.Tensor:
  """Evaluation clip starts (samples), evenly spaced over the segment [C]."""
  last = tf.maximum(num_samples - config.clip_samples, 0)
  return tf.cast(tf.round(tf.linspace(0.0, tf.cast(last, tf.float32), config.num_eval_clips)), tf.int32)


def preprocess(example: dict, config, is_training: bool, rng: rng_lib.SeedStream | None) -> dict:
  audio = tf.cast(example['audio'], tf.float32) / 32768.0  # [T]
  n = config.clip_samples
  audio = tf.pad(audio, [[0, tf.maximum(0, n - tf.shape(audio)[0])]])
  num_samples = tf.shape(audio)[0]
  if is_training:
    starts = rng.randint(0, num_samples - n + 1, shape=[1])
  else:
    starts = clip_starts(num_samples, config)  # [C]
  out = {}
  use_audio = config.modality in ('audio', 'audio_video')
  use_video = config.modality in ('video', 'audio_video')
  if use_audio:
    clip = lambda s: tf.ensure_shape(audio[s : s + n], [n])  # pylint: disable=unnecessary-lambda-assignment
    if is_training:
      out['audio'] = audio_inputs(clip(starts[0]), config, rng)
    else:
      out['audio'] = tf.map_fn(lambda s: audio_inputs(clip(s), config, None), starts, fn_output_signature=tf.float32)
  if use_video:
    out['video'] = _video(example['video'], starts, config, rng)
  labels = tf.reduce_max(tf.one_hot(example['labels'], _num_classes(config)), axis=0)  # [K]
  out['label'] = labels
  return out


def _video(encoded: tf.Tensor, starts: tf.Tensor, config, rng: rng_lib.SeedStream | None) -> tf.Tensor:
  """Video clips aligned with the audio clips; zeros where no video."""
  t = config.video_frames
  size = config.video_size
  frame_starts = starts * FPS // SAMPLE_RATE
  pt, ph, pw = config.video_patch_shape
  single = [(t // pt) * (size // ph) * (size // pw), pt * ph * pw * 3] if config.video_patched else [t, size, size, 3]

  is_training = rng is not None

  def present():
    if is_training:
      clip = video_clip(_decode_frames(_take_frames(encoded, frame_starts[0], t)), config, rng)
      if config.modality == 'audio_video':
        clip *= tf.cast(rng.uniform([]) >= config.video_dropout, tf.float32)
      return clip
    frames = _decode_frames(encoded)  # Decode each frame once.
    n = tf.shape(frames)[0]
    return tf.map_fn(
      lambda s: video_clip(tf.gather(frames, tf.minimum(s + tf.range(t), n - 1)), config, None),
      frame_starts,
      fn_output_signature=tf.float32,
    )

  shape = single if is_training else [config.num_eval_clips] + single
  return tf.cond(tf.size(encoded) > 0, present, lambda: tf.zeros(shape, tf.float32))


def _num_classes(config) -> int:
  if not config.num_classes:
    raise ValueError('audioset: num_classes must be known (get_dataset fills it from class_labels_indices.csv)')
  return config.num_classes


def batch_fn(config, is_training: bool) -> None:
  del config, is_training
  return None


# ---------------------------------------------------------------- metrics


def average_clip_scores(scores: np.ndarray, num_clips: int) -> np.ndarray:
  """[B * C, K] (clips of one segment adjacent) or [B, C, K] -> [B, K]."""
  scores = np.asarray(scores)
  if scores.ndim == 2:
    scores = scores.reshape(-1, num_clips, scores.shape[-1])
  return scores.mean(axis=1)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Average precision of each column; [N, K] x [N, K] -> [K].

  AP = sum over distinct score thresholds of (recall step) x precision,
  ties counted together (the definition sklearn uses). NaN for a class with
  no positive example.
  """
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels) > 0
  if scores.shape != labels.shape or scores.ndim != 2:
    raise ValueError(f'scores {scores.shape} and labels {labels.shape} must both be [N, K]')
  order = np.argsort(-scores, axis=0, kind='stable')  # [N, K]
  s = np.take_along_axis(scores, order, axis=0)
  y = np.take_along_axis(labels, order, axis=0)
  tp = np.cumsum(y, axis=0)  # [N, K]
  rank = np.arange(1, len(s) + 1)[:, None]
  # Only the last row of each run of tied scores is a threshold.
  last_of_tie = np.ones_like(s, bool)
  last_of_tie[:-1] = s[:-1] != s[1:]
  positives = tp[-1]  # [K]
  precision = tp / rank
  recall = tp / np.maximum(positives, 1)
  ap = np.zeros(s.shape[1])
  for k in range(s.shape[1]):  # Per class: thresholds differ per column.
    idx = np.flatnonzero(last_of_tie[:, k])
    r, p = recall[idx, k], precision[idx, k]
    prev_recall = np.concatenate([[0.0], r[:-1]])
    ap[k] = np.sum((r - prev_recall) * p)
  return np.where(positives > 0, ap, np.nan)


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
  """mAP: AP per class (column), then the mean over classes that have a
  positive example. scores, labels: [N examples, K classes]."""
  return float(np.nanmean(average_precision(scores, labels)))
