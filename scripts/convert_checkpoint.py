#!/usr/bin/env python
"""Converts a released checkpoint into this project's ``.npz`` format.

  python scripts/convert_checkpoint.py IN OUT.npz [--format auto|pystate|pickle|
      hf-safetensors|hf-torch|hf-npz|npz] [--config_json FILE | --preset NAME]
      [--hf_config_json FILE]

IN is a DeepMind ``.pystate``/``.pickle`` (read without executing anything;
needs ``--config_json`` or ``--preset``, e.g. ``--preset
imagenet_conv_preprocessing``) or a Hugging Face ``PerceiverFor*`` state_dict
(``model.safetensors`` or ``pytorch_model.bin``; the ``config.json`` beside it
or ``--hf_config_json`` gives the config; torch is not needed). OUT gets
``params::<module>::<name>``, ``state::<module>::<name>`` and ``__config__``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

try:
  from perceiver import checkpoints
except ImportError:  # run from a source checkout without installing
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from perceiver import checkpoints
from perceiver.checkpoints import hf  # pylint: disable=wrong-import-position


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('input', help='released checkpoint file')
  parser.add_argument('output', help='output .npz')
  parser.add_argument('--format', default='auto', choices=('auto',) + checkpoints.FORMATS)
  group = parser.add_mutually_exclusive_group()
  group.add_argument('--config_json', help='reference-style model config (JSON file)')
  group.add_argument('--preset', choices=checkpoints.PRESETS,
                     help="a released model's full-size reference config")
  parser.add_argument('--hf_config_json', help='HF config.json, if not beside the weights')
  args = parser.parse_args(argv)

  try:
    config = None
    if args.config_json:
      config = hf.read_json_object(args.config_json)
    elif args.preset:
      config = checkpoints.published_config(args.preset)
    hf_config = hf.read_json_object(args.hf_config_json) if args.hf_config_json else None
    fmt = checkpoints.detect_format(args.input) if args.format == 'auto' else args.format
    params, state, config = checkpoints.load_checkpoint(
        args.input, fmt, config=config, hf_config=hf_config)
  except checkpoints.CheckpointError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  if config is None:
    hint = ('--config_json or --preset' if fmt in ('pystate', 'pickle')
            else '--hf_config_json (or put config.json beside the weights)')
    print(f'error: {args.input} ({fmt}) carries no model config; pass {hint}', file=sys.stderr)
    return 1
  try:
    checkpoints.save_checkpoint(args.output, params, state, config)
  except (OSError, ValueError) as e:  # disk full, read-only directory, bad names
    print(f'error: cannot write {args.output}: {type(e).__name__}: '
          f'{getattr(e, "strerror", None) or e}', file=sys.stderr)
    return 1
  n_params = sum(a.size for leaves in params.values() for a in leaves.values())
  n_state = sum(len(leaves) for leaves in state.values())
  print(f'{args.input} ({fmt}) -> {args.output}: {n_params:,} parameters in '
        f'{sum(len(v) for v in params.values())} arrays, {n_state} state arrays, '
        f'model {config.get("model")!r}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
