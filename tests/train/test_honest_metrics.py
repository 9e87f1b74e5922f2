"""Metrics that cannot flatter: NaN, tied and out-of-range cases score as wrong
(or raise), in `losses` and in the runner's evaluation."""

import importlib
import os

import numpy as np
import pytest

from perceiver import checkpoints
from perceiver import tasks
from perceiver import train
from perceiver.train import input_pipeline
from perceiver.train import losses
from perceiver.train import trainer
from . import helpers

NAN = float('nan')


@pytest.mark.parametrize(
  'scores, label, k, want',
  [
    ([[NAN, NAN, NAN]], [0], 1, [0]),  # NaN everywhere: was 100%
    ([[0.5, NAN, 0.1]], [0], 1, [0]),  # one NaN in the row
    ([[np.inf, 0.0, 0.0]], [0], 1, [0]),  # Inf is not a score
    ([[0.2, 0.2, 0.2]], [1], 1, [0]),  # all equal: was 100%
    ([[0.2, 0.2, 0.2]], [1], 3, [1]),  # top-K of K: always right
    ([[0.2, 0.5, 0.5]], [1], 1, [0]),  # tie for first goes against
    ([[0.2, 0.5, 0.5]], [1], 2, [1]),
    ([[0.1, 0.7, 0.2]], [1], 1, [1]),  # a plain win
    ([[0.1, 0.7, 0.2]], [2], 1, [0]),
    ([[0.1, 0.7, 0.2]], [2], 2, [1]),
    ([[0.1, 0.7, 0.2]], [3], 3, [0]),  # label K: out of range
    ([[0.1, 0.2, 0.7]], [-1], 1, [0]),  # -1 does not wrap to K-1
  ],
)
def test_topk_correct_scores_garbage_as_wrong(scores, label, k, want):
  got = losses.topk_correct(np.asarray(scores, np.float32), np.asarray(label, np.int32), k)
  np.testing.assert_array_equal(got, want)


def test_nonfinite_counts_rows():
  scores = np.asarray([[0.1, 0.9], [NAN, 0.0], [np.inf, 1.0], [-np.inf, 0.0]], np.float32)
  np.testing.assert_array_equal(losses.nonfinite(scores), [0, 1, 1, 1])


def test_out_of_range_labels_are_a_clear_error_naming_the_example():
  batch = {
    'label': np.asarray([3, 9, 10, 2], np.int32),
    'file_name': np.asarray([b'a.png', b'b.png', b'c.png', b'd.png']),
  }
  with pytest.raises(
    losses.LabelError,
    match=r'valid batch 0: example 2 of the batch \(c.png\) '
    r'has label class id 10, outside \[0, 10\)',
  ):
    losses.check_labels(batch, 10, where='valid batch 0')
  with pytest.raises(losses.LabelError, match='example 0 .*class id -1'):
    losses.check_labels({'label': np.asarray([-1, 0])}, 10, where='x')
  with pytest.raises(losses.LabelError, match='mix_label'):
    losses.check_labels({'label': np.asarray([0]), 'mix_label': np.asarray([12])}, 10, where='x')
  with pytest.raises(losses.LabelError, match='outside \\[0, 1\\] or non-finite'):
    losses.check_labels({'label': np.asarray([[0.0, NAN]])}, 2, where='x')
  with pytest.raises(losses.LabelError, match='3 columns'):
    losses.check_labels({'label': np.zeros((1, 3))}, 2, where='x')
  # Padding rows (mask 0) of a partial eval batch are not examples.
  losses.check_labels({'label': np.asarray([1, 99]), 'mask': np.asarray([1, 0])}, 10, where='x')


def test_the_runner_checks_labels_before_the_devices():
  task = tasks.get('classification')
  config = _config()
  config.model.decoder.num_classes = 10
  with pytest.raises(losses.LabelError, match='train batch of step 7: example 1'):
    trainer._check_batch(
      task,
      {'label': np.asarray([0, 10])},
      config,  # pylint: disable=protected-access
      'train batch of step 7',
    )


