"""Done-when measurement: a small flow model trained on real-photo pairs.

  python -m pytest -q -s -m slow tests/flow/test_flow_training_slow.py

Makes 4,000 pairs of 48 x 64 with `make_sample_data.py --what flow`, trains
`configs/optical_flow.py:sample` through the runner (the production
pipeline; 5,600 steps, about 25-30 min on the shared 2-core CPU), and compares
its held-out EPE (the 800 validation pairs of the FlyingChairs list) with
the zero-flow baseline and with OpenCV's Farneback (`opencv-python-headless`,
skipped when absent) on the same pairs. The target: EPE at most half of the
zero-flow baseline's. Figures: docs/flow.md.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest

from perceiver.data import flow as fdata

REPO = pathlib.Path(__file__).resolve().parents[2]


def farneback_epe(manual_dir: str, tfds_dir: str) -> float:
  """Pooled EPE of OpenCV's Farneback on the validation pairs."""
  cv2 = pytest.importorskip('cv2')
  config = fdata.resolve_config(dict(dataset='flying_chairs', manual_dir=manual_dir, data_dir=tfds_dir))
  builder = fdata.get_builder(config)
  err, count = 0.0, 0.0
  for ex in builder.as_dataset(split='validation').as_numpy_iterator():
    g1 = cv2.cvtColor(ex['image1'], cv2.COLOR_RGB2GRAY)
    g2 = cv2.cvtColor(ex['image2'], cv2.COLOR_RGB2GRAY)
    # OpenCV's documented example settings (pyr_scale 0.5, 3 levels,
    # window 15, 3 iterations, poly_n 5, poly_sigma 1.2).
    pred = cv2.calcOpticalFlowFarneback(g1, g2, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    valid = ex['valid'] > 0
    err += float(np.linalg.norm(pred - ex['flow'], axis=-1)[valid].sum())
    count += float(valid.sum())
  return err / count


@pytest.mark.slow
def test_sample_model_halves_the_zero_flow_error(tmp_path):
  sample = tmp_path / 'sample'
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL='2')
  subprocess.run(
    [
      sys.executable,
      str(REPO / 'scripts' / 'make_sample_data.py'),
      '--out',
      str(sample),
      '--what',
      'flow',
      '--flow_pairs',
      '4000',
      '--flow_size',
      '48,64',
    ],
    check=True,
    env=env,
  )
  manual = str(sample / 'flow' / 'flying_chairs')
  workdir = tmp_path / 'run'
  start = time.time()
  proc = subprocess.run(
    [
      sys.executable,
      '-m',
      'experiments.main',
      '--config=configs/optical_flow.py:sample',
      f'--workdir={workdir}',
      f'--config.data.manual_dir={manual}',
      f'--config.data.data_dir={tmp_path / "tfds"}',
      '--config.eval.every_steps=2800',
      f'--config.flow.picture_dir={workdir / "pictures"}',
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    check=False,
  )
  wall = time.time() - start
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = [json.loads(l) for l in open(workdir / 'metrics.jsonl')]
  ev = [r for r in records if r['split'] == 'valid'][-1]
  steps = max(r['step'] for r in records)
  figures = dict(
    epe=ev['epe'],
    zero_flow_epe=ev['zero_flow_epe'],
    fl_all=ev['fl_all'],
    steps=steps,
    wall_s=round(wall),
    pairs=int(ev['num_examples']),
  )
  try:
    figures['farneback_epe'] = farneback_epe(manual, str(tmp_path / 'tfds'))
  except pytest.skip.Exception:
    figures['farneback_epe'] = None
  print('flow sample run:', json.dumps(figures))
  assert np.isfinite(ev['epe']) and ev['epe'] > 0, figures
  # The target (measured: 0.429 vs zero flow 0.932 after 5,600
  # steps, 0.460 of it; an earlier 5,000-step run ended at 0.507 of it, so
  # the margin is small; docs/flow.md).
  assert ev['epe'] <= 0.5 * ev['zero_flow_epe'], figures
