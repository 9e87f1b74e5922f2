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


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with a clear message for an unknown config key.

  The locked ConfigDict raises AttributeError/KeyError for an override of a
  key it does not have; absl would print that as a bare traceback.
  """
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    overrides = [a.split('=')[0] for a in argv[1:]
                 if a.startswith('--config.')]
    while isinstance(e, (AttributeError, KeyError)) and e.args:
      e = e.args[0]  # AttributeError(KeyError(message)) -> message.
    message = str(e).replace('\n', ' ')
    sys.exit(f'FATAL unknown config key {message} (a typo?) among the '
             f'overrides {overrides}')
  except flags.Error as e:
    sys.exit(f'FATAL Flags parsing error: {e}\n'
             'Pass --helpshort or --helpfull to see help on flags.')


def _quiet_checkpoint_info(record) -> bool:
  """Drops orbax's INFO lines (a dozen per save) from the console."""
  return (record.levelno >= std_logging.WARNING
          or '/orbax/' not in record.pathname)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(_quiet_checkpoint_info)
  # Imported here so that flag errors are reported without loading JAX.
  from perceiver import train  # pylint: disable=g-import-not-at-top
  from perceiver.train import config_checks  # pylint: disable=g-import-not-at-top
  try:
    result = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value,
                                      _MODE.value)
  except config_checks.ConfigError as e:  # Raised before any compile.
    raise app.UsageError(f'invalid config: {e}') from e
  logging.info('Done: %s', result)


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
