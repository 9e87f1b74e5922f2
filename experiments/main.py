r"""Launcher: flags -> config -> ``perceiver.train.train_and_evaluate``.

  python -m experiments.main --config=configs/mnist.py:quickstart \
      --workdir=/tmp/perceiver_mnist [--mode=train|eval|train_and_eval] \
      [--config.train.batch_size=32 ...]
  perceiver-train --config=configs/mnist.py:quickstart ...   # installed

Installed, this module is ``perceiver_experiments.main``; from the
repository root ``python -m experiments.main`` runs the same file.

The config file's ``get_config`` returns a locked ConfigDict, so an unknown
key (``--config.train.batchsize=32``) or a value of the wrong type
(``--config.train.batch_size=big``) fails while flags are parsed, before
anything is built or compiled. Value checks (unknown optimizer, batch not
divisible by the devices, ...) follow, still before compiling. Neither
JAX nor TensorFlow is imported before the flags have been checked (the
quickstart's config imports neither; a typo fails in about a second, not
after TensorFlow's ~10 s import), and their start-up logging is silenced
(``TF_CPP_MIN_LOG_LEVEL=2`` unless set, TensorFlow's oneDNN notice, JAX's
backend probing; ``--verbose_startup`` keeps them): one line names the JAX
backend and devices instead.
"""

import contextlib
import logging as std_logging
import os
import sys
from typing import Any, Iterator, Optional

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Experiment config file, e.g. configs/mnist.py:quickstart.', lock_config=True
)
_WORKDIR = flags.DEFINE_string(
  'workdir',
  None,
  'Checkpoints, metrics.jsonl and TensorBoard events go here; a run restarted with the same workdir resumes.',
)
_MODE = flags.DEFINE_enum('mode', 'train_and_eval', ['train', 'eval', 'train_and_eval'], 'What to run.')
_VERBOSE_STARTUP = flags.DEFINE_bool('verbose_startup', False, "Keep TensorFlow's and XLA's start-up logging.")
_HOST_MEMORY = flags.DEFINE_enum(
  'host_memory',
  'reuse',
  ['reuse', 'system'],
  "reuse: glibc keeps freed memory for the next step's XLA temporaries instead of unmapping it, and CPU steps "
  'run inline so each frees its temporaries before the next allocates (perceiver/host_memory.py; fewer page '
  "faults on CPU; one malloc arena, less memory); system: the C library's defaults and JAX's asynchronous CPU "
  'dispatch (faster for small steps such as the MNIST quickstart; more memory).',
)
_COMPILATION_CACHE = flags.DEFINE_string(
  'compilation_cache',
  'workdir',
  "JAX's persistent compilation cache, so that a restarted run loads its compiled steps instead of compiling "
  "again (and its peak memory no longer includes the compiler's): workdir = WORKDIR/compilation_cache; "
  'off; or a directory (several runs of one model may share it).',
)
flags.mark_flags_as_required(['config', 'workdir'])


def _config_arg(argv: list[str]) -> str | None:
  """The value of --config in argv (either `--config=X` or `--config X`)."""
  for i, arg in enumerate(argv):
    if arg in ('--config', '-config') and i + 1 < len(argv):
      return argv[i + 1]
    if arg.startswith(('--config=', '-config=')):
      return arg.split('=', 1)[1]
  return None


def _check_config_file(argv: list[str]) -> None:
  """A missing config file: one line (ml_collections defers it to first use)."""
  value = _config_arg(argv)
  if value is None:
    return  # absl reports the missing required flag.
  path = value.split(':', 1)[0]
  if not os.path.isfile(path):
    sys.exit(
      f'FATAL --config: no config file {path!r} (relative to {os.getcwd()}); '
      'give the path of a configs/*.py file, e.g. '
      '--config=configs/mnist.py:quickstart from the repository root'
    )


def _check_repeated_overrides(overrides: list[str]) -> None:
  """One value per config key.

  ml_collections parses a tuple field (``--config.data.crop_area_range``)
  with an absl MultiFlag, which *extends* the value on each further
  occurrence: given twice, ``=0.35,1.0`` yields (0.35, 1.0, 0.35, 1.0). So a
  repeated key is an error rather than a silently longer tuple.
  """
  keys = [o.lstrip('-') for o in overrides]
  keys = [k[2:] if k.startswith('noconfig.') else k for k in keys]
  repeated = sorted({k for k in keys if keys.count(k) > 1})
  if repeated:
    sys.exit(
      f'FATAL config override(s) given more than once: '
      f'{["--" + k for k in repeated]}; give each once (a tuple takes '
      'all its values in one override: --config.a.b=0.35,1.0)'
    )


