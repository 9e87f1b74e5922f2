"""Shared pytest configuration: markers, the CI time budget, and the
default suite's XLA compile flag."""

import os
import time

import pytest

# Unix time after which no further test starts (set by .ci/run for the slow
# tests). A test that is cut off by a hard kill leaves no result line, but one
# that never starts is reported as skipped, with the reason.
STOP_AT_ENV = 'PERCEIVER_TESTS_STOP_AT'

# The default suite compiles hundreds of small programs and runs each for a
# few steps, so LLVM's optimization of XLA's CPU kernels costs it more than
# it saves (README, "Tests"); results agree to float rounding. Only there:
# the slow tests time real runs, and user runs and benchmarks keep XLA's
# default. PERCEIVER_TEST_XLA_OPT=default turns it off.
FAST_COMPILE_FLAG = '--xla_backend_optimization_level=0'


def pytest_configure(config):
  config.addinivalue_line(
    'markers', 'slow: minutes-long tests (multi-process, kill/restart, full quickstart); deselect with -m "not slow"'
  )
  # Before any test module starts a JAX backend (XLA reads its flags once);
  # subprocesses that tests start inherit it.
  if 'not slow' in (config.option.markexpr or '') and os.environ.get('PERCEIVER_TEST_XLA_OPT') != 'default':
    flags = os.environ.get('XLA_FLAGS', '')
    if 'xla_backend_optimization_level' not in flags:
      os.environ['XLA_FLAGS'] = f'{flags} {FAST_COMPILE_FLAG}'.strip()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
  """Skips a test (before its fixtures are set up) once the time budget is spent."""
  stop_at = os.environ.get(STOP_AT_ENV)
  if stop_at and time.time() > float(stop_at):
    pytest.skip(f'not started: the time budget ({STOP_AT_ENV}) is spent')
