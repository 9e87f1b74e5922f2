"""Linear baselines (logistic regression on simple features) per pipeline.

A Perceiver trained on a dataset should beat these; on the sample data they
show that the labels are learnable from the pipelines' outputs. Features
are read through the production pipelines (eval preprocessing, so no
augmentation), from the split strings given:
  imagenet2012: grey pixels of the image resized to 28 x 28 [784];
  audioset:     mean and std over time of each mel bin, averaged over the
                evaluation clips [2 * mel_bins];
  modelnet40:   8 x 8 x 8 occupancy histogram of the normalised points [512].
"""

from typing import Any

import numpy as np

from perceiver.data import audioset
from perceiver.data import config as config_lib
from perceiver.data import pipeline


def _read(data_config, tfds_split: str, overrides: dict[str, Any]):
  """All examples of `tfds_split` with eval preprocessing, as numpy."""
  config = config_lib.resolve_config(dict(dict(data_config), test_split=tfds_split, **overrides))
  ds = pipeline.get_dataset(config, split='test', batch_size=64, shuffle_seed=None)
  batches = list(ds.as_numpy_iterator())
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def features(data_config, tfds_split: str) -> tuple[np.ndarray, np.ndarray]:
  """Features [N, D] and labels ([N] int, or [N, K] multi-hot)."""
  name = config_lib.resolve_config(data_config).name
  if name == 'imagenet2012':
    data = _read(data_config, tfds_split, dict(image_size=28, eval_crop_padding=0, pos='none'))
    return data['image'].mean(-1).reshape(len(data['image']), -1), data['label']
  if name == 'audioset':
    data = _read(data_config, tfds_split, dict(modality='audio', audio_repr='mel', num_eval_clips=4))
    config = config_lib.resolve_config(data_config)
    mel = data['audio'].reshape(len(data['audio']), -1, config.mel_frames, config.mel_bins)  # [N, C, T, F]
    feats = np.concatenate([mel.mean(2), mel.std(2)], -1).mean(1)  # [N, 2F]
    return feats, data['label']
  data = _read(data_config, tfds_split, {})
  grids = [np.histogramdd(p, bins=8, range=[(-1, 1)] * 3)[0].ravel() for p in data['points']]
  return np.stack(grids) / data['points'].shape[1], data['label']


def linear_baseline(data_config, train_split: str, test_split: str) -> dict[str, float]:
  """Fits on `train_split`, scores on `test_split`.

  Single-label: {'accuracy', 'chance'} (chance = majority class share).
  Multi-label (AudioSet): {'mAP', 'chance_mAP'} with one-vs-rest models, and
  for classes whose id starts with '/x/lang_' (the sample data's language
  task) also 'accuracy' and 'chance' over those classes.
  """
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.multiclass import OneVsRestClassifier  # pylint: disable=g-import-not-at-top
  from sklearn.pipeline import make_pipeline  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top

  x_train, y_train = features(data_config, train_split)
  x_test, y_test = features(data_config, test_split)
  model = LogisticRegression(max_iter=3000, C=0.1)
  result = {'n_train': len(x_train), 'n_test': len(x_test)}
  if y_train.ndim == 1:
    clf = make_pipeline(StandardScaler(), model).fit(x_train, y_train)
    result['accuracy'] = float((clf.predict(x_test) == y_test).mean())
    result['chance'] = float(np.bincount(y_test).max() / len(y_test))
    return result
  # Multi-label: constant classes (e.g. 'Speech' everywhere) get a constant.
  varying = y_train.min(0) != y_train.max(0)  # [K]
  scores = np.tile(y_train.mean(0), (len(x_test), 1))  # [N, K]
  clf = make_pipeline(StandardScaler(), OneVsRestClassifier(model))
  clf.fit(x_train, y_train[:, varying])
  scores[:, varying] = clf.predict_proba(x_test)
  result['mAP'] = audioset.mean_average_precision(scores, y_test)
  rng = np.random.default_rng(0)
  result['chance_mAP'] = audioset.mean_average_precision(rng.random(scores.shape), y_test)
  builder = pipeline.get_builder(data_config)
  lang = np.array([m.startswith('/x/lang_') for m in builder.info.metadata['class_mids']])
  if lang.any():
    truth = y_test[:, lang].argmax(1)
    result['accuracy'] = float((scores[:, lang].argmax(1) == truth).mean())
    result['chance'] = float(np.bincount(truth).max() / len(truth))
  return result
