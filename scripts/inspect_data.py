#!/usr/bin/env python
"""`python scripts/inspect_data.py ...` from a checkout: perceiver_tools/cli/inspect_data.py
(`--help` lists its flags). Needs the package installed (`pip install -e .`)."""

from perceiver_tools.cli import inspect_data

if __name__ == '__main__':
  inspect_data.run()
