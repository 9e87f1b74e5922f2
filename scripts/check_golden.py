#!/usr/bin/env python
"""`python scripts/check_golden.py ...` from a checkout: perceiver_tools/cli/check_golden.py
(`--help` lists its flags). Needs the package installed (`pip install -e .`)."""

from perceiver_tools.cli import check_golden

if __name__ == '__main__':
  check_golden.run()
