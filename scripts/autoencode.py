#!/usr/bin/env python
"""`python scripts/autoencode.py ...` from a checkout: perceiver_tools/cli/autoencode.py
(`--help` lists its flags). Needs the package installed (`pip install -e .`)."""

from perceiver_tools.cli import autoencode

if __name__ == '__main__':
  autoencode.run()
