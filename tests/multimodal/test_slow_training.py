"""Done-when measurement: the sample autoencoder trains on real sample clips.

Held-out (validate split) video PSNR must beat the mean-frame baseline,
audio PSNR the silence baseline, and the decoded label (label input masked)
chance. One run of the `sample` preset through the production runner; the
figures are printed for the docs (docs/multimodal.md, "Measured here").
"""

import importlib
import json
import time

import pytest

from perceiver import train

from multimodal_testlib import make_clips


@pytest.mark.slow
def test_sample_preset_beats_the_baselines(tmp_path):
  pytest.importorskip('av')
  manual = make_clips(str(tmp_path / 'clips'), '--kinetics_clips', '4,48,8')
  config = importlib.import_module('configs.multimodal_autoencoding').get_config('sample')
  config.data.manual_dir = manual
  config.data.data_dir = str(tmp_path / 'tfds')
  start = time.time()
  result = train.train_and_evaluate(config, str(tmp_path / 'run'), 'train_and_eval')
  ev = result['eval']
  print(json.dumps(dict(ev, steps=result['step'], wall_s=round(time.time() - start)), indent=1))
  assert result['step'] == config.train.num_steps
  assert ev['num_examples'] == 32
  assert ev['video_psnr'] > ev['baseline_mean_frame_psnr']
  assert ev['audio_psnr'] > ev['baseline_silence_psnr']
  assert ev['top1'] > ev['chance_top1']
