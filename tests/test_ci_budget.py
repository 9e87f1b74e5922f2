"""The CI time budget hook (tests/conftest.py): .ci/run relies on it so that
no slow test starts that could not finish before CI's hard limit; and the
default suite's XLA flag, set there too."""

import importlib.util
import os
import time

import pytest

# By path: other test folders have a conftest.py too, so `import conftest`
# can name any of them.
_SPEC = importlib.util.spec_from_file_location(
  'tests_root_conftest', os.path.join(os.path.dirname(__file__), 'conftest.py')
)
conftest = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(conftest)


def test_no_test_starts_once_the_budget_is_spent(monkeypatch):
  monkeypatch.setenv(conftest.STOP_AT_ENV, str(time.time() - 1))
  with pytest.raises(pytest.skip.Exception, match='not started'):
    conftest.pytest_runtest_setup(item=None)


def test_tests_start_while_budget_is_left_or_unset(monkeypatch):
  monkeypatch.setenv(conftest.STOP_AT_ENV, str(time.time() + 3600))
  conftest.pytest_runtest_setup(item=None)
  monkeypatch.delenv(conftest.STOP_AT_ENV)
  conftest.pytest_runtest_setup(item=None)


class _Config:
  def __init__(self, markexpr):
    self.option = type('Option', (), {'markexpr': markexpr})()

  def addinivalue_line(self, *_):
    pass


@pytest.mark.parametrize(
  'markexpr,opt,expected',
  [
    ('not slow', None, '--xla_force_host_platform_device_count=2 ' + conftest.FAST_COMPILE_FLAG),
    ('slow', None, '--xla_force_host_platform_device_count=2'),
    ('', None, '--xla_force_host_platform_device_count=2'),
    ('not slow', 'default', '--xla_force_host_platform_device_count=2'),
  ],
)
def test_only_the_default_suite_compiles_without_llvm_optimization(monkeypatch, markexpr, opt, expected):
  # The slow tests time real runs: they must get XLA's default. Flags already
  # set are kept.
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
  if opt is None:
    monkeypatch.delenv('PERCEIVER_TEST_XLA_OPT', raising=False)
  else:
    monkeypatch.setenv('PERCEIVER_TEST_XLA_OPT', opt)
  conftest.pytest_configure(_Config(markexpr))
  assert os.environ['XLA_FLAGS'] == expected
