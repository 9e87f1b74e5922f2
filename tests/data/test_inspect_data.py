"""scripts/inspect_data.py on tiny sample sets of each dataset."""

import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SPEC = importlib.util.spec_from_file_location(
  'inspect_data', os.path.join(REPO, 'perceiver_tools', 'cli', 'inspect_data.py')
)
inspect_data = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(inspect_data)

# Preset, manual_dir under the sample root, expected classes.
CASES = {
  'imagenet': ('configs/imagenet.py:small_data', 'imagenet', 10),
  'audioset': ('configs/audioset.py:small_data', 'audioset', 8),
  'modelnet': ('configs/modelnet40.py:small_data', 'modelnet', 10),
}


@pytest.mark.parametrize('case', list(CASES))
def test_counts_every_split_and_renders_a_grid(case, tiny_sample_dir, tmp_path):
  from perceiver_configs import audioset, imagenet, modelnet40  # pylint: disable=g-import-not-at-top

  preset, sub, num_classes = CASES[case]
  module = {'imagenet': imagenet, 'audioset': audioset, 'modelnet': modelnet40}[case]
  data = module.get_config('small_data').data
  data.manual_dir = os.path.join(tiny_sample_dir, sub)
  data.data_dir = str(tmp_path / 'records')
  lines = []
  out = str(tmp_path / 'grid.png')
  result = inspect_data.inspect(data, out, grid=4, batch_size=16, log=lines.append)
  assert len(result['classes']) == num_classes, preset
  for split, stats in result['splits'].items():
    assert stats['examples'] > 0, split
    assert stats['examples_per_s'] > 0
    # Every example's classes counted (multi-label: at least one each).
    assert sum(stats['per_class'].values()) >= stats['examples']
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with Image.open(out) as img:
    assert img.size[0] > 100 and img.size[1] > 100
  assert any('examples/s' in line for line in lines)


def test_main_takes_config_overrides_in_process_more_than_once():
  # The override reaches the config (a dataset inspect_data rejects before
  # reading anything), and a second call parses afresh.
  argv = [f'--config={REPO}/configs/imagenet.py:small_data', '--config.data.name=mnist']
  for _ in range(2):
    with pytest.raises(SystemExit, match=r"inspect_data.py: error: data.name='mnist'"):
      inspect_data.main(argv)