def _config_file_error(message: str) -> str | None:
  """The last line of a traceback ml_collections folds into a flag error."""
  if 'Error whilst parsing config file' not in message:
    return None
  lines = [l.strip() for l in message.splitlines() if l.strip()]
  return lines[-1] if lines else None


def _one_line(error: Exception) -> str:
  """An exception's message on one line (the launcher's FATAL lines)."""
  return ' '.join(line.strip() for line in str(error).splitlines())


def _parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """absl's parser; any bad flag or override exits with a one-line message.

  The locked ConfigDict raises AttributeError/KeyError for an override of a
  key it does not have, ml_collections ValueError/TypeError/IndexError for a
  malformed key path; absl would print those as bare tracebacks.
  """
  overrides = [a.split('=')[0] for a in argv[1:] if a.lstrip('-').startswith(('config.', 'noconfig.'))]
  _check_config_file(argv[1:])
  _check_repeated_overrides(overrides)
  try:
    rest = flag_values(argv)
  except (AttributeError, KeyError) as e:
    while isinstance(e, (AttributeError, KeyError)) and e.args:
      e = e.args[0]  # AttributeError(KeyError(message)) -> message.
    message = str(e).replace('\n', ' ')
    sys.exit(f'FATAL unknown config key {message} (a typo?) among the overrides {overrides}')
  except flags.Error as e:
    cause = _config_file_error(str(e))
    if cause is not None:  # get_config raised, e.g. an unknown preset.
      sys.exit(f'FATAL --config={_config_arg(argv[1:])}: {cause}')
    sys.exit(
      f'FATAL Flags parsing error: {e}\n'
      f'(config overrides: {overrides}) Pass --helpshort or '
      '--helpfull to see help on flags.'
    )
  except (ValueError, TypeError, IndexError) as e:
    sys.exit(f'FATAL bad config override among {overrides}: {type(e).__name__}: {e}')
  if len(rest) > 1:
    sys.exit(
      f'FATAL unexpected arguments {rest[1:]} after the overrides '
      f'{overrides} (a boolean override takes its value after "=": '
      '--config.a.b=False)'
    )
  return rest


def _quiet_checkpoint_info(record) -> bool:
  """Drops orbax's INFO lines (a dozen per save) and JAX's backend probing
  ("Unable to initialize backend 'tpu'") from the console; _log_devices says
  which backend was found."""
  return record.levelno >= std_logging.WARNING or (
    '/orbax/' not in record.pathname and not record.pathname.endswith('xla_bridge.py')
  )


def _early_flag(argv: list[str], name: str, *, boolean: bool = False) -> Optional[str]:
  """The value of flag `name` in argv, read before absl parses the flags (the
  start-up settings below must apply before a config file imports TensorFlow
  or JAX starts threads). Forms as absl takes them: --name=v, -name=v,
  --name v; booleans --name / --noname. The last one wins; None if absent."""
  value, args = None, argv[1:]
  for i, arg in enumerate(args):
    if arg == '--':
      break
    if not arg.startswith('-'):
      continue
    flag, eq, given = arg.lstrip('-').partition('=')
    if flag == name:
      value = given if eq else ('true' if boolean else (args[i + 1] if i + 1 < len(args) else None))
    elif boolean and not eq and flag == 'no' + name:
      value = 'false'
  return value


def _quiet_startup(argv: list[str]) -> None:
  """Silences TensorFlow's C++ start-up lines (oneDNN, CUDA probing, ...).

  Set before the flags are parsed: a config file may import TensorFlow.
  """
  if (_early_flag(argv, 'verbose_startup', boolean=True) or 'false').lower() not in ('true', '1'):
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


