"""The `small_data` presets on the project's sample sets vs linear baselines (slow).

Runs docs/data.md's own commands (the `sample` block: make the sample sets,
then `python -m experiments.main --config=configs/<task>.py:small_data ...`
per task) unchanged except for paths, reads the run's final evaluation from
its metrics.jsonl, and compares it with the linear baseline
(`perceiver.data.baselines`) fitted on the same training split and scored
on the same test split. The Perceiver must at least match the baseline
(top-1; mAP on the audio set). `pytest -s` prints one JSON line per task
with both figures, the steps and the wall time; docs/data.md's table quotes
a measured run.
"""

import json
import os
import time

import pytest

from perceiver.data import baselines

from test_docs_data import REPO, doc_commands, relocate, run  # pylint: disable=g-bad-import-order

TASKS = {  # task -> (preset file, baseline's train split, metric)
  'imagenet': ('configs/imagenet.py', 'train[10%:]', 'top1'),
  'audioset': ('configs/audioset.py', 'balanced_train+unbalanced_train', 'mAP'),
  'modelnet': ('configs/modelnet40.py', 'train', 'top1'),
}


@pytest.fixture(scope='module')
def sample_root(tmp_path_factory):
  tmp = str(tmp_path_factory.mktemp('docs_sample'))
  run(relocate(doc_commands('sample')[0], tmp), REPO)
  return tmp


@pytest.mark.slow
@pytest.mark.parametrize('task', list(TASKS))
def test_small_data_preset_matches_the_linear_baseline(task, sample_root):
  import importlib  # pylint: disable=g-import-not-at-top

  preset_file, baseline_train, metric = TASKS[task]
  (command,) = [c for c in doc_commands('sample') if 'experiments.main' in c and preset_file in c]
  start = time.time()
  run(relocate(command, sample_root), REPO, timeout=3600)
  seconds = time.time() - start
  workdir = relocate(command.split('--workdir=')[1].split()[0], sample_root)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    metrics = [json.loads(line) for line in f]
  final = [m for m in metrics if m.get('split') != 'train'][-1]
  config = importlib.import_module(preset_file[:-3].replace('/', '.')).get_config('small_data')
  data = dict(
    config.data.items(),
    manual_dir=os.path.join(sample_root, 'perceiver_sample', task),
    data_dir=os.path.join(sample_root, 'perceiver_records'),
  )
  test_split = data[f'{config.eval.split}_split']
  baseline = baselines.linear_baseline(data, baseline_train, test_split)
  key = 'mAP' if metric == 'mAP' else 'accuracy'
  print(
    f'small_data {task}: '
    + json.dumps(
      dict(
        perceiver=final[metric],
        linear_baseline=baseline[key],
        steps=config.train.num_steps,
        batch_size=config.train.batch_size,
        wall_seconds=round(seconds),
        baseline=baseline,
      )
    )
  )
  assert final[metric] >= baseline[key] - 1e-9, (final, baseline)
