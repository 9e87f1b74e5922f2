#!/usr/bin/env python
"""`python scripts/convert_checkpoint.py ...` from a checkout: perceiver_tools/cli/convert_checkpoint.py
(`--help` lists its flags). Needs the package installed (`pip install -e .`)."""

from perceiver_tools.cli import convert_checkpoint

if __name__ == '__main__':
  convert_checkpoint.run()
