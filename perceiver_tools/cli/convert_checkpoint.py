"""Converts a released checkpoint into this project's ``.npz`` format.

  python scripts/convert_checkpoint.py IN OUT.npz [--format=auto|pystate|pickle|
      hf-safetensors|hf-torch|hf-npz|npz] [--config_json=FILE | --preset=NAME]
      [--hf_config_json=FILE]
  perceiver-convert IN OUT.npz ...   # installed

IN is a DeepMind ``.pystate``/``.pickle`` (read without executing anything;
needs ``--config_json`` or ``--preset``, e.g. ``--preset=
imagenet_conv_preprocessing``) or a Hugging Face ``PerceiverFor*`` state_dict
(``model.safetensors`` or ``pytorch_model.bin``; the ``config.json`` beside it
or ``--hf_config_json`` gives the config; torch is not needed). OUT gets
``params::<module>::<name>``, ``state::<module>::<name>`` and ``__config__``.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from absl import flags

from perceiver import checkpoints
from perceiver.checkpoints import hf
from perceiver_tools.cli import _flags

FLAGS = flags.FlagValues()
_FORMAT = flags.DEFINE_enum('format', 'auto', ('auto',) + tuple(checkpoints.FORMATS), 'format of IN', flag_values=FLAGS)
_CONFIG_JSON = flags.DEFINE_string('config_json', None, 'reference-style model config (JSON file)', flag_values=FLAGS)
_PRESET = flags.DEFINE_enum(
  'preset', None, list(checkpoints.PRESETS), "a released model's full-size reference config", flag_values=FLAGS
)
_HF_CONFIG_JSON = flags.DEFINE_string(
  'hf_config_json', None, 'HF config.json, if not beside the weights', flag_values=FLAGS
)
flags.mark_flags_as_mutual_exclusive(['config_json', 'preset'], flag_values=FLAGS)


def main(argv: Optional[List[str]] = None) -> int:
  source, output = _flags.parse(FLAGS, argv, __doc__, max_positional=2, min_positional=2)

  try:
    config = None
    if _CONFIG_JSON.value:
      config = hf.read_json_object(_CONFIG_JSON.value)
    elif _PRESET.value:
      config = checkpoints.published_config(_PRESET.value)
    hf_config = hf.read_json_object(_HF_CONFIG_JSON.value) if _HF_CONFIG_JSON.value else None
    fmt = checkpoints.detect_format(source) if _FORMAT.value == 'auto' else _FORMAT.value
    params, state, config = checkpoints.load_checkpoint(source, fmt, config=config, hf_config=hf_config)
  except checkpoints.CheckpointError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  if config is None:
    hint = (
      '--config_json or --preset'
      if fmt in ('pystate', 'pickle')
      else '--hf_config_json (or put config.json beside the weights)'
    )
    print(f'error: {source} ({fmt}) carries no model config; pass {hint}', file=sys.stderr)
    return 1
  try:
    checkpoints.save_checkpoint(output, params, state, config)
  except (OSError, ValueError) as e:  # disk full, read-only directory, bad names
    print(f'error: cannot write {output}: {type(e).__name__}: {getattr(e, "strerror", None) or e}', file=sys.stderr)
    return 1
  n_params = sum(a.size for leaves in params.values() for a in leaves.values())
  n_state = sum(len(leaves) for leaves in state.values())
  print(
    f'{source} ({fmt}) -> {output}: {n_params:,} parameters in '
    f'{sum(len(v) for v in params.values())} arrays, {n_state} state arrays, '
    f'model {config.get("model")!r}'
  )
  return 0


def run() -> None:
  sys.exit(main())


if __name__ == '__main__':
  run()
