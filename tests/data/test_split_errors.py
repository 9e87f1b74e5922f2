"""A split string that does not fit a small copy of a dataset: a ConfigError
naming the field to set, not TFDS's 'Requested slice [...] incompatible'."""

import ml_collections
import pytest

from perceiver.train import config_checks
from perceiver.train import input_pipeline


def test_a_split_beyond_a_small_dataset_names_the_field(imagenet_config):
  config = ml_collections.ConfigDict(dict(imagenet_config, train_split='train[10000:]'))
  with pytest.raises(config_checks.ConfigError, match=r'data\.train_split=.*--config\.data\.train_split'):
    input_pipeline.num_examples(config, 'train')
  config = ml_collections.ConfigDict(imagenet_config)
  assert input_pipeline.num_examples(config, 'train') > 0
