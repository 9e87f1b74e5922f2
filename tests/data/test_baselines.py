"""Linear baselines on the real sample data, and the benchmark entry point.

The baselines show that each sample set's labels are learnable from what
the pipelines yield; the accuracies are printed (pytest -s) for the record.
"""

import json

import pytest

from perceiver.data import baselines
from perceiver_tools import data_benchmark as benchmark


@pytest.mark.parametrize(
  'key,splits,min_accuracy',
  [
    ('imagenet_config', ('train', 'validation'), 0.6),
    ('audioset_config', ('balanced_train+unbalanced_train', 'eval'), 0.5),
    ('modelnet_config', ('train', 'test'), 0.4),
  ],
)
def test_linear_baseline_beats_chance(request, key, splits, min_accuracy):
  config = request.getfixturevalue(key)
  if key == 'modelnet_config':
    config = dict(config, source='hdf5')
  result = baselines.linear_baseline(config, *splits)
  print(f'linear baseline {config["name"]}: {json.dumps(result)}')
  # Chance is 1/10 (digits, shapes) or 1/5 (languages).
  assert result['accuracy'] >= min_accuracy > 2 * result['chance']
  if 'mAP' in result:
    assert result['mAP'] > result['chance_mAP']


def test_benchmark_prints_one_json_line_per_pipeline(sample_dir, tfds_dir, capsys):
  benchmark.main(
    [
      '--data_dir',
      sample_dir,
      '--tfds_dir',
      tfds_dir,
      '--batch_size',
      '4',
      '--batches',
      '2',
      '--only',
      'modelnet40/hdf5,audioset/mel',
    ]
  )
  lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
  assert [l['pipeline'] for l in lines] == ['audioset/mel', 'modelnet40/hdf5']
  assert all(l['examples_per_s'] > 0 for l in lines)
