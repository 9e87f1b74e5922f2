#!/usr/bin/env python
"""Reconstructs a video clip (frames + audio) with a multimodal autoencoder.

  python scripts/autoencode.py --checkpoint FILE --clip CLIP.mp4 --out DIR

FILE: the released `video_autoencoding_checkpoint.pystate` (its full-size
config, perceiver/checkpoints/published.py, is assumed) or a `params.npz`
exported by a run of configs/multimodal_autoencoding.py (config inside).
Writes DIR/strip.png (top row: input frames, bottom row: reconstructed
frames, evenly spaced over the window), DIR/reconstruction.wav (48 kHz
mono), DIR/input.wav (the window's input audio) and DIR/metrics.json
(video / audio PSNR and the label decoded with the label input masked).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import List, Optional

from absl import flags
import jax
import numpy as np

from perceiver_tools.cli import _flags

FLAGS = flags.FlagValues()
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'autoencoder checkpoint (.pystate or .npz)', flag_values=FLAGS)
_CLIP = flags.DEFINE_string(
  'clip', None, 'video file with an audio track (any container PyAV reads)', flag_values=FLAGS
)
_OUT = flags.DEFINE_string('out', None, 'output directory', flag_values=FLAGS)
_START = flags.DEFINE_float('start_s', 0.0, 'window start within the clip, seconds', flag_values=FLAGS)
_FRAMES = flags.DEFINE_integer('strip_frames', 8, 'frames shown in the strip', flag_values=FLAGS)
_CONFIG = flags.DEFINE_string(
  'config_json',
  None,
  'reference-style model config (JSON) for a checkpoint that has none and is not the released one',
  flag_values=FLAGS,
)
_CHUNKS = flags.DEFINE_integer(
  'chunks', 0, 'decode the outputs in this many slices (0: one per frame; more slices, less memory)', flag_values=FLAGS
)


def load_autoencoder(path: str, config_json: str | None = None):
  """(Autoencoder, params, state, frame_size) from a checkpoint file."""
  from perceiver import checkpoints  # pylint: disable=g-import-not-at-top
  from perceiver import multimodal  # pylint: disable=g-import-not-at-top

  params, state, config = checkpoints.load_checkpoint(path)
  if config_json:
    try:
      with open(config_json) as f:
        config = json.loads(f.read(1 << 20))
    except (OSError, ValueError) as e:
      raise ValueError(f'--config_json={config_json}: not a readable JSON file ({e})') from None
    if not isinstance(config, dict):
      raise ValueError(f'--config_json={config_json}: expected a JSON object')
  if config is None:  # DeepMind pickles carry no config: the released one.
    config = checkpoints.published_config('video_autoencoding')
  config = config.get('config.model', config)
  if config.get('model') != 'video_autoencoder':
    raise ValueError(f'--checkpoint={path}: not a video autoencoder checkpoint')
  ae = multimodal.build_autoencoder({k: v for k, v in config.items() if k != 'note'})
  checkpoints.check_compatible(
    jax.eval_shape(lambda: ae.net.init(jax.random.PRNGKey(0), _dummy(ae), is_training=False))[0], params
  )
  state = {m: v for m, v in state.items() if m != 'input_spec'}
  return ae, params, state, multimodal.frame_size(config)


def _dummy(ae) -> dict:
  """Smallest inputs of the model's shape (parameters do not depend on H, W)."""
  t = int(ae.config['num_frames'])
  return {
    'video': np.zeros((1, t, 4, 4, 3), np.float32),
    'audio': np.zeros((1, ae.num_audio_samples(), 1), np.float32),
    'subsample_image': np.arange(1, dtype=np.int32),
    'subsample_audio': np.arange(1, dtype=np.int32),
  }


def read_clip(path: str, num_frames: int, size: int, start_s: float, samples_per_frame: int):
  """video f32 [1, T, S, S, 3] in [0, 1] and audio f32 [1, T * spf, 1]."""
  from perceiver.data import audioset  # pylint: disable=g-import-not-at-top
  from perceiver.data import kinetics  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  first = int(round(start_s * kinetics.FPS))
  frames = audioset.read_video(path, first + num_frames, max_side=4 * size)[first:]
  video = []
  for img in frames:
    side = min(img.size)
    left, top = (img.size[0] - side) // 2, (img.size[1] - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BOX)
    video.append(np.asarray(img, np.float32) / 255.0)
  n = num_frames * samples_per_frame
  a0 = first * kinetics.SAMPLE_RATE // kinetics.FPS
  audio = kinetics.read_audio_track(path, a0 + n)
  audio = np.zeros([n], np.float32) if audio is None else audio[a0:].astype(np.float32) / 32768.0
  return np.stack(video)[None], audio.reshape(1, n, 1)


