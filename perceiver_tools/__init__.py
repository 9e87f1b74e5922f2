"""Tooling for scripts and tests (golden checks, tables, benchmarks); not part of the model library."""
