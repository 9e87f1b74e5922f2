#!/usr/bin/env python
"""`python scripts/make_tables.py ...` from a checkout: perceiver_tools/cli/make_tables.py
(`--help` lists its flags). Needs the package installed (`pip install -e .`)."""

from perceiver_tools.cli import make_tables

if __name__ == '__main__':
  make_tables.run()
