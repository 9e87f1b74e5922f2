"""The README's Python snippets and the library tour run as written."""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python_blocks():
  with open(os.path.join(REPO, 'README.md')) as f:
    text = f.read()
  return re.findall(r'^```python\n(.*?)^```$', text, flags=re.S | re.M)


BLOCKS = _python_blocks()


def test_the_readme_has_the_library_snippets():
  assert len(BLOCKS) >= 3
  seed = BLOCKS[0]
  assert 'perceiver.image_classifier(' in seed
  assert len(seed.strip().splitlines()) <= 5  # the seed snippet's model in <= 5 lines


@pytest.mark.parametrize('index', range(len(BLOCKS)))
def test_readme_python_block_runs(index):
  code = BLOCKS[index]
  for module in re.findall(r'^import (\w+)|^from (\w+)', code, flags=re.M):
    name = module[0] or module[1]
    if importlib.util.find_spec(name) is None:
      pytest.skip(f'{name} is not installed (the README says how to install it)')
  namespace = {}
  exec(compile(code, f'README.md python block {index}', 'exec'), namespace)  # pylint: disable=exec-used
  if index == 0:
    assert namespace['logits'].shape == (1, 1000)


def test_library_tour_runs(tmp_path):
  pytest.importorskip('matplotlib')
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
  proc = subprocess.run(
    [sys.executable, 'examples/library_tour.py', '--workdir', str(tmp_path), '--preset', 'smoke'],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=1200,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  runner = float(re.search(r'runner top-1 ([\d.]+)', proc.stdout).group(1))
  loaded = float(re.search(r'load_pretrained\(params.npz\): top-1 ([\d.]+)', proc.stdout).group(1))
  assert loaded == pytest.approx(runner, abs=1e-4), lines
  assert os.path.getsize(tmp_path / 'attention_maps.png') > 1000
