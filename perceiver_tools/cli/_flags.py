"""absl flag parsing for the command-line tools, callable more than once.

Each tool defines its flags on its own ``flags.FlagValues`` (not the global
``FLAGS``), so that tests can import several tools into one process and call
their ``main(argv)``; absl's ``app.run`` would parse into the global set.
This module adds what ``app.run`` would: ``--help``, and a one-line error
(exit status 1, as ``app.run``) for a bad flag or argument instead of a
traceback; ``fail`` gives a tool's own usage errors the same form.
"""

from __future__ import annotations

import sys
from typing import List, NoReturn, Optional, Sequence

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
  if any(a in ('-h', '--help', '--helpshort', '--helpfull') for a in argv):
    print(doc.strip() + '\n\nflags:\n' + flag_values.get_help(), flush=True)
    sys.exit(0)
  flag_values.unparse_flags()  # A second call in one process starts afresh.
  try:
    positional = flag_values([_program()] + argv)[1:]
  except flags.Error as e:
    fail(str(e))
  if max_positional is not None and len(positional) > max_positional:
    fail(f'unexpected arguments {positional[max_positional:]}')
  if len(positional) < min_positional:
    fail(f'expected at least {min_positional} positional argument(s), got {len(positional)}')
  return positional


def fail(message: str) -> NoReturn:
  """Exits with status 1 and one line: `<program>: error: <message> (--help ...)`.

  For a usage error (bad flag value or argument) found after parsing; the
  counterpart of raising ``app.UsageError`` under ``app.run``.
  """
  message = message.replace('\n', ' ')
  sys.exit(f'{_program()}: error: {message} (--help lists the flags)')


def _program() -> str:
  return sys.argv[0] if sys.argv and sys.argv[0] else 'tool'
