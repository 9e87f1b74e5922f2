"""Helpers shared by the multimodal tests."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_clips(out: str, *args: str) -> str:
  proc = subprocess.run(
    [sys.executable, os.path.join(REPO, 'scripts', 'make_sample_data.py'), '--out', out, '--what', 'kinetics', *args],
    capture_output=True,
    text=True,
    check=False,
  )
  if proc.returncode != 0:
    pytest.fail(f'make_sample_data.py failed:\n{proc.stderr[-3000:]}')
  return os.path.join(out, 'kinetics')
