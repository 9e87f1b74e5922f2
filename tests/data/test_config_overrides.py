"""Every data field a user is told to set parses through the real launcher.

ml_collections refuses to override a None field from the command line, so a
preset that left `data.manual_dir` as None made the documented
`--config.data.manual_dir=DIR` fail before anything ran. These tests parse
the overrides with experiments/main.py's own flag parser for every preset
of every config file whose data comes from files.
"""

import glob
import importlib
import os

from absl import flags
from ml_collections import config_flags
import pytest

from perceiver.data import config as data_config

main = pytest.importorskip('perceiver_experiments.main')

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_FILES = sorted(
  os.path.basename(p)[:-3]
  for p in glob.glob(os.path.join(REPO, 'configs', '*.py'))
  if not p.endswith(('__init__.py', 'common.py'))
)

# Fields docs/data.md tells users to override, with a value of each type.
PATH_OVERRIDES = {'manual_dir': '/my/manual', 'data_dir': '/my/records'}
DOC_OVERRIDES = {
  'imagenet2012': {
    'class_list': '/my/classes.txt',
    'validation_labels': '/my/val.txt',
    'num_classes': 10,
    'train_split': 'train[10%:]',
    'valid_split': 'train[:10%]',
    'on_corrupt': 'skip',
    'repeat': 1,
    'drop_remainder': 0,
  },
  'audioset': {'num_classes': 5, 'train_split': 'balanced_train', 'on_corrupt': 'skip'},
  'modelnet40': {'num_classes': 6, 'source': 'hdf5', 'on_corrupt': 'skip'},
  'kinetics': {'num_classes': 4, 'on_corrupt': 'skip'},
}


def _presets():
  for name in CONFIG_FILES:
    module = importlib.import_module(f'perceiver_configs.{name}')
    for preset in sorted(module.PRESETS):
      yield name, preset


ALL_PRESETS = list(_presets())


def _parse(argv):
  """experiments/main.py's parser on fresh flags defined as main defines them.

  (ml_collections registers the `--config.x` override flags from the argv
  it is given at definition, so each parse needs its own FlagValues.)
  """
  argv = ['main.py'] + argv
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=flag_values, lock_config=True, sys_argv=argv)
  flags.DEFINE_string('workdir', None, '', flag_values=flag_values)
  flags.DEFINE_enum('mode', 'train_and_eval', ['train', 'eval', 'train_and_eval'], '', flag_values=flag_values)
  main._parse_flags(argv, flag_values)  # pylint: disable=protected-access
  return flag_values.config


@pytest.mark.parametrize('file,preset', ALL_PRESETS)
def test_no_data_field_is_none(file, preset):
  module = importlib.import_module(f'perceiver_configs.{file}')
  config = module.get_config(preset)
  nones = [k for k, v in config.data.items() if v is None]
  assert not nones, f'configs/{file}.py:{preset} data fields {nones} are None'


FILE_PRESETS = [
  (f, p)
  for f, p in ALL_PRESETS
  if importlib.import_module(f'perceiver_configs.{f}').get_config(p).data.name in data_config.NAMES
]


def test_every_dataset_has_a_file_preset():
  names = {importlib.import_module(f'perceiver_configs.{f}').get_config(p).data.name for f, p in FILE_PRESETS}
  assert names == set(data_config.NAMES)


@pytest.mark.parametrize('file,preset', FILE_PRESETS)
def test_data_paths_override_through_the_launcher(file, preset, tmp_path):
  config = importlib.import_module(f'perceiver_configs.{file}').get_config(preset)
  overrides = dict(PATH_OVERRIDES, **DOC_OVERRIDES[config.data.name])
  argv = [f'--config=configs/{file}.py:{preset}', f'--workdir={tmp_path}', '--mode=train']
  argv += [f'--config.data.{k}={v}' for k, v in overrides.items()]
  cwd = os.getcwd()
  os.chdir(REPO)
  try:
    parsed = _parse(argv)
  finally:
    os.chdir(cwd)
  for key, value in overrides.items():
    assert parsed.data[key] == value, key
  # The library reads the parsed section unchanged.
  resolved = data_config.resolve_config(parsed.data)
  assert resolved.manual_dir == '/my/manual'
  assert resolved.data_dir == '/my/records'


def test_none_from_python_still_means_default():
  resolved = data_config.resolve_config(
    dict(name='modelnet40', manual_dir=None, data_dir=None, num_classes=None, repeat=None)
  )
  assert resolved.manual_dir == '' and resolved.data_dir == ''
  assert resolved.num_classes == 0 and resolved.repeat is None
  assert data_config.resolve_config(dict(name='modelnet40', repeat=False)).repeat is False
  assert data_config.resolve_config(dict(name='modelnet40', repeat=0)).repeat is False


def test_a_tilde_in_a_path_override_is_the_home_directory():
  # bash leaves `--config.data.data_dir=~/tfds` unexpanded.
  resolved = data_config.resolve_config(dict(name='imagenet2012', data_dir='~/tfds', class_list='~/c.txt'))
  assert resolved.data_dir == os.path.join(os.path.expanduser('~'), 'tfds')
  assert not resolved.class_list.startswith('~')
