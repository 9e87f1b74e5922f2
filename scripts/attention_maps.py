#!/usr/bin/env python
"""`python scripts/attention_maps.py ...` from a checkout: perceiver_tools/cli/attention_maps.py
(`--help` lists its flags). Needs the package installed (`pip install -e .`)."""

from perceiver_tools.cli import attention_maps

if __name__ == '__main__':
  attention_maps.run()
