#!/usr/bin/env python
"""`python scripts/plot_curves.py ...` from a checkout: perceiver_tools/cli/plot_curves.py
(`--help` lists its flags). Needs the package installed (`pip install -e .`)."""

from perceiver_tools.cli import plot_curves

if __name__ == '__main__':
  plot_curves.run()
