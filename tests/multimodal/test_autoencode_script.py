"""scripts/autoencode.py renders a picture strip and wavs from a checkpoint."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from perceiver.checkpoints import npz_format

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, 'scripts', 'autoencode.py')


def _run(*args):
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run(
    [sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, timeout=600, check=False
  )


def _clip(kinetics_dir):
  folder = os.path.join(kinetics_dir, 'validate')
  label = sorted(os.listdir(folder))[0]
  return os.path.join(folder, label, sorted(os.listdir(os.path.join(folder, label)))[0])


def test_released_format_pickle_renders_strip_and_wav(golden_pystate, golden_case, kinetics_dir, tmp_path):
  pytest.importorskip('soundfile')
  out = tmp_path / 'out'
  config = os.path.join(os.path.dirname(golden_pystate), 'config.json')
  proc = _run(
    '--checkpoint',
    golden_pystate,
    '--config_json',
    config,
    '--clip',
    _clip(kinetics_dir),
    '--out',
    str(out),
    '--strip_frames',
    '2',
    '--chunks',
    '2',
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  strip = np.asarray(Image.open(out / 'strip.png'))
  # Golden model: 2 frames of 32 x 32 (4 x img_sz): two rows of two frames.
  assert strip.shape == (2 * 32 + 2, 2 * (32 + 2), 3)
  assert strip[:32, :32].std() > 5  # The input photo, not a blank tile.
  import soundfile as sf  # pylint: disable=g-import-not-at-top

  wav, rate = sf.read(out / 'reconstruction.wav')
  assert rate == 48_000 and wav.shape == (2 * 32,)
  metrics = json.loads((out / 'metrics.json').read_text())
  assert 0 <= metrics['label'] < golden_case.config['num_classes']
  assert np.isfinite(metrics['video_psnr']) and np.isfinite(metrics['audio_psnr'])


def test_exported_npz_carries_its_config(golden_case, kinetics_dir, tmp_path):
  path = str(tmp_path / 'params.npz')
  npz_format.save_checkpoint(
    path, golden_case.params, golden_case.state, {'config.model': dict(golden_case.config, frame_size=8)}
  )
  proc = _run('--checkpoint', path, '--clip', _clip(kinetics_dir), '--out', str(tmp_path / 'o'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert np.asarray(Image.open(tmp_path / 'o' / 'strip.png')).shape[0] == 2 * 8 + 2


def test_errors_name_the_flag(golden_pystate, tmp_path):
  proc = _run('--checkpoint', golden_pystate, '--clip', str(tmp_path / 'nope.mp4'), '--out', str(tmp_path))
  assert proc.returncode == 2 and '--clip=' in proc.stderr and 'no such file' in proc.stderr
  proc = _run('--checkpoint', golden_pystate, '--clip', golden_pystate, '--out', str(tmp_path))
  # Without --config_json the pickle is taken for the full-size released
  # model: a one-line error, not a traceback.
  assert proc.returncode == 2 and 'autoencode.py: error:' in proc.stderr
  assert 'Traceback' not in proc.stderr
