"""Fixtures for the checkpoint-format tests."""

import os
import pathlib

import pytest

_REPO = pathlib.Path(__file__).resolve().parents[2]

GOLDEN_DIR = pathlib.Path(os.environ.get('PERCEIVER_GOLDEN_DIR', _REPO.parent / 'shared' / 'golden'))


@pytest.fixture
def golden_dir() -> pathlib.Path:
  if not GOLDEN_DIR.exists():
    pytest.skip(f'golden files not found at {GOLDEN_DIR}')
  return GOLDEN_DIR