@contextlib.contextmanager
def _stderr_fd_silenced(silence: bool) -> Iterator[None]:
  """Points file descriptor 2 at /dev/null for the block (if ``silence``).

  TensorFlow 2.21 prints its oneDNN notice from C++ at import, before any
  log level applies (TF_CPP_MIN_LOG_LEVEL does not silence it); redirecting
  the descriptor for the import is the only switch. An exception raised in
  the block is reported once the descriptor is restored.
  """
  if not silence:
    yield
    return
  sys.stderr.flush()
  saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def _check_config_then_import_tensorflow(config: Any, mode: str) -> Optional[Exception]:
  """The config's checks, then TensorFlow's import (the data pipelines and
  TensorBoard logging use it), with TensorFlow's start-up lines silenced.

  The checks come first: TensorFlow's import takes seconds on a small
  machine, and a typo in a flag should not wait for it. Returns the
  ConfigError, if any (raised by the caller, after stderr is back). A
  task's checks may import TensorFlow themselves (the flow task's data
  module does), hence both under the one redirect.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top

  from perceiver.train import config_checks  # pylint: disable=g-import-not-at-top

  with _stderr_fd_silenced(not _VERBOSE_STARTUP.value):
    try:
      config_checks.check_config(config, mode)
    except config_checks.ConfigError as e:
      return e
    if importlib.util.find_spec('tensorflow') is not None:
      import tensorflow  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  return None


def _log_devices() -> None:
  import jax  # pylint: disable=g-import-not-at-top

  devices = jax.devices()
  kinds = sorted({d.device_kind for d in devices})
  logging.info(
    'JAX backend %s: %d device(s) (%s), %d process(es)',
    jax.default_backend(),
    len(devices),
    ', '.join(kinds),
    jax.process_count(),
  )


def main(argv):
  del argv  # _parse_flags rejected any positional argument.
  logging.get_absl_handler().addFilter(_quiet_checkpoint_info)
  config_error = _check_config_then_import_tensorflow(_CONFIG.value, _MODE.value)
  if config_error is not None:
    raise app.UsageError(f'invalid config: {config_error}')
  # Imported here so that flag errors are reported without loading JAX.
  from perceiver import train  # pylint: disable=g-import-not-at-top
  from perceiver.checkpoints import errors as checkpoint_errors  # pylint: disable=g-import-not-at-top
  from perceiver.data import errors as data_errors  # pylint: disable=g-import-not-at-top
  from perceiver.train import config_checks  # pylint: disable=g-import-not-at-top

  _compilation_cache(_COMPILATION_CACHE.value, _WORKDIR.value)
  if not _CONFIG.value.parallel.get('multihost', False):
    # A multi-host run must not touch the JAX backend before
    # jax.distributed.initialize (inside the runner, which logs its devices).
    _log_devices()
  from perceiver.train import workdir_lock  # pylint: disable=g-import-not-at-top

  try:
    result = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, _MODE.value)
  except config_checks.ConfigError as e:  # Raised before any compile.
    raise app.UsageError(f'invalid config: {e}') from e
  except data_errors.MissingDataError as e:
    searched = sorted({os.path.dirname(p) for p in e.expected})
    detail = _one_line(e)
    placeholder = 'GLOB' if e.field.endswith('_files') else 'DIR' if e.field.endswith('_dir') else 'FILE'
    sys.exit(
      f'FATAL {e.dataset} data not found (searched {searched}): set '
      f'--config.{e.field}={placeholder} to where it is. {detail}'
    )
  except data_errors.CorruptDataError as e:
    sys.exit('FATAL ' + _one_line(e))
  except workdir_lock.WorkdirError as e:  # Busy, full or read-only: one line.
    sys.exit(f'error: {e}')
  except checkpoint_errors.CheckpointError as e:  # e.g. an init_from file that does not fit config.model
    where = '--config.init_from: ' if _CONFIG.value.get('init_from') else ''
    sys.exit(f'FATAL {where}' + _one_line(e))
  logging.info('Done: %s', result)


def _compilation_cache(value: str, workdir: str) -> None:
  """--compilation_cache: points JAX's persistent cache at a directory (the
  cache key covers the program, JAX/XLA versions, flags and devices, so a
  changed config compiles afresh). Setting it touches no backend, so it is
  safe before jax.distributed.initialize."""
  if value == 'off':
    return
  from perceiver import compilation_cache  # pylint: disable=g-import-not-at-top

  # JAX creates the directory at the first compile, i.e. after the config
  # checks and the workdir lock (nothing is written for a run that fails them).
  path = os.path.join(workdir, 'compilation_cache') if value == 'workdir' else os.path.expanduser(value)
  compilation_cache.use(path)


def _host_memory(argv: list[str]) -> None:
  """Applies --host_memory before anything starts threads (read from argv by
  hand: the config file, parsed with the flags, may import TensorFlow)."""
  if _early_flag(argv, 'host_memory') != 'system':
    from perceiver import host_memory  # pylint: disable=g-import-not-at-top

    host_memory.reuse_freed_memory()


def run() -> None:
  """Console script `perceiver-train`."""
  _quiet_startup(sys.argv)
  _host_memory(sys.argv)
  app.run(main, flags_parser=_parse_flags)


if __name__ == '__main__':
  run()
