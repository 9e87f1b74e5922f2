"""ruff (configured in pyproject.toml): lint and formatting pass on the whole tree."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ruff_passes():
  ruff = pytest.importorskip('ruff')
  binary = ruff.find_ruff_bin() if hasattr(ruff, 'find_ruff_bin') else None
  command = [binary] if binary else [sys.executable, '-m', 'ruff']
  for args in (['check', '--no-cache', '.'], ['format', '--check', '--no-cache', '.']):
    proc = subprocess.run(command + args, capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert proc.returncode == 0, (args, proc.stdout[-4000:] + proc.stderr[-2000:])
