"""Shared pytest configuration: markers."""


def pytest_configure(config):
  config.addinivalue_line(
    'markers', 'slow: minutes-long tests (multi-process, kill/restart, full quickstart); deselect with -m "not slow"'
  )
