#!/usr/bin/env python
"""`python scripts/flow.py ...` from a checkout: perceiver_tools/cli/flow.py
(`--help` lists its flags). Needs the package installed (`pip install -e .`)."""

from perceiver_tools.cli import flow

if __name__ == '__main__':
  flow.run()
