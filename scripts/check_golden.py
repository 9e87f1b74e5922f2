#!/usr/bin/env python
"""Checks our models against golden reference outputs.

    python scripts/check_golden.py ../shared/golden/official/*.npz

For each file: build the model its `__config__` describes, load its params
and state, run its inputs and print
`NAME max_abs_err=... max_rel_err=... OK|FAIL`. Exits 1 if any file fails
(OK: max abs err <= 1e-4 and max rel err <= 1e-3) or cannot be checked.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from perceiver_tools import golden  # pylint: disable=wrong-import-position


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('files', nargs='+', metavar='FILE.npz', help='golden files')
  args = parser.parse_args(argv)
  failed = 0
  for path in args.files:
    try:
      name, abs_err, rel_err, ok = golden.check_file(path)
    except Exception as e:  # Report every file, then fail overall.
      name = os.path.splitext(os.path.basename(path))[0]
      print(f'{name} ERROR {type(e).__name__}: {e}', flush=True)
      failed += 1
      continue
    print(f'{name} max_abs_err={abs_err:.3e} max_rel_err={rel_err:.3e} {"OK" if ok else "FAIL"}',
          flush=True)
    failed += not ok
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
