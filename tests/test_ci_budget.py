"""The CI time budget hook (tests/conftest.py): .ci/run relies on it so that
no slow test starts that could not finish before CI's hard limit."""

import time

import pytest

import conftest


def test_no_test_starts_once_the_budget_is_spent(monkeypatch):
  monkeypatch.setenv(conftest.STOP_AT_ENV, str(time.time() - 1))
  with pytest.raises(pytest.skip.Exception, match='not started'):
    conftest.pytest_runtest_setup(item=None)


def test_tests_start_while_budget_is_left_or_unset(monkeypatch):
  monkeypatch.setenv(conftest.STOP_AT_ENV, str(time.time() + 3600))
  conftest.pytest_runtest_setup(item=None)
  monkeypatch.delenv(conftest.STOP_AT_ENV)
  conftest.pytest_runtest_setup(item=None)
