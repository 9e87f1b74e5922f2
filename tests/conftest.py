"""Shared pytest configuration: markers, and the CI time budget."""

import os
import time

import pytest

# Unix time after which no further test starts (set by .ci/run for the slow
# tests). A test that is cut off by a hard kill leaves no result line, but one
# that never starts is reported as skipped, with the reason.
STOP_AT_ENV = 'PERCEIVER_TESTS_STOP_AT'


def pytest_configure(config):
  config.addinivalue_line(
    'markers', 'slow: minutes-long tests (multi-process, kill/restart, full quickstart); deselect with -m "not slow"'
  )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
  """Skips a test (before its fixtures are set up) once the time budget is spent."""
  stop_at = os.environ.get(STOP_AT_ENV)
  if stop_at and time.time() > float(stop_at):
    pytest.skip(f'not started: the time budget ({STOP_AT_ENV}) is spent')