def picture_strip(inputs: np.ndarray, outputs: np.ndarray, count: int) -> np.ndarray:
  """uint8 [2 S + 2, count (S + 2), 3]: inputs above reconstructions."""
  t, s = inputs.shape[0], inputs.shape[1]
  idx = np.linspace(0, t - 1, min(count, t)).round().astype(int)
  strip = np.full((2 * s + 2, len(idx) * (s + 2), 3), 255, np.uint8)
  for j, i in enumerate(idx):
    for row, frames in enumerate((inputs, outputs)):
      strip[row * (s + 2) : row * (s + 2) + s, j * (s + 2) : j * (s + 2) + s] = (
        (np.clip(frames[i], 0, 1) * 255).round().astype(np.uint8)
      )
  return strip


def autoencode(
  checkpoint: str,
  clip: str,
  out: str,
  *,
  start_s: float = 0.0,
  strip_frames: int = 8,
  chunks: int = 0,
  config_json: str | None = None,
) -> dict:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  from perceiver import multimodal  # pylint: disable=g-import-not-at-top

  for flag, path in (('--checkpoint', checkpoint), ('--clip', clip)):
    if not os.path.isfile(path):
      raise FileNotFoundError(f'{flag}={path}: no such file')
  ae, params, state, size = load_autoencoder(checkpoint, config_json)
  num_frames = int(ae.config['num_frames'])
  video, audio = read_clip(clip, num_frames, size, start_s, int(ae.config['audio_samples_per_frame']))
  if video.shape[1] < num_frames:
    raise ValueError(f'--clip={clip}: {video.shape[1]} frames after --start_s={start_s}, the model needs {num_frames}')
  recon = jax.jit(functools.partial(multimodal.reconstruct, ae, chunks=chunks or num_frames))
  result = jax.device_get(recon(params, state, video, audio))
  os.makedirs(out, exist_ok=True)
  Image.fromarray(picture_strip(video[0], result['image'][0], strip_frames)).save(os.path.join(out, 'strip.png'))
  sf.write(os.path.join(out, 'reconstruction.wav'), np.clip(result['audio'][0], -1, 1), 48_000, subtype='PCM_16')
  sf.write(os.path.join(out, 'input.wav'), audio[0, :, 0], 48_000, subtype='PCM_16')
  probs = np.asarray(jax.nn.softmax(result['label'][0]))
  metrics = {
    'video_psnr': float(multimodal.psnr(result['image'], video)[0]),
    'audio_psnr': float(multimodal.psnr(result['audio'], audio.reshape(1, -1))[0]),
    'label': int(np.argmax(probs)),
    'label_prob': float(probs.max()),
  }
  with open(os.path.join(out, 'metrics.json'), 'w') as f:
    json.dump(metrics, f, indent=1)
  return metrics


def main(argv: Optional[List[str]] = None) -> int:
  _flags.parse(FLAGS, argv, __doc__, max_positional=None)  # Stray arguments are ignored, as under app.run.
  from perceiver import checkpoints  # pylint: disable=g-import-not-at-top

  for flag in (_CHECKPOINT, _CLIP, _OUT):
    if not flag.value:
      _flags.fail(f'--{flag.name} is required')
  try:
    metrics = autoencode(
      _CHECKPOINT.value,
      _CLIP.value,
      _OUT.value,
      start_s=_START.value,
      strip_frames=_FRAMES.value,
      chunks=_CHUNKS.value,
      config_json=_CONFIG.value,
    )
  except (FileNotFoundError, ValueError, checkpoints.CheckpointError) as e:
    print(f'autoencode.py: error: {e}', file=sys.stderr)
    return 2
  print(json.dumps(metrics))
  print(f'wrote {_OUT.value}/strip.png, reconstruction.wav, input.wav, metrics.json')
  return 0


def run() -> None:
  sys.exit(main())


if __name__ == '__main__':
  run()
