"""Colour-wheel coding, and scripts/flow.py rendering from a checkpoint."""

import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from perceiver import flow_viz
from perceiver.data import flow as fdata

REPO = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = REPO.parent / 'shared' / 'golden' / 'official' / 'optical_flow.npz'


def test_colour_wheel_is_baker_et_al():
  wheel = flow_viz.colour_wheel()
  assert wheel.shape == (55, 3)
  starts = np.cumsum((0, 15, 6, 4, 11, 13))  # RY, YG, GC, CB, BM, MR.
  pure = [(1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 1, 1), (0, 0, 1), (1, 0, 1)]
  for start, colour in zip(starts, pure):
    np.testing.assert_allclose(wheel[start], colour)


def test_flow_to_rgb_directions():
  r = 10.0
  flow = np.array([[[0, 0], [r, 0], [-r, 0], [0, -r], [0, r], [2 * r, 0]]], np.float32)
  rgb = flow_viz.flow_to_rgb(flow, max_flow=r).astype(int)[0]
  np.testing.assert_array_equal(rgb[0], [255, 255, 255])  # Still: white.
  assert rgb[1][0] == 255 and rgb[1][1] == 0  # Right: red/magenta end.
  assert rgb[2][2] == 255 and rgb[2][1] > 150 and rgb[2][0] == 0  # Left: cyan.
  assert rgb[3][2] == 255 and rgb[3][1] == 0  # Up: blue.
  assert rgb[4][0] == 255 and rgb[4][2] == 0  # Down: orange/yellow.
  np.testing.assert_array_equal(rgb[5], np.round(rgb[1] * 0.75))  # Beyond.
  assert flow_viz.flow_to_rgb(np.full((2, 2, 2), np.nan)).max() == 0


def test_save_flow_png_with_legend(tmp_path):
  flow = np.random.default_rng(0).normal(0, 3, (20, 30, 2)).astype(np.float32)
  path = str(tmp_path / 'f.png')
  flow_viz.save_flow_png(path, flow, frame=np.zeros((20, 30, 3), np.uint8), reference=flow, title='t')
  with Image.open(path) as img:
    assert img.width > img.height > 100


def _run_script(*args):
  return subprocess.run(
    [sys.executable, str(REPO / 'scripts' / 'flow.py'), *args], capture_output=True, text=True, check=False, timeout=600
  )


def test_script_renders_flow_from_a_checkpoint(tmp_path):
  if not GOLDEN.exists():
    pytest.skip(f'golden file not found: {GOLDEN}')
  rng = np.random.default_rng(0)
  base = (rng.uniform(0, 255, (24, 44, 3))).astype(np.uint8)
  f1, f2 = tmp_path / 'a.png', tmp_path / 'b.png'
  Image.fromarray(base[:, 2:42]).save(f1)
  Image.fromarray(base[:, :40]).save(f2)
  out, flo = tmp_path / 'out' / 'flow.png', tmp_path / 'flow.flo'
  proc = _run_script('--checkpoint', str(GOLDEN), str(f1), str(f2), '--out', str(out), '--flo', str(flo))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'window(s) of (12, 16)' in proc.stdout
  with Image.open(out) as img:
    assert img.width > 300
  flow = fdata.read_flo(str(flo))
  assert flow.shape == (24, 40, 2) and np.isfinite(flow).all()
  # Bad inputs: one line naming what to fix.
  bad = tmp_path / 'bad.npz'
  bad.write_bytes(b'not a checkpoint')
  proc = _run_script('--checkpoint', str(bad), str(f1), str(f2), '--out', str(out))
  assert proc.returncode != 0 and '--checkpoint=' in proc.stderr
  Image.fromarray(base).save(f2)
  proc = _run_script('--checkpoint', str(GOLDEN), str(f1), str(f2), '--out', str(out))
  assert proc.returncode != 0 and 'differ in size' in proc.stderr
  assert 'Traceback' not in proc.stderr
