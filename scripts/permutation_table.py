#!/usr/bin/env python
"""`python scripts/permutation_table.py ...` from a checkout: perceiver_tools/cli/permutation_table.py
(`--help` lists its flags). Needs the package installed (`pip install -e .`)."""

from perceiver_tools.cli import permutation_table

if __name__ == '__main__':
  permutation_table.run()
