#!/usr/bin/env python
"""`python scripts/make_sample_data.py ...` from a checkout: perceiver_tools/cli/make_sample_data.py
(`--help` lists its flags). Needs the package installed (`pip install -e .`)."""

from perceiver_tools.cli import make_sample_data

if __name__ == '__main__':
  make_sample_data.run()
