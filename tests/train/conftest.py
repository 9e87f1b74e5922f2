"""Fixtures of the experiment-runner tests."""

import pytest


@pytest.fixture(scope='session', autouse=True)
def _compilation_cache(tmp_path_factory):
  """Runs in this process compile the same small programs again and again
  (a fresh jit per run); a per-session persistent cache compiles them once."""
  import jax  # pylint: disable=g-import-not-at-top

  jax.config.update('jax_compilation_cache_dir', str(tmp_path_factory.mktemp('jax_cache')))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  yield
