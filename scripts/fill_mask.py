#!/usr/bin/env python
"""`python scripts/fill_mask.py ...` from a checkout: perceiver_tools/cli/fill_mask.py
(`--help` lists its flags). Needs the package installed (`pip install -e .`)."""

from perceiver_tools.cli import fill_mask

if __name__ == '__main__':
  fill_mask.run()
