"""Flow pictures in the standard Middlebury colour-wheel encoding.

Hue is the direction of motion and saturation its magnitude relative to
`max_flow` (white = still; beyond max_flow the colour is darkened), with the
55-colour wheel of Baker et al., "A Database and Evaluation Methodology for
Optical Flow" (IJCV 2011): red-yellow 15, yellow-green 6, green-cyan 4,
cyan-blue 11, blue-magenta 13, magenta-red 6 steps.

Hand-written (about 30 lines): the one PyPI package for it (flow-vis 0.1,
2020) is an unmaintained single file, and the definition above is all it is.
"""

from __future__ import annotations

import numpy as np

_SEGMENTS = (15, 6, 4, 11, 13, 6)  # RY, YG, GC, CB, BM, MR.


def colour_wheel() -> np.ndarray:
  """f32 [55, 3] RGB in [0, 1], starting at red, going through yellow."""
  cols = []
  # (channel rising or falling, which channel, which is held at 1).
  for n, (rise, ch, hold) in zip(
    _SEGMENTS, ((True, 1, 0), (False, 0, 1), (True, 2, 1), (False, 1, 2), (True, 0, 2), (False, 2, 0))
  ):
    seg = np.zeros((n, 3), np.float32)
    ramp = np.arange(n, dtype=np.float32) / n
    seg[:, hold] = 1.0
    seg[:, ch] = ramp if rise else 1.0 - ramp
    cols.append(seg)
  return np.concatenate(cols)


def flow_to_rgb(flow: np.ndarray, max_flow: float | None = None) -> np.ndarray:
  """uint8 [H, W, 3] colour coding of flow [H, W, 2] (u right, v down).

  `max_flow` (pixels) is the magnitude drawn fully saturated; by default the
  largest finite magnitude in `flow`. Non-finite flow is drawn black.
  """
  flow = np.asarray(flow, np.float64)
  if flow.ndim != 3 or flow.shape[-1] != 2:
    raise ValueError(f'flow must be [H, W, 2], got {flow.shape}')
  bad = ~np.isfinite(flow).all(-1)
  u, v = np.where(bad, 0, flow[..., 0]), np.where(bad, 0, flow[..., 1])
  mag = np.hypot(u, v)
  if max_flow is None:
    max_flow = float(mag.max()) if mag.size else 0.0
  rad = mag / max(max_flow, 1e-9)
  wheel = colour_wheel().astype(np.float64)
  n = len(wheel)
  angle = np.arctan2(-v, -u) / np.pi  # In [-1, 1].
  pos = (angle + 1) / 2 * (n - 1)
  k0 = np.floor(pos).astype(int)
  k1 = (k0 + 1) % n
  f = (pos - k0)[..., None]
  col = (1 - f) * wheel[k0] + f * wheel[k1]
  inside = (rad <= 1)[..., None]
  col = np.where(inside, 1 - rad[..., None] * (1 - col), col * 0.75)
  col[bad] = 0
  return np.round(col * 255).astype(np.uint8)


def legend(size: int = 101) -> np.ndarray:
  """uint8 [size, size, 3]: the wheel itself (flow = offset from centre)."""
  r = (size - 1) / 2
  y, x = np.mgrid[0:size, 0:size].astype(np.float64) - r
  img = flow_to_rgb(np.stack([x, y], -1), max_flow=r)
  img[np.hypot(x, y) > r] = 255
  return img


def save_flow_png(
  path: str,
  flow: np.ndarray,
  *,
  frame: np.ndarray | None = None,
  max_flow: float | None = None,
  title: str = '',
  reference: np.ndarray | None = None,
) -> None:
  """Writes a PNG: [first frame |] flow [| reference flow] | legend.

  `reference` (e.g. the ground truth) is drawn on the same colour scale.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  flow = np.asarray(flow)
  mag = np.hypot(flow[..., 0], flow[..., 1])
  finite = mag[np.isfinite(mag)]
  if max_flow is None:
    max_flow = float(finite.max()) if finite.size else 0.0
  panels = [] if frame is None else [('frame 1', np.asarray(frame))]
  panels.append(('flow' if reference is None else 'predicted', flow_to_rgb(flow, max_flow)))
  if reference is not None:
    panels.append(('ground truth', flow_to_rgb(reference, max_flow)))
  h, w = flow.shape[:2]
  fig_w = 3.0 * w / max(h, 1) * len(panels) + 2.2
  fig, axes = plt.subplots(
    1,
    len(panels) + 1,
    figsize=(min(fig_w, 30), 3.4),
    gridspec_kw={'width_ratios': [w / max(h, 1)] * len(panels) + [0.8]},
  )
  for ax, (name, img) in zip(axes, panels):
    ax.imshow(img)
    ax.set_title(name, fontsize=9)
    ax.axis('off')
  ax = axes[-1]
  r = max_flow
  ax.imshow(legend(), extent=(-r, r, r, -r))
  ax.set_xlabel('u (px, right +)', fontsize=7)
  ax.set_ylabel('v (px, down +)', fontsize=7)
  ax.tick_params(labelsize=6)
  ax.set_title(f'max |flow| {max_flow:.1f} px', fontsize=8)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
