#!/usr/bin/env python
"""`python scripts/peer_bench.py ...` from a checkout: perceiver_tools/cli/peer_bench.py
(`--help` lists its flags). Needs the package installed (`pip install -e .`)."""

from perceiver_tools.cli import peer_bench

if __name__ == '__main__':
  peer_bench.run()
