"""Fixtures for the checkpoint-format tests."""

import os
import pathlib
import sys

import pytest

_REPO = pathlib.Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # plain `pytest` from a source checkout
  sys.path.insert(0, str(_REPO))

GOLDEN_DIR = pathlib.Path(os.environ.get('PERCEIVER_GOLDEN_DIR', _REPO.parent / 'shared' / 'golden'))


@pytest.fixture
def golden_dir() -> pathlib.Path:
  if not GOLDEN_DIR.exists():
    pytest.skip(f'golden files not found at {GOLDEN_DIR}')
  return GOLDEN_DIR
