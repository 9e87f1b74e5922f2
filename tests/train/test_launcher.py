"""The launcher's command-line errors (experiments/main.py), with absl's and
ml_collections' real flag parser: one line naming what to fix."""

import os
import subprocess
import sys
import textwrap

from absl import flags
from ml_collections import config_flags
import pytest

from perceiver_experiments import main
from . import helpers

_IMAGENET = os.path.join(helpers.REPO, 'configs', 'imagenet.py')


def _parse(config: str, *overrides: str):
  argv = ['main', f'--config={config}', '--workdir=/tmp/unused', *overrides]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=flag_values, lock_config=True, sys_argv=argv)
  flags.DEFINE_string('workdir', None, '', flag_values=flag_values)
  main._parse_flags(argv, flag_values)  # pylint: disable=protected-access
  return flag_values.config


def _fatal(config: str, *overrides: str) -> str:
  with pytest.raises(SystemExit) as info:
    _parse(config, *overrides)
  message = str(info.value.code)
  assert message.startswith('FATAL') and '\n' not in message, message
  return message


def _one_fatal_line(proc) -> str:
  """The FATAL line of a run that stopped with exit 1, exactly one such line and no traceback."""
  assert proc.returncode == 1, proc.stderr[-3000:]
  fatal = [line for line in proc.stderr.splitlines() if line.startswith('FATAL')]
  assert len(fatal) == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  return fatal[0]


def test_a_tuple_override_replaces_the_default():
  assert _parse(_IMAGENET).data.crop_area_range == (0.08, 1.0)
  assert _parse(_IMAGENET, '--config.data.crop_area_range=0.35,1.0').data.crop_area_range == (0.35, 1.0)


@pytest.mark.parametrize(
  'overrides',
  [
    ('--config.data.crop_area_range=0.35,1.0', '--config.data.crop_area_range=0.35,1.0'),
    ('--config.data.crop_area_range', '0.35', '--config.data.crop_area_range', '1.0'),
    ('--config.train.batch_size=8', '--config.train.batch_size=16'),
  ],
)
def test_a_repeated_override_is_an_error_not_a_longer_tuple(overrides):
  # Without the check, ml_collections' MultiFlag would give (0.35, 1.0, 0.35, 1.0).
  message = _fatal(_IMAGENET, *overrides)
  assert 'more than once' in message and overrides[0].split('=')[0] in message


def test_an_unknown_preset_is_one_line_naming_the_choices():
  message = _fatal(os.path.join(helpers.REPO, 'configs', 'mnist.py') + ':nope')
  assert "unknown preset 'nope'" in message and 'quickstart' in message


def test_a_missing_config_file_is_one_line_naming_it(tmp_path):
  message = _fatal(str(tmp_path / 'mnst.py') + ':quickstart')
  assert 'no config file' in message and 'mnst.py' in message


def test_a_typo_is_rejected_before_tensorflow_or_jax_is_imported():
  code = textwrap.dedent("""
      import sys
      from experiments import main
      sys.argv = ['main', '--config=configs/mnist.py:quickstart', '--workdir=/tmp/unused',
                  '--config.train.batchsiz=3']
      try:
        main._parse_flags(sys.argv)
      except SystemExit as e:
        print('error:', e.code)
      print('imported:', sorted(m for m in ('tensorflow', 'jax') if m in sys.modules))
  """)
  proc = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, cwd=helpers.REPO, timeout=120, check=False
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "unknown config key 'batchsiz'" in proc.stdout
  assert 'imported: []' in proc.stdout


def test_a_bad_config_value_is_rejected_before_tensorflow_is_imported(tmp_path):
  # The config's checks run before TensorFlow's import (seconds on a small
  # machine), so a wrong value is reported at once, not after it.
  workdir = tmp_path / 'run'
  code = textwrap.dedent(f"""
      import runpy, sys
      sys.argv = ['main', '--config=configs/mnist.py:smoke', '--workdir={workdir}',
                  '--config.optimizer.name=sgd']
      try:
        runpy.run_module('experiments.main', run_name='__main__')
      except SystemExit as e:
        print('exit:', e.code)
      print('tensorflow imported:', 'tensorflow' in sys.modules)
  """)
  proc = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, cwd=helpers.REPO, timeout=120, check=False
  )
  assert "invalid config: optimizer.name='sgd'" in proc.stderr, proc.stderr[-2000:]
  assert 'exit: 1' in proc.stdout and 'tensorflow imported: False' in proc.stdout, proc.stdout
  assert not workdir.exists()


def test_missing_data_is_one_line_naming_the_directory_and_the_flag(tmp_path):
  nowhere = tmp_path / 'nowhere'
  proc = helpers.run_main(
    'configs/imagenet.py:paper',
    str(tmp_path / 'workdir'),
    f'--config.data.manual_dir={nowhere}',
    f'--config.data.data_dir={tmp_path / "tfds"}',
    timeout=300,
  )
  fatal = _one_fatal_line(proc)
  assert f"searched ['{nowhere}']" in fatal and '--config.data.manual_dir=DIR to where it is' in fatal
  # Start-up noise is gone; one line names the backend.
  assert 'oneDNN' not in proc.stderr and 'Unable to initialize backend' not in proc.stderr
  assert 'JAX backend cpu' in proc.stderr


