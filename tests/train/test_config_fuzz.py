"""Fuzzing of the launcher's config parsing (`experiments/main.py`).

Random values for every real key of a preset, and random unknown or
malformed keys, either give a config whose value checks pass, or a one-line
usage error (SystemExit / ConfigError) naming the override; never a
traceback of some other type. Derandomized: the same cases every run.
"""

import os

from absl import flags
from hypothesis import event, given, settings, strategies as st
from ml_collections import config_flags
import pytest

from perceiver_experiments import main
from perceiver.train import config_checks
from . import helpers

_CONFIG = os.path.join(helpers.REPO, 'configs', 'mnist.py') + ':smoke'


def _parse(*overrides: str):
  """main's flag parsing on fresh flags: the config, or SystemExit."""
  argv = ['main', f'--config={_CONFIG}', *overrides]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=flag_values, lock_config=True, sys_argv=argv)
  main._parse_flags(argv, flag_values)  # pylint: disable=protected-access
  return flag_values.config


def _leaf_keys(config, prefix=''):
  keys = []
  for key, value in config.items():
    path = f'{prefix}{key}'
    if hasattr(value, 'items'):
      keys += _leaf_keys(value, path + '.')
    else:
      keys.append(path)
  return keys


_KEYS = sorted(_leaf_keys(_parse()))
_TEXT = st.text(st.characters(blacklist_characters='\x00', blacklist_categories=('Cs',)), max_size=12)
_VALUES = st.one_of(
  _TEXT,
  st.integers().map(str),
  st.floats().map(repr),
  st.sampled_from(
    [
      'True',
      'false',
      'None',
      '',
      '[1, 2]',
      '(1, 2)',
      "'x'",
      '1e400',
      'nan',
      '-0',
      '0',
      '-1',
      '1' * 30,
      '{}',
      'lambda: 0',
      '__import__("os")',
    ]
  ),
)


def _usage_error(overrides, key) -> str:
  """Parses + checks; returns 'ok' or the error, which must name `key`."""
  leaf = key.split('.')[-1].split('[')[0]
  try:
    config = _parse(*overrides)
  except SystemExit as e:
    message = str(e.code)
    assert message.startswith('FATAL'), message
    named = [key] + overrides[1:]  # The key, or a stray value after it.
    assert any(t in message or repr(t)[1:-1] in message for t in named), message
    event('usage error at parsing')
    return message
  try:
    config_checks.check_config(config, 'train')
  except config_checks.ConfigError as e:
    assert leaf in str(e), (key, str(e))
    event('ConfigError')
    return str(e)
  event('accepted')
  return 'ok'


def test_real_overrides_apply():
  config = _parse('--config.train.batch_size=16', '--config.seed', '7')
  assert config.train.batch_size == 16 and config.seed == 7


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.sampled_from(_KEYS), _VALUES, st.booleans())
def test_fuzz_values_of_real_keys(key, value, spaced):
  overrides = [f'--config.{key}', value] if spaced else [f'--config.{key}={value}']
  _usage_error(overrides, key)


_SEGMENT = st.one_of(  # Of a key: '=' would end it.
  st.from_regex(r'[a-z_][a-z0-9_]{0,8}', fullmatch=True),
  _TEXT.map(lambda t: t.replace('=', '')),
  st.sampled_from(['', '0', '[0]', 'batch_size']),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
  st.one_of(
    st.lists(_SEGMENT, min_size=1, max_size=4).map('.'.join),
    st.tuples(st.sampled_from(_KEYS), _SEGMENT).map('.'.join),
    st.tuples(st.sampled_from(_KEYS), st.sampled_from(['[0]', '[x]', '.', '..', '['])).map(''.join),
  ),
  _VALUES,
)
def test_fuzz_unknown_and_malformed_keys(key, value):
  if key in _KEYS:
    return
  message = _usage_error([f'--config.{key}={value}'], key)
  assert message != 'ok', f'--config.{key}={value} was accepted'


@pytest.mark.parametrize(
  'override,match',
  [
    ('--config.optimizer.lr=0.1', "unknown config key 'lr'"),
    ('--config.train.batch_size=big', 'batch_size'),
    ('--config.train.batch_size.x=1', 'batch_size.x'),
    ('--config.train[0]=1', r'train\[0\]'),
    ('--config..=1', 'config..'),  # ValueError inside ml_collections.
    ('--config.seed.x[=1', r'seed.x\['),  # ValueError.
    ('--config.model.input.max_resolution[5]=1', 'IndexError'),
    ('--config.seed[0]=1', 'IndexError'),
    ('--config.model.input.max_resolution.x=1', 'TypeError'),
  ],
)
def test_bad_overrides_are_usage_errors(override, match):
  with pytest.raises(SystemExit, match=match) as info:
    _parse(override)
  assert str(info.value.code).startswith('FATAL')
  assert override.split('=')[0] in str(info.value.code)


def test_a_stray_value_after_a_boolean_override_is_a_usage_error():
  with pytest.raises(SystemExit, match=r"unexpected arguments \['False'\]"):
    _parse('--config.checkpoint.async_save', 'False')
