"""absl flag parsing for the command-line tools, callable more than once.

Each tool defines its flags on its own ``flags.FlagValues`` (not the global
``FLAGS``), so that tests can import several tools into one process and call
their ``main(argv)``; absl's ``app.run`` would parse into the global set.
This module adds what ``app.run`` would: ``--help``, and a one-line error
(exit status 2) for a bad flag instead of a traceback.
"""

from __future__ import annotations

import sys
from typing import List, Optional, Sequence

from absl import flags


def parse(
  flag_values: flags.FlagValues,
  argv: Optional[Sequence[str]],
  doc: str,
  *,
  max_positional: Optional[int] = 0,
  min_positional: int = 0,
) -> List[str]:
  """Parses ``argv`` (without the program name) into ``flag_values``.

  Returns the positional arguments. ``doc`` (the tool's module docstring) is
  printed by ``--help``/``-h``/``--helpfull``.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  program = sys.argv[0] if sys.argv and sys.argv[0] else 'tool'
  if any(a in ('-h', '--help', '--helpshort', '--helpfull') for a in argv):
    print(doc.strip() + '\n\nflags:\n' + flag_values.get_help(), flush=True)
    sys.exit(0)
  flag_values.unparse_flags()  # A second call in one process starts afresh.
  try:
    positional = flag_values([program] + argv)[1:]
  except flags.Error as e:
    sys.exit(_usage_error(program, str(e)))
  if max_positional is not None and len(positional) > max_positional:
    sys.exit(_usage_error(program, f'unexpected arguments {positional[max_positional:]}'))
  if len(positional) < min_positional:
    sys.exit(_usage_error(program, f'expected at least {min_positional} positional argument(s), got {len(positional)}'))
  return positional


def _usage_error(program: str, message: str) -> str:
  message = message.replace('\n', ' ')
  return f'{program}: error: {message} (--help lists the flags)'