def test_a_bad_batch_read_ahead_stops_the_run_at_its_own_step(tmp_path, monkeypatch):
  """The runner reads each batch one step ahead, in a worker thread: a bad
  one still stops the run with its own step's number, after the steps
  before it ran."""
  real = input_pipeline.train_batches
  ran = []

  def third_batch_bad(*args, **kwargs):
    for i, batch in enumerate(real(*args, **kwargs)):
      ran.append(i)
      yield dict(batch, label=np.full_like(batch['label'], 99)) if i == 2 else batch

  monkeypatch.setattr(input_pipeline, 'train_batches', third_batch_bad)
  config = importlib.import_module('configs.mnist').get_config('smoke')
  with pytest.raises(losses.LabelError, match='train batch of step 3: example 0'):
    train.train_and_evaluate(config, str(tmp_path), 'train')
  assert ran == [0, 1, 2]  # no batch read past the bad one


def test_map_counts_nonfinite_scores_wrong_and_reports_skipped_classes():
  labels = np.asarray([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
  good = np.asarray([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.8, 0.2, 0.0]])
  result = losses.map_metrics(good, labels)
  assert result == {'mAP': 1.0, 'mAP_classes': 2.0, 'mAP_classes_without_positives': 1.0}
  nan = good.copy()
  nan[0, 0] = NAN  # the top positive's score is lost: ranked last, not dropped
  assert losses.map_metrics(nan, labels)['mAP'] < 1.0
  none = losses.map_metrics(good, np.zeros_like(labels))
  assert np.isnan(none['mAP']) and none['mAP_classes'] == 0


def test_eval_nonfinite_stop_option():
  assert losses.check_eval_finite({'nonfinite': 0.0, 'num_examples': 8}, step=3, split='valid', stop=True) is None
  warning = losses.check_eval_finite({'nonfinite': 0.25, 'num_examples': 8}, step=3, split='valid', stop=False)
  assert '2 of 8 examples' in warning
  with pytest.raises(FloatingPointError, match='step 3: 2 of 8 .*stop_on_nonfinite'):
    losses.check_eval_finite({'nonfinite': 0.25, 'num_examples': 8}, step=3, split='valid', stop=True)


def _config(**overrides):
  return helpers.config_with(**overrides)


def test_runner_eval_of_nan_and_constant_models_scores_zero(tmp_path):
  """A model whose logits are all NaN, or all equal, evaluates to top-1 = 0
  (both gave 100% before) and logs the non-finite fraction."""
  trained = str(tmp_path / 'trained')
  train.train_and_evaluate(_config(**{'checkpoint.export_npz': True, 'train.num_steps': 1}), trained, 'train')
  params, state, config = checkpoints.load_checkpoint(os.path.join(trained, 'params.npz'))
  results = {}
  for name, fill in (('nan', NAN), ('zero', 0.0)):
    path = str(tmp_path / f'{name}.npz')
    filled = {m: {k: np.full_like(v, fill) for k, v in leaves.items()} for m, leaves in params.items()}
    checkpoints.save_checkpoint(path, filled, state, config)
    results[name] = train.train_and_evaluate(_config(init_from=path), str(tmp_path / f'eval_{name}'), 'eval')['eval']
  assert results['nan']['top1'] == 0.0 and results['nan']['top5'] == 0.0
  assert results['nan']['nonfinite'] == 1.0
  assert results['zero']['top1'] == 0.0 and results['zero']['nonfinite'] == 0.0
  with pytest.raises(FloatingPointError, match='NaN/Inf scores'):
    train.train_and_evaluate(
      _config(init_from=str(tmp_path / 'nan.npz'), **{'eval.stop_on_nonfinite': True}),
      str(tmp_path / 'eval_stop'),
      'eval',
    )
