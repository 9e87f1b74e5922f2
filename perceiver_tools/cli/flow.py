#!/usr/bin/env python
"""Optical flow between two frames with a Perceiver IO checkpoint, as a picture.

  python scripts/flow.py --checkpoint optical_flow_checkpoint.pystate \\
      frame1.png frame2.png --out flow.png [--flo flow.flo] [--max_flow PX]

The checkpoint is anything `perceiver.checkpoints.load_checkpoint` reads:
DeepMind's released `optical_flow_checkpoint.pystate` (no config inside: the
released architecture, perceiver/checkpoints/published.py, is used), a
golden-style `.npz` with an `optical_flow` `__config__`, or the
`params.npz` a flow training run exports (`config.model` inside). Frames of
any size are processed at full resolution by overlapping windows of the
model's training size (the reference colab's scheme, perceiver/flow.py).

`--out` gets the first frame, the flow in the Middlebury colour-wheel coding
and a legend (direction = hue, magnitude = saturation up to --max_flow,
default the largest flow); `--flo` also writes the flow as a Middlebury
`.flo` file (u, v in pixels).
"""

from __future__ import annotations

import os
import sys
import time
from typing import List, Optional

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import flags  # pylint: disable=wrong-import-position

from perceiver_tools.cli import _flags  # pylint: disable=wrong-import-position

FLAGS = flags.FlagValues()
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Flow checkpoint (.pystate / .npz).', flag_values=FLAGS)
_OUT = flags.DEFINE_string('out', None, 'PNG to write.', flag_values=FLAGS)
_FLO = flags.DEFINE_string('flo', None, 'Also write the flow as a .flo file here.', flag_values=FLAGS)
_MAX_FLOW = flags.DEFINE_float(
  'max_flow', None, 'Flow magnitude (px) drawn fully saturated; default: the largest in the result.', flag_values=FLAGS
)
_MIN_OVERLAP = flags.DEFINE_integer(
  'min_overlap', None, "Window overlap (px); default: the model's (20 for the released one).", flag_values=FLAGS
)
flags.mark_flags_as_required(['checkpoint', 'out'], flag_values=FLAGS)


def model_config_for(config):
  """The flow `config.model` section behind a checkpoint's own config."""
  from perceiver import flow as flow_lib  # pylint: disable=g-import-not-at-top
  from perceiver.checkpoints import published  # pylint: disable=g-import-not-at-top

  if config is None:  # A DeepMind pickle: the released architecture.
    config = published.published_config('optical_flow')
  if 'config.model' in config:  # Exported by a flow training run.
    return dict(config['config.model'])
  if config.get('model') == 'optical_flow':
    return flow_lib.model_config_from_reference(config)
  raise ValueError(
    "the checkpoint is not an optical-flow model (its config names neither 'config.model' nor model='optical_flow')"
  )


def main(argv: Optional[List[str]] = None) -> int:
  frame_paths = _flags.parse(FLAGS, argv, __doc__, max_positional=None)
  if len(frame_paths) != 2:
    _flags.fail('give exactly two frames: frame1.png frame2.png')
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from perceiver import checkpoints  # pylint: disable=g-import-not-at-top
  from perceiver import flow as flow_lib  # pylint: disable=g-import-not-at-top
  from perceiver import flow_viz  # pylint: disable=g-import-not-at-top
  from perceiver.data import errors  # pylint: disable=g-import-not-at-top
  from perceiver.data import flow as flow_data  # pylint: disable=g-import-not-at-top

  for path in frame_paths:
    if not os.path.isfile(path):
      _flags.fail(f'frame not found: {path}')
  try:
    frames = [flow_data.read_image(p) for p in frame_paths]
  except errors.CorruptDataError as e:
    _flags.fail(str(e).splitlines()[0])
  if frames[0].shape != frames[1].shape:
    _flags.fail(f'the frames differ in size: {frames[0].shape[:2]} vs {frames[1].shape[:2]}')
  try:
    params, state, config = checkpoints.load_checkpoint(_CHECKPOINT.value)
    model_cfg = model_config_for(config)
    if _MIN_OVERLAP.value is not None:
      model_cfg['min_overlap'] = _MIN_OVERLAP.value
    model = flow_lib.build_flow_model(model_cfg)
  except (checkpoints.CheckpointError, ValueError) as e:
    _flags.fail(f'--checkpoint={_CHECKPOINT.value}: {e}')
  x = np.stack(frames)[None].astype(np.float32) / 255.0 * 2.0 - 1.0
  expected = jax.eval_shape(lambda f: model.net.init(jax.random.PRNGKey(0), f, is_training=False)[0], jnp.asarray(x))
  try:
    checkpoints.check_compatible(expected, params)
  except checkpoints.CheckpointError as e:
    _flags.fail(f'--checkpoint={_CHECKPOINT.value}: {e}')
  h, w = x.shape[2:4]
  windows = len(
    flow_lib.tile_origins(
      (max(h, model.train_size[0]), max(w, model.train_size[1])), model.train_size, model.min_overlap
    )
  )
  print(f'{h}x{w} frames, {windows} window(s) of {model.train_size}', flush=True)
  start = time.time()
  out, _ = jax.jit(lambda p, s, f: model.net.apply(p, s, None, f, is_training=False))(params, state, jnp.asarray(x))
  flow = np.asarray(out[0], np.float32)
  print(
    f'flow computed in {time.time() - start:.1f}s; max |flow| {np.hypot(flow[..., 0], flow[..., 1]).max():.2f} px',
    flush=True,
  )
  out_dir = os.path.dirname(os.path.abspath(_OUT.value))
  os.makedirs(out_dir, exist_ok=True)
  flow_viz.save_flow_png(
    _OUT.value,
    flow,
    frame=frames[0],
    max_flow=_MAX_FLOW.value,
    title=f'{os.path.basename(frame_paths[0])} -> {os.path.basename(frame_paths[1])}',
  )
  print(f'wrote {_OUT.value}')
  if _FLO.value:
    flow_data.write_flo(_FLO.value, flow)
    print(f'wrote {_FLO.value}')
  return 0


def run() -> None:
  sys.exit(main())


if __name__ == '__main__':
  run()