def test_missing_text_names_the_files_field_not_manual_dir(tmp_path):
  # The text source reads data.train_files, not a manual-download directory:
  # the one line must send the user to that field (and the sample-data tool).
  nowhere = tmp_path / 'nowhere'
  proc = helpers.run_main(
    'configs/language.py:smoke',
    str(tmp_path / 'workdir'),
    f'--config.data.train_files={nowhere}/*.txt',
    f'--config.data.eval_files={nowhere}/valid.txt',
    timeout=300,
  )
  fatal = _one_fatal_line(proc)
  assert '--config.data.train_files=GLOB' in fatal and 'manual_dir' not in fatal
  assert 'make_sample_data.py' in fatal
  assert not (tmp_path / 'workdir' / 'checkpoints').exists()


def test_an_init_from_that_does_not_fit_is_one_line_naming_the_flag(tmp_path):
  # A masked LM saved with the byte n-gram layer, loaded into the same preset
  # without it: one line naming the flag and the extra modules, no traceback.
  import jax
  import numpy as np
  from perceiver import language
  from perceiver.checkpoints import npz_format
  from perceiver_configs import language as language_configs

  text = tmp_path / 'text'
  text.mkdir()
  for split in ('train', 'valid'):
    (text / f'{split}.txt').write_text('the cat sat on the mat and the dog ran to the park\n' * 40)
  model = language_configs.smoke().model.to_dict()
  assert model['byte_conv']['kernel_size'] > 0
  inputs = dict(tokens=np.full((1, 32), 40, np.int32), input_mask=np.ones((1, 32), np.int32))
  params, state = language.build_masked_lm(model).init(jax.random.PRNGKey(0), inputs, is_training=False)
  npz_format.save_checkpoint(tmp_path / 'mlm.npz', params, state, None)
  proc = helpers.run_main(
    'configs/language.py:smoke',
    str(tmp_path / 'workdir'),
    f'--config.data.train_files={text}/train.txt',
    f'--config.data.eval_files={text}/valid.txt',
    f'--config.init_from={tmp_path}/mlm.npz',
    '--config.model.byte_conv.kernel_size=0',
    timeout=300,
  )
  fatal = _one_fatal_line(proc)
  assert fatal.startswith('FATAL --config.init_from: ') and 'byte_ngrams' in fatal, fatal


@pytest.mark.parametrize(
  'argv, applied',
  [
    (['main.py', '--config=c.py'], True),
    (['main.py', '--host_memory=reuse'], True),
    (['main.py', '--host_memory=system'], False),
    (['main.py', '--host_memory', 'system'], False),
    (['main.py', '--workdir', 'system'], True),
    (['main.py', '--host_memory=system', '--host_memory=reuse'], True),
    (['main.py', '--', '--host_memory=system'], True),
  ],
)
def test_host_memory_flag_is_read_before_flag_parsing(monkeypatch, argv, applied):
  from perceiver import host_memory  # pylint: disable=g-import-not-at-top

  calls = []
  monkeypatch.setattr(host_memory, 'reuse_freed_memory', lambda: calls.append(1) or True)
  main._host_memory(argv)  # pylint: disable=protected-access
  assert bool(calls) == applied


@pytest.mark.parametrize(
  'argv, quiet',
  [
    (['main.py'], True),
    (['main.py', '--verbose_startup'], False),
    (['main.py', '--verbose_startup=true'], False),
    (['main.py', '--verbose_startup=True'], False),
    (['main.py', '--verbose_startup=false'], True),
    (['main.py', '--verbose_startup', '--noverbose_startup'], True),
    (['main.py', '--workdir', '--verbose_startup'], False),
  ],
)
def test_verbose_startup_is_read_before_flag_parsing(monkeypatch, argv, quiet):
  monkeypatch.delenv('TF_CPP_MIN_LOG_LEVEL', raising=False)
  main._quiet_startup(argv)  # pylint: disable=protected-access
  assert (os.environ.get('TF_CPP_MIN_LOG_LEVEL') == '2') == quiet


def test_compilation_cache_is_filled_once_and_then_only_read(tmp_path):
  """--compilation_cache: the first run writes its compiled steps, a second
  run of the same config loads every one of them (writes nothing new) and
  trains to the same numbers."""
  cache = tmp_path / 'cache'
  config = os.path.join(helpers.REPO, 'configs', 'mnist.py') + ':smoke'
  runs = []
  for name in ('a', 'b'):
    proc = helpers.run_main(config, str(tmp_path / name), f'--compilation_cache={cache}', mode='train')
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs.append(sorted(p.name for p in cache.iterdir()))
  assert runs[0], 'nothing was cached'
  assert runs[1] == runs[0]
  losses = [[r['loss'] for r in helpers.read_metrics(str(tmp_path / n))] for n in ('a', 'b')]
  assert losses[0] == losses[1]


def test_compilation_cache_defaults_to_the_workdir_and_off_sets_none(tmp_path, monkeypatch):
  # What the flag's values resolve to, without two more launcher runs (the
  # runs above show that a directory set this way is filled and read).
  import jax  # pylint: disable=g-import-not-at-top

  assert main._COMPILATION_CACHE.default == 'workdir'  # pylint: disable=protected-access
  updates = []
  monkeypatch.setattr(jax.config, 'update', lambda name, value: updates.append((name, value)))
  main._compilation_cache('off', str(tmp_path))  # pylint: disable=protected-access
  assert updates == []
  main._compilation_cache('workdir', str(tmp_path))  # pylint: disable=protected-access
  # Every program is cached, however fast it compiled (JAX's default
  # threshold, one second, made the test above depend on the box's load).
  assert updates == [
    ('jax_compilation_cache_dir', os.path.join(str(tmp_path), 'compilation_cache')),
    ('jax_persistent_cache_min_compile_time_secs', 0.0),
  ]
  updates.clear()
  main._compilation_cache('~/c', str(tmp_path))  # pylint: disable=protected-access
  assert updates[0] == ('jax_compilation_cache_dir', os.path.expanduser('~/c'))
