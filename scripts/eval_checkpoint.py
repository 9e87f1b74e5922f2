#!/usr/bin/env python
"""`python scripts/eval_checkpoint.py ...` from a checkout: perceiver_tools/cli/eval_checkpoint.py
(`--help` lists its flags). Needs the package installed (`pip install -e .`)."""

from perceiver_tools.cli import eval_checkpoint

if __name__ == '__main__':
  eval_checkpoint.run()
