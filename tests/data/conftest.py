"""Real sample data for the pipeline tests, generated once per session.

scripts/make_sample_data.py writes MNIST digits, Asterisk voice prompts and
CGAL meshes into the public ImageNet / AudioSet / ModelNet40 layouts; the
tests then run the production builders and pipelines on them. The sources
are installed by scripts/install_sample_sources.sh (called by
scripts/test.sh, the README's test command); if one is missing the fixture
fails with the script's message naming it.
"""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Small enough for a few minutes on 2 cores, large enough for the linear
# baselines to be meaningful.
SAMPLE_ARGS = [
  '--imagenet_per_class',
  '150',
  '--audioset_per_language',
  '12',
  '--modelnet_off',
  '3,1',
  '--modelnet_h5',
  '80,10',
]


def _make_sample_data(out: str, args) -> str:
  proc = subprocess.run(
    [sys.executable, os.path.join(REPO, 'scripts', 'make_sample_data.py'), '--out', out] + list(args),
    capture_output=True,
    text=True,
    check=False,
  )
  if proc.returncode != 0:
    pytest.fail(f'make_sample_data.py failed:\n{proc.stderr[-3000:]}')
  return out


@pytest.fixture(scope='session')
def sample_dir(tmp_path_factory) -> str:
  return _make_sample_data(str(tmp_path_factory.mktemp('sample_data')), SAMPLE_ARGS)


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory) -> str:
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture(scope='session')
def imagenet_config(sample_dir, tfds_dir) -> dict:
  # 1,350 training images: hold out 100 (the reference holds out 10,000).
  return dict(
    name='imagenet2012',
    manual_dir=f'{sample_dir}/imagenet',
    data_dir=tfds_dir,
    train_split='train[100:]',
    valid_split='train[:100]',
  )


@pytest.fixture(scope='session')
def audioset_config(sample_dir, tfds_dir) -> dict:
  return dict(name='audioset', manual_dir=f'{sample_dir}/audioset', data_dir=tfds_dir)


@pytest.fixture(scope='session')
def modelnet_config(sample_dir, tfds_dir) -> dict:
  return dict(name='modelnet40', manual_dir=f'{sample_dir}/modelnet', data_dir=tfds_dir)


# A few examples per class, for tests that read every example (inspect_data,
# the docs' commands): the sizes the docs test uses.
from test_docs_data import TINY_ARGS  # noqa: E402  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope='session')
def tiny_sample_dir(tmp_path_factory) -> str:
  return _make_sample_data(str(tmp_path_factory.mktemp('tiny_sample')), TINY_ARGS)
