"""Kinetics-layout sample clips from real photos and real recorded speech.

Used by `scripts/make_sample_data.py --what kinetics`. Each clip is a camera
move over a real photograph (scikit-learn's china.jpg / flower.jpg, plus
Debian gnome-backgrounds photos when installed) with real recorded speech
as its audio track (the Asterisk voice prompts also used for AudioSet).
A class fixes the photo, the motion (pan or zoom) and the speech language,
so the label is learnable from the video and from the audio:

  DIR/train.csv, DIR/validate.csv   label,youtube_id,time_start,time_end,split
  DIR/<split>/<label>/<ytid>_<start:06d>_<end:06d>.mp4   25 fps MPEG-4 video,
      48 kHz AAC mono audio, `seconds` long.
"""

from __future__ import annotations

import glob
import hashlib
import os

import numpy as np

FPS = 25
SAMPLE_RATE = 48_000
_MOTIONS = ('pan', 'zoom')
_LANGS = ('en', 'es', 'fr', 'it', 'ru')


def photo_paths(max_photos: int) -> list[str]:
  """Real photographs available offline: sklearn's two, then gnome's."""
  import importlib.util  # pylint: disable=g-import-not-at-top

  paths = []
  spec = importlib.util.find_spec('sklearn')
  if spec is not None and spec.origin:
    images = os.path.join(os.path.dirname(spec.origin), 'datasets', 'images')
    paths += [os.path.join(images, n) for n in ('china.jpg', 'flower.jpg') if os.path.exists(os.path.join(images, n))]
  paths += sorted(glob.glob('/usr/share/backgrounds/gnome/*.jpg'))
  return paths[:max_photos]


def _camera(photo, motion: str, rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
  """uint8 [frames, size, size, 3]: a pan or zoom over `photo` (PIL)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  w, h = photo.size
  side0 = min(w, h) * rng.uniform(0.45, 0.6)
  if motion == 'pan':
    sides = np.full(frames, side0)
    angle = rng.uniform(0, 2 * np.pi)
    travel = min(w, h) * 0.3
    cx0 = w / 2 - np.cos(angle) * travel / 2
    cy0 = h / 2 - np.sin(angle) * travel / 2
    s = np.linspace(0, 1, frames)
    cx, cy = cx0 + np.cos(angle) * travel * s, cy0 + np.sin(angle) * travel * s
  else:
    direction = rng.choice([-1, 1])
    sides = side0 * np.exp(direction * np.linspace(0, np.log(1.8), frames))
    cx = np.full(frames, w / 2 + rng.uniform(-0.1, 0.1) * w)
    cy = np.full(frames, h / 2 + rng.uniform(-0.1, 0.1) * h)
  out = np.empty((frames, size, size, 3), np.uint8)
  for i in range(frames):
    half = min(sides[i], w, h) / 2
    x = np.clip(cx[i], half, w - half)
    y = np.clip(cy[i], half, h - half)
    box = (x - half, y - half, x + half, y + half)
    out[i] = np.asarray(photo.resize((size, size), Image.BILINEAR, box=box))
  return out


def _speech(prompts: list[str], read_prompt, rng: np.random.Generator, seconds: int) -> np.ndarray:
  """float32 [seconds * 48000]: voice prompts at 8 kHz, upsampled."""
  from scipy import signal  # pylint: disable=g-import-not-at-top

  n = seconds * 8000
  pieces, total = [], 0
  while total < n:
    x = read_prompt(prompts[int(rng.integers(len(prompts)))])
    start = int(rng.integers(0, max(1, len(x) - n // 2)))
    pieces.append(x[start:])
    total += len(pieces[-1])
  x = signal.resample_poly(np.concatenate(pieces)[:n], 6, 1)
  # Peak-normalised to -1 dBFS, as recorded clips usually are (the prompts
  # themselves are quiet: RMS ~0.05).
  return (0.9 * x / max(np.abs(x).max(), 1e-6)).astype(np.float32)


def write_clip(path: str, video: np.ndarray, audio: np.ndarray) -> None:
  """MPEG-4 video [T, H, W, 3] uint8 at 25 fps + AAC mono at 48 kHz."""
  import av  # pylint: disable=g-import-not-at-top

  with av.open(path, mode='w') as container:
    v = container.add_stream('mpeg4', rate=FPS)
    v.height, v.width = video.shape[1:3]
    v.pix_fmt = 'yuv420p'
    v.bit_rate = 2_000_000  # High enough that the photo's detail survives.
    a = container.add_stream('aac', rate=SAMPLE_RATE)
    a.layout = 'mono'
    for frame in video:
      for packet in v.encode(av.VideoFrame.from_ndarray(frame, 'rgb24')):
        container.mux(packet)
    for packet in v.encode():
      container.mux(packet)
    hop = 1024
    for i in range(0, len(audio), hop):
      frame = av.AudioFrame.from_ndarray(audio[None, i : i + hop], format='fltp', layout='mono')
      frame.sample_rate, frame.pts = SAMPLE_RATE, i
      for packet in a.encode(frame):
        container.mux(packet)
    for packet in a.encode():
      container.mux(packet)


def make_kinetics(
  out: str,
  *,
  num_classes: int,
  train_per_class: int,
  valid_per_class: int,
  seconds: int,
  size: int,
  seed: int,
  prompts_for,
  read_prompt,
  log,
) -> None:
  """Writes the clips and CSVs; `prompts_for(lang)` lists voice prompts."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  photos = photo_paths(max_photos=(num_classes + 1) // 2)
  if len(photos) * len(_MOTIONS) < num_classes or num_classes > len(_LANGS):
    raise ValueError(
      f'kinetics: {num_classes} classes need {(num_classes + 1) // 2} '
      f'photos (found {len(photos)}) and at most {len(_LANGS)} languages'
    )
  rng = np.random.default_rng(seed)
  rows = {'train': [], 'validate': []}
  for k in range(num_classes):
    photo_path, motion = photos[k // 2], _MOTIONS[k % 2]
    photo = Image.open(photo_path).convert('RGB')
    name = os.path.splitext(os.path.basename(photo_path))[0]
    label = f'{motion} over {name} ({_LANGS[k]} speech)'
    prompts = prompts_for(_LANGS[k])
    for split, count in (('train', train_per_class), ('validate', valid_per_class)):
      folder = os.path.join(out, split, label)
      os.makedirs(folder, exist_ok=True)
      for j in range(count):
        ytid = hashlib.sha1(f'{seed}{k}{split}{j}'.encode()).hexdigest()[:11]
        start = int(rng.integers(0, 300))
        end = start + seconds
        video = _camera(photo, motion, rng, seconds * FPS, size)
        audio = _speech(prompts, read_prompt, rng, seconds)
        write_clip(os.path.join(folder, f'{ytid}_{start:06d}_{end:06d}.mp4'), video, audio)
        rows[split].append((label, ytid, start, end, split))
    log(f'kinetics: class {k} {label!r}: {train_per_class} + {valid_per_class} clips')
  for split, split_rows in rows.items():
    with open(os.path.join(out, f'{split}.csv'), 'w') as f:
      f.write('label,youtube_id,time_start,time_end,split\n')
      for label, ytid, start, end, s in split_rows:
        f.write(f'"{label}",{ytid},{start},{end},{s}\n')
  log(f'kinetics: wrote {out} ({sum(map(len, rows.values()))} clips)')
