"""Fixtures of the table, plot and checkpoint-eval tests: small real runs,
the golden pickles and real sample images in the ImageNet layout."""

import os

import pytest

import tables_testlib as lib


@pytest.fixture(scope='session')
def runs(tmp_path_factory) -> lib.Runs:
  return lib.Runs(str(tmp_path_factory.mktemp('table_runs')))


@pytest.fixture(scope='session')
def golden_dir() -> str:
  if not os.path.isdir(lib.GOLDEN):
    pytest.skip(f'golden files not found at {lib.GOLDEN}')
  return lib.GOLDEN


@pytest.fixture(scope='session')
def imagenet_sample(tmp_path_factory) -> dict:
  """Real JPEGs (MNIST digits) in the ILSVRC2012 tar layout, TFDS records built once."""
  out = str(tmp_path_factory.mktemp('imagenet_sample'))
  lib.script('make_sample_data.py', '--out', out, '--what', 'imagenet', '--imagenet_per_class', '20')
  return dict(manual_dir=os.path.join(out, 'imagenet'), data_dir=str(tmp_path_factory.mktemp('imagenet_tfds')))
