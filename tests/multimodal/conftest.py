"""Kinetics-layout sample clips (scripts/make_sample_data.py --what kinetics),
generated once per session: pans and zooms over real photos with real speech.
Needs PyAV (`av`); tests that use these fixtures skip without it."""

import os

import pytest

from multimodal_testlib import REPO, make_clips


@pytest.fixture(scope='session')
def kinetics_dir(tmp_path_factory) -> str:
  """4 classes x (3 train + 1 validate) clips of 2 s at 32 x 32."""
  pytest.importorskip('av')
  return make_clips(
    str(tmp_path_factory.mktemp('kinetics_small')), '--kinetics_clips', '4,3,1', '--kinetics_size', '32'
  )


@pytest.fixture(scope='session')
def kinetics_config(kinetics_dir, tmp_path_factory) -> dict:
  return dict(
    name='kinetics',
    manual_dir=kinetics_dir,
    data_dir=str(tmp_path_factory.mktemp('kinetics_tfds')),
    num_frames=8,
    video_size=32,
  )


# Same place as tests/model's goldens: <repo>/../shared/golden.
GOLDEN = os.path.join(os.path.dirname(REPO), 'shared', 'golden', 'official', 'video_autoencoding.npz')


@pytest.fixture(scope='session')
def golden_case():
  from perceiver_tools import golden  # pylint: disable=g-import-not-at-top

  if not os.path.exists(GOLDEN):
    pytest.skip(f'golden file {GOLDEN} not found')
  case = golden.load_golden(GOLDEN)
  case.config.pop('note', None)
  return case


@pytest.fixture(scope='session')
def golden_pystate(golden_case, tmp_path_factory) -> str:
  """The golden model's parameters written as a DeepMind `.pystate` pickle
  (the released checkpoint's format), with its config beside it as JSON."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top

  spec = importlib.util.spec_from_file_location(
    '_pickle_asm', os.path.join(REPO, 'tests', 'checkpoints', '_pickle_asm.py')
  )
  asm = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(asm)
  out = tmp_path_factory.mktemp('golden_pystate')
  path = out / 'video_autoencoding_checkpoint.pystate'
  path.write_bytes(asm.pystate(golden_case.params, golden_case.state))
  (out / 'config.json').write_text(json.dumps(golden_case.config))
  return str(path)
