"""The CI time budget hook (tests/conftest.py): .ci/run relies on it so that
no slow test starts that could not finish before CI's hard limit."""

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
