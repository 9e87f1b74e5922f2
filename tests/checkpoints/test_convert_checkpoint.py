"""scripts/convert_checkpoint.py end to end."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from perceiver.checkpoints import published_config, read_checkpoint

from perceiver_tools.cli import convert_checkpoint as convert

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / 'scripts' / 'convert_checkpoint.py'


def _golden_config(golden_dir, tmp_path, name):
  path = tmp_path / f'{name}.json'
  path.write_text(str(np.load(golden_dir / 'official' / f'{name}.npz')['__config__']))
  return path


def test_pystate_with_config_json_equals_the_golden(golden_dir, tmp_path):
  name = 'imagenet_conv_preprocessing'
  out = tmp_path / 'out.npz'
  rc = convert.main(
    [
      str(golden_dir / 'official' / 'pickles' / f'{name}.pystate'),
      str(out),
      '--config_json',
      str(_golden_config(golden_dir, tmp_path, name)),
    ]
  )
  assert rc == 0
  got = np.load(out)
  ref = np.load(golden_dir / 'official' / f'{name}.npz')
  want = [k for k in ref.files if k.startswith(('params::', 'state::'))]
  assert sorted(k for k in got.files if k != '__config__') == sorted(want)
  for key in want:
    assert got[key].dtype == ref[key].dtype and got[key].tobytes() == ref[key].tobytes(), key
  assert json.loads(str(got['__config__'])) == json.loads(str(ref['__config__']))


def test_preset_is_written_as_the_config(golden_dir, tmp_path):
  out = tmp_path / 'lm.npz'
  assert (
    convert.main(
      [
        str(golden_dir / 'official' / 'pickles' / 'language_masked_lm.pickle'),
        str(out),
        '--format',
        'pickle',
        '--preset',
        'language_masked_lm',
      ]
    )
    == 0
  )
  assert read_checkpoint(out)[2] == published_config('language_masked_lm')


def test_hf_weights_carry_their_config(golden_dir, tmp_path):
  out = tmp_path / 'hf.npz'
  assert convert.main([str(golden_dir / 'hf' / 'vision_perceiver_learned.npz'), str(out)]) == 0
  params, state, config = read_checkpoint(out)
  assert config['source']['hf_class'] == 'PerceiverForImageClassificationLearned'
  assert params['image_preprocessor/~/conv2_d']['w'].shape == (1, 1, 3, 256) and state == {}


@pytest.mark.parametrize(
  'make, extra, message',
  [
    (None, [], 'no such checkpoint file'),
    (b'hello world', [], 'unknown checkpoint format'),
    ('cut', ['--preset', 'language_masked_lm'], 'truncated'),
    ('pickle', [], 'carries no model config; pass --config_json or --preset'),
    ('pickle', ['--format', 'hf-torch'], "asked to read it as 'hf-torch', but the file is 'pickle'"),
    (b'PK\x03\x04 not really a zip', ['--format', 'hf-torch'], 'corrupt or truncated torch zip'),
    ('pickle', ['--config_json', 'absent.json'], 'absent.json: no such'),
  ],
)
def test_errors(golden_dir, tmp_path, capsys, make, extra, message):
  path = tmp_path / 'in.pickle'
  pickle_bytes = (golden_dir / 'official' / 'pickles' / 'language_masked_lm.pickle').read_bytes()
  if make == 'cut':
    path.write_bytes(pickle_bytes[: len(pickle_bytes) // 2])
  elif make == 'pickle':
    path.write_bytes(pickle_bytes)
  elif make is not None:
    path.write_bytes(make)
  extra = [str(tmp_path / e) if e.endswith('.json') else e for e in extra]
  assert convert.main([str(path), str(tmp_path / 'out.npz')] + extra) == 1
  assert message in capsys.readouterr().err
  assert not (tmp_path / 'out.npz').exists()


def test_command_line(golden_dir, tmp_path):
  out = tmp_path / 'cli.npz'
  result = subprocess.run(
    [
      sys.executable,
      str(SCRIPT),
      str(golden_dir / 'official' / 'pickles' / 'imagenet_fourier_position_encoding.pystate'),
      str(out),
      '--config_json',
      str(_golden_config(golden_dir, tmp_path, 'imagenet_fourier_position_encoding')),
    ],
    capture_output=True,
    text=True,
    check=False,
    cwd=tmp_path,
  )
  assert result.returncode == 0, result.stderr
  assert '(pystate) ->' in result.stdout and out.exists()
