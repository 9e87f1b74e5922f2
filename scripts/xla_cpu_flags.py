#!/usr/bin/env python
"""`python scripts/xla_cpu_flags.py ...` from a checkout: perceiver_tools/cli/xla_cpu_flags.py
(`--help` lists its flags). Needs the package installed (`pip install -e .`)."""

from perceiver_tools.cli import xla_cpu_flags

if __name__ == '__main__':
  xla_cpu_flags.run()
