"""docs/data.md's commands, run as written (paths moved into tmp_path).

Blocks marked `<!-- tested: NAME -->` are executed here; the `sample`
block's training commands (minutes each) run in the slow
test_perceiver_training.py, which parses them from the same block.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(REPO, 'docs', 'data.md')
# A few examples per class (also tests/data/conftest.py's tiny sample set):
# tests that read every example must stay fast.
TINY_ARGS = [
  '--imagenet_per_class',
  '15',
  '--audioset_per_language',
  '4',
  '--modelnet_off',
  '2,1',
  '--modelnet_h5',
  '6,2',
  '--no_video',
]


def doc_block(name: str) -> str:
  """The fenced block after `<!-- tested: name -->` in docs/data.md."""
  with open(DOC) as f:
    text = f.read()
  match = re.search(rf'<!-- tested: {name} -->\n```bash\n(.*?)```', text, re.S)
  assert match, f'docs/data.md has no tested block {name!r}'
  return match.group(1)


def doc_commands(name: str) -> list[str]:
  """The block's commands, backslash continuations joined."""
  return [c.strip() for c in doc_block(name).replace('\\\n', ' ').split('\n') if c.strip()]


def relocate(text: str, tmp: str) -> str:
  """/tmp/<name> -> <tmp>/<name> for the docs' example paths."""
  return re.sub(r'/tmp/(my_|perceiver_|small_)', lambda m: f'{tmp}/{m[1]}', text)


def run(command: str, cwd: str, timeout: int = 900) -> str:
  env = dict(os.environ, PYTHONPATH=REPO)
  # The docs write `python`: this interpreter.
  command = re.sub(r'^python ', f'{sys.executable} ', command, flags=re.M)
  proc = subprocess.run(
    ['bash', '-euo', 'pipefail', '-c', command],
    cwd=cwd,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )
  assert proc.returncode == 0, (command, proc.stdout[-2000:], proc.stderr[-4000:])
  return proc.stdout + proc.stderr


def _write_own_images(root: str) -> None:
  """my_images/train/<class>/*.jpg|png, my_images/val/*, my_images/val.txt."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  classes = ['bright', 'dark', 'noisy']

  def image(k):
    base = {0: 220, 1: 30, 2: 128}[k]
    spread = 100 if k == 2 else 10
    return Image.fromarray(np.clip(rng.normal(base, spread, (20, 20, 3)), 0, 255).astype(np.uint8))

  for k, cls in enumerate(classes):
    os.makedirs(os.path.join(root, 'train', cls))
    for i in range(10):
      ext = 'png' if i == 0 else 'jpg'  # Converted while building.
      image(k).save(os.path.join(root, 'train', cls, f'{cls}{i}.{ext}'))
  os.makedirs(os.path.join(root, 'val'))
  with open(os.path.join(root, 'val.txt'), 'w') as f:
    for i in range(6):
      image(i % 3).save(os.path.join(root, 'val', f'v{i}.jpg'))
      f.write(f'v{i}.jpg {classes[i % 3]}\n')


def test_own_images_layout_and_training(tmp_path):
  tmp = str(tmp_path)
  _write_own_images(os.path.join(tmp, 'my_images'))
  run(relocate(doc_block('own_images'), tmp), cwd=tmp)
  with open(os.path.join(tmp, 'my_imagenet', 'classes.txt')) as f:
    assert f.read().split() == ['bright', 'dark', 'noisy']
  (train,) = doc_commands('own_images_train')
  # The docs' command, shortened to 2 steps on these 30 images.
  out = run(
    relocate(train, tmp) + ' --config.train.num_steps=2 --config.train.batch_size=8 --config.eval.batch_size=8', REPO
  )
  assert 'converted' in out  # The PNGs, summarised at WARNING.
  with open(os.path.join(tmp, 'my_run', 'metrics.jsonl')) as f:
    evals = [m for m in map(json.loads, f) if m.get('split') != 'train']
  assert evals and evals[-1]['num_examples'] == 6


def test_sample_data_and_inspect_commands(tmp_path):
  tmp = str(tmp_path)
  make, inspect = doc_commands('sample')[:2]
  assert 'make_sample_data.py' in make and 'inspect_data.py' in inspect
  run(relocate(make, tmp) + ' ' + ' '.join(TINY_ARGS), REPO)
  out = run(relocate(inspect, tmp), REPO)
  assert 'examples/s' in out and 'test (validation)' in out
  assert os.path.getsize(os.path.join(tmp, 'perceiver_grid.png')) > 1000
