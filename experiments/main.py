r"""Launcher: flags -> config -> ``perceiver.train.train_and_evaluate``.

  python -m experiments.main --config=configs/mnist.py:quickstart \
      --workdir=/tmp/perceiver_mnist [--mode=train|eval|train_and_eval] \
      [--config.train.batch_size=32 ...]

The config file's ``get_config`` returns a locked ConfigDict, so an unknown
key (``--config.train.batchsize=32``) or a value of the wrong type
(``--config.train.batch_size=big``) fails while flags are parsed, before
anything is built or compiled. Value checks (unknown optimizer, batch not
divisible by the devices, ...) follow, still before compiling.
"""

import logging as std_logging
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, e.g. configs/mnist.py:quickstart.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Checkpoints, metrics.jsonl and TensorBoard events go '
    'here; a run restarted with the same workdir resumes.')
_MODE = flags.DEFINE_enum('mode', 'train_and_eval',
                          ['train', 'eval', 'train_and_eval'], 'What to run.')
flags.mark_flags_as_required(['config', 'workdir'])


def _parse_flags(argv: list[str],
                 flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """absl's parser; any bad flag or override exits with a one-line message.

  The locked ConfigDict raises AttributeError/KeyError for an override of a
  key it does not have, ml_collections ValueError/TypeError/IndexError for a
  malformed key path; absl would print those as bare tracebacks.
  """
  overrides = [a.split('=')[0] for a in argv[1:]
               if a.lstrip('-').startswith(('config.', 'noconfig.'))]
  try:
    rest = flag_values(argv)
  except (AttributeError, KeyError) as e:
    while isinstance(e, (AttributeError, KeyError)) and e.args:
      e = e.args[0]  # AttributeError(KeyError(message)) -> message.
    message = str(e).replace('\n', ' ')
    sys.exit(f'FATAL unknown config key {message} (a typo?) among the '
             f'overrides {overrides}')
  except flags.Error as e:
    sys.exit(f'FATAL Flags parsing error: {e}\n'
             f'(config overrides: {overrides}) Pass --helpshort or '
             '--helpfull to see help on flags.')
  except (ValueError, TypeError, IndexError) as e:
    sys.exit(f'FATAL bad config override among {overrides}: '
             f'{type(e).__name__}: {e}')
  if len(rest) > 1:
    sys.exit(f'FATAL unexpected arguments {rest[1:]} after the overrides '
             f'{overrides} (a boolean override takes its value after "=": '
             '--config.a.b=False)')
  return rest


def _quiet_checkpoint_info(record) -> bool:
  """Drops orbax's INFO lines (a dozen per save) from the console."""
  return (record.levelno >= std_logging.WARNING
          or '/orbax/' not in record.pathname)


def main(argv):
  del argv  # _parse_flags rejected any positional argument.
  logging.get_absl_handler().addFilter(_quiet_checkpoint_info)
  # Imported here so that flag errors are reported without loading JAX.
  from perceiver import train  # pylint: disable=g-import-not-at-top
  from perceiver.train import config_checks  # pylint: disable=g-import-not-at-top
  from perceiver.train import workdir_lock  # pylint: disable=g-import-not-at-top
  try:
    result = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value,
                                      _MODE.value)
  except config_checks.ConfigError as e:  # Raised before any compile.
    raise app.UsageError(f'invalid config: {e}') from e
  except workdir_lock.WorkdirError as e:  # Busy, full or read-only: one line.
    sys.exit(f'error: {e}')
  logging.info('Done: %s', result)


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
