"""The flow task through the runner: configs, a smoke run, init_from."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from perceiver_configs import optical_flow
from perceiver import flow as flow_lib
from perceiver_tools import golden
from perceiver.train import config_checks

REPO = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = REPO.parent / 'shared' / 'golden' / 'official' / 'optical_flow.npz'


@pytest.mark.parametrize('preset', sorted(optical_flow.PRESETS))
def test_presets_are_locked_and_valid(preset):
  config = optical_flow.get_config(preset)
  config_checks.check_config(config, 'train_and_eval')
  with pytest.raises(AttributeError, match='locked'):
    config.data.crop_sise = (1, 1)
  flow_lib.build_flow_model(config.model)


def test_paper_preset_is_the_released_model():
  config = optical_flow.get_config('paper')
  from perceiver.checkpoints import published  # pylint: disable=g-import-not-at-top

  released = published.published_config('optical_flow')
  assert flow_lib.reference_config(config.model) == {
    k: (list(v) if k == 'train_size' else v)
    for k, v in flow_lib.reference_config(flow_lib.model_config_from_reference(released)).items()
  }
  assert tuple(config.data.crop_size) == (368, 496)
  assert config.model.min_overlap == 20  # The colab's window overlap.
  assert config.optimizer.name == 'lamb'
  assert config.optimizer.schedule.base_lr == 4e-4
  assert config.train.batch_size == 512


def test_crop_and_model_size_must_agree():
  config = optical_flow.get_config('smoke')
  with config.unlocked():
    config.data.crop_size = (16, 16)
  with pytest.raises(config_checks.ConfigError, match='data.crop_size'):
    config_checks.check_config(config, 'train')
  config = optical_flow.get_config('smoke')
  with config.unlocked():
    config.model.encoder.num_latents = 3
  with pytest.raises(config_checks.ConfigError, match='model.encoder'):
    config_checks.check_config(config, 'train')


def test_smoke_run_trains_evaluates_and_draws(flow_sample_dir, tmp_path):
  workdir = tmp_path / 'run'
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run(
    [
      sys.executable,
      '-m',
      'experiments.main',
      '--config=configs/optical_flow.py:smoke',
      f'--workdir={workdir}',
      f'--config.data.manual_dir={flow_sample_dir}/sintel',
      '--config.data.dataset=sintel',
      '--config.data.train_split=train[:4]',
      '--config.data.valid_split=train[4:]',
      f'--config.data.data_dir={tmp_path / "tfds"}',
      f'--config.flow.picture_dir={workdir / "pictures"}',
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = [json.loads(l) for l in open(workdir / 'metrics.jsonl')]
  train = [r for r in records if r['split'] == 'train']
  ev = [r for r in records if r['split'] == 'valid'][-1]
  assert [r['step'] for r in train] == [1, 2, 3]
  assert all(np.isfinite(r['loss']) for r in train)
  for key in ('epe', 'fl_all', 'epe_noc', 'epe_occ', 'zero_flow_epe'):
    assert np.isfinite(ev[key]), key
  assert ev['num_examples'] == 1
  assert sorted(os.listdir(workdir / 'pictures')) == ['eval_00.png']
  assert (workdir / 'params.npz').exists()  # For scripts/flow.py.


def test_init_from_evaluates_a_checkpoint(flow_sample_dir, tmp_path):
  """--config.init_from + --mode=eval: the golden file's weights, scored."""
  if not GOLDEN.exists():
    pytest.skip(f'golden file not found: {GOLDEN}')
  from perceiver.train import trainer  # pylint: disable=g-import-not-at-top

  case = golden.load_golden(str(GOLDEN))
  config = optical_flow.get_config('smoke')
  with config.unlocked():
    config.model = type(config.model)(flow_lib.model_config_from_reference(case.config))
    config.data.crop_size = config.model.train_size
    config.data.manual_dir = f'{flow_sample_dir}/kitti'
    config.data.dataset = 'kitti'
    config.data.data_dir = str(tmp_path / 'tfds')
    config.data.valid_split = 'train[:2]'
    config.init_from = str(GOLDEN)
  result = trainer.train_and_evaluate(config, str(tmp_path / 'wd'), 'eval')
  ev = result['eval']
  assert ev['num_examples'] == 2 and result['step'] == 0
  assert np.isfinite(ev['epe']) and ev['epe'] > 0
  assert 'epe_noc' in ev  # KITTI's flow_noc gives the occlusion split.


def test_flow_table_has_the_papers_figures_and_fills_from_runs(tmp_path):
  from perceiver_tools import paper_results as pr  # pylint: disable=g-import-not-at-top
  from perceiver_tools import tables  # pylint: disable=g-import-not-at-top

  papers = REPO.parent / 'shared' / 'reference' / 'PAPERS.md'
  table = pr.TABLES['perceiver_io_flow']
  if papers.exists():
    line = next(l for l in papers.read_text().splitlines() if l.startswith('- Optical flow: Sintel'))
    for value in table.rows[0].paper.values():
      assert f'{value:.2f}' in line
  # A workdir of the sintel_clean preset: its config carries the tag.
  workdir = tmp_path / 'wd'
  workdir.mkdir()
  config = optical_flow.get_config('sintel_clean')
  (workdir / 'config.json').write_text(config.to_json_best_effort())
  (workdir / 'metrics.jsonl').write_text(json.dumps(dict(step=0, split='valid', epe=1.9, fl_all=5.0)) + '\n')
  text = tables.make_tables([str(workdir)], ['perceiver_io_flow'])
  assert '| Perceiver IO (released checkpoint) | 1.90 | 1.81 | +0.09 |' in text
  assert '2.42' in text and '4.98' in text and '—' in text
