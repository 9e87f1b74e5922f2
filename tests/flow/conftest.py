"""Real-photo flow pairs in the Sintel / KITTI / FlyingChairs layouts.

Made in-process by perceiver_tools/flow_samples.py (what `make_sample_data.py --what
flow` runs) from the photos inside installed packages (scikit-learn,
Matplotlib) and, when installed, Debian mate-backgrounds.
"""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_flow_samples(out: str, num_pairs: int, size=(48, 64), seed=0):
  from perceiver_tools import flow_samples  # pylint: disable=g-import-not-at-top

  flow_samples.make_flow(out, num_pairs, seed, size, max_motion=4.0, log=lambda *_: None)
  return out


@pytest.fixture(scope='session')
def flow_sample_dir(tmp_path_factory) -> str:
  """5 pairs of 48 x 64 (4 train / 1 validation in the FlyingChairs list)."""
  return make_flow_samples(str(tmp_path_factory.mktemp('flow_samples')), 5)
