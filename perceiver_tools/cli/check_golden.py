"""Checks our models against golden reference outputs.

    python scripts/check_golden.py ../shared/golden/official/*.npz
    perceiver-check-golden ../shared/golden/official/*.npz   # installed

For each file: build the model its `__config__` describes, load its params
and state, run its inputs and print
`NAME max_abs_err=... max_rel_err=... OK|FAIL`. Exits 1 if any file fails
(OK: max abs err <= 1e-4 and max rel err <= 1e-3) or cannot be checked.
"""

import os
import sys
from typing import List, Optional

from absl import flags

from perceiver_tools import golden
from perceiver_tools.cli import _flags

FLAGS = flags.FlagValues()  # No flags: the arguments are the golden files.


def main(argv: Optional[List[str]] = None) -> int:
  files = _flags.parse(FLAGS, argv, __doc__, max_positional=None, min_positional=1)
  failed = 0
  for path in files:
    try:
      name, abs_err, rel_err, ok = golden.check_file(path)
    except Exception as e:  # Report every file, then fail overall.
      name = os.path.splitext(os.path.basename(path))[0]
      print(f'{name} ERROR {type(e).__name__}: {e}', flush=True)
      failed += 1
      continue
    print(f'{name} max_abs_err={abs_err:.3e} max_rel_err={rel_err:.3e} {"OK" if ok else "FAIL"}', flush=True)
    failed += not ok
  return 1 if failed else 0


def run() -> None:
  sys.exit(main())


if __name__ == '__main__':
  run()
