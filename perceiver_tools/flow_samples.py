"""Optical-flow pairs with exact ground truth, made from real photographs.

`scripts/make_sample_data.py --what flow` calls `make_flow(out, ...)`, which
writes the same pairs in three public layouts under OUT/flow/:
  flying_chairs/data/NNNNN_img{1,2}.ppm, NNNNN_flow.flo,
                FlyingChairs_train_val.txt (the last `val_fraction` are 2)
  sintel/training/{clean,final}/pair_NNNNN/frame_000{1,2}.png,
         training/flow/pair_NNNNN/frame_0001.flo,
         training/occlusions/..., training/invalid/... (all valid)
  kitti/training/image_2/NNNNNN_{10,11}.png, flow_occ/ and flow_noc/
         NNNNNN_10.png (flow_noc: the non-occluded pixels only)

Construction (FlyingChairs' recipe, Dosovitskiy et al. 2015, with real
photos for every layer): a background cut from one photo moves by a small
random affine motion (camera), and 2-4 foreground layers, elliptical or
polygonal pieces cut from other photos, move by larger random affine
motions on top of it. Frame 2 samples each layer's texture at the inverse of
its moved pose, so the flow of a frame-1 pixel is exactly A(p) - p for the
affine A of the topmost layer there; it is occluded when A(p) leaves the
frame or lands under a layer drawn above it in frame 2. Masks are hard
(nearest) so that flow and pixels agree exactly; colours are sampled
bilinearly from textures first blurred to a camera pixel's footprint (no
aliasing). Sintel's `final` pass is the clean frames with a slight blur and
sensor noise (a stand-in for its motion blur and atmospheric effects).

Photos: MATE's `nature` backgrounds (Debian mate-backgrounds), JPEG photos
of Debian gnome-backgrounds where the installed version ships any, and the
photographs inside installed Python packages (scikit-learn's china.jpg and
flower.jpg, Matplotlib's grace_hopper.jpg), so a bare venv still works.
"""

from __future__ import annotations

import glob
import importlib.util
import os

import numpy as np


PHOTO_GLOBS = (
  '/usr/share/backgrounds/mate/nature/*.jpg',
  '/usr/share/backgrounds/gnome/*.jpg',
)
_PACKAGE_PHOTOS = (
  ('sklearn', 'datasets/images/china.jpg'),
  ('sklearn', 'datasets/images/flower.jpg'),
  ('matplotlib', 'mpl-data/sample_data/grace_hopper.jpg'),
)
MAX_PHOTO_SIDE = 800  # Photos are downscaled to this once loaded.
# Each layer's texture is sampled 1.5-4 photo pixels per frame pixel; sampled
# as is (bilinear), the frames alias: detail finer than a pixel flickers
# between frames and a sub-pixel motion no longer shows as the smooth
# intensity change that flow methods (and a model's 3x3 patches) rely on.
# A camera integrates light over each pixel, so textures are first blurred
# to a pixel's footprint: Gaussian, sigma in frame pixels.
FOOTPRINT = 0.5


def find_photos(extra_dirs: tuple[str, ...] = ()) -> list[str]:
  """Paths of the real photographs available on this machine, sorted."""
  paths = []
  for pattern in PHOTO_GLOBS + tuple(os.path.join(d, '*.jpg') for d in extra_dirs):
    paths += glob.glob(pattern)
  for package, rel in _PACKAGE_PHOTOS:
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.origin:
      path = os.path.join(os.path.dirname(spec.origin), rel)
      if os.path.exists(path):
        paths.append(path)
  return sorted(set(paths))


def load_photo(path: str) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with Image.open(path) as img:
    img = img.convert('RGB')
    scale = MAX_PHOTO_SIDE / max(img.size)
    if scale < 1:
      img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
    return np.asarray(img, np.float32)


def _affine(rng, max_shift, max_rot_deg, scale_range, center):
  """2x3 matrix: rotate/scale about `center` (x, y), then translate."""
  angle = np.deg2rad(rng.uniform(-max_rot_deg, max_rot_deg))
  s = rng.uniform(*scale_range)
  rot = s * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  shift = rng.uniform(-max_shift, max_shift, 2)
  c = np.asarray(center, np.float64)
  return np.concatenate([rot, (c - rot @ c + shift)[:, None]], 1)


def _apply(a, xy):
  """Affine a [2, 3] of points xy [..., 2] (x, y)."""
  return xy @ a[:, :2].T + a[:, 2]


def _invert(a):
  inv = np.linalg.inv(a[:, :2])
  return np.concatenate([inv, (-inv @ a[:, 2])[:, None]], 1)


def _compose(a, b):
  """a after b."""
  return np.concatenate([a[:, :2] @ b[:, :2], (a[:, :2] @ b[:, 2] + a[:, 2])[:, None]], 1)


def _sample(texture, xy, order):
  """texture [h, w, C] at points xy [H, W, 2] (x, y); outside: 0."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top

  coords = [xy[..., 1], xy[..., 0]]
  return np.stack(
    [
      ndimage.map_coordinates(texture[..., c], coords, order=order, mode='constant', cval=0.0)
      for c in range(texture.shape[-1])
    ],
    -1,
  )


def _layer_mask(rng, h, w):
  """A hard-edged ellipse or convex polygon filling part of [h, w]."""
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
  cy, cx = h / 2, w / 2
  if rng.random() < 0.5:
    ry, rx = h / 2 * rng.uniform(0.6, 0.95), w / 2 * rng.uniform(0.6, 0.95)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
  n = rng.integers(3, 8)
  angles = np.sort(rng.uniform(0, 2 * np.pi, n))
  radius = rng.uniform(0.55, 0.95, n)
  px = cx + np.cos(angles) * radius * w / 2
  py = cy + np.sin(angles) * radius * h / 2
  inside = np.ones((h, w), bool)
  for i in range(n):  # Inside every edge of the (counter-clockwise) polygon.
    x0, y0, x1, y1 = px[i], py[i], px[(i + 1) % n], py[(i + 1) % n]
    inside &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) >= 0
  return inside


def _prefilter(texture: np.ndarray, texels_per_pixel: float, footprint: float) -> np.ndarray:
  """The texture blurred to a camera pixel's footprint (Gaussian, sigma =
  `footprint` frame pixels), so that frames sampled from it do not alias."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top

  sigma = footprint * texels_per_pixel
  return ndimage.gaussian_filter(texture, (sigma, sigma, 0)) if sigma > 0 else texture


def make_pair(
  photos: list[np.ndarray],
  rng: np.random.Generator,
  size: tuple[int, int],
  max_motion: float,
  footprint: float = FOOTPRINT,
) -> dict[str, np.ndarray]:
  """One pair: img1, img2 uint8 [H, W, 3], flow f32 [H, W, 2], occluded."""
  h, w = size
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
  grid = np.stack([xx, yy], -1)  # [H, W, 2] (x, y)
  center = (w / 2, h / 2)
  order = rng.permutation(len(photos))
  # Layer 0: the background, a crop of a photo covering the frame with a
  # margin so that its motion never uncovers the border.
  layers = []
  bg = photos[order[0]]
  margin = int(np.ceil(max_motion * 0.5)) + 4
  scale = max((h + 2 * margin) / bg.shape[0], (w + 2 * margin) / bg.shape[1])
  tex_h, tex_w = bg.shape[0], bg.shape[1]
  # Photo pixels per frame pixel: 1.5-4 (downscaled: keeps fine texture).
  s = max(scale, 1.0 / rng.uniform(1.5, 4.0))
  ox = rng.uniform(margin, max(margin, tex_w * s - w - margin))
  oy = rng.uniform(margin, max(margin, tex_h * s - h - margin))
  pose = np.array([[s, 0, -ox], [0, s, -oy]])  # texture -> frame 1
  motion = _affine(rng, max_motion * 0.25, 2.0, (0.97, 1.03), center)
  layers.append((_prefilter(bg, 1.0 / s, footprint), np.ones(bg.shape[:2], bool), pose, motion))
  for k in range(rng.integers(2, 5)):
    photo = photos[order[(k + 1) % len(photos)]]
    shrink = rng.uniform(1.5, 4.0)  # Photo pixels per frame pixel.
    lh = min(int(rng.uniform(0.25, 0.6) * h * shrink), photo.shape[0])
    lw = min(int(rng.uniform(0.25, 0.6) * w * shrink), photo.shape[1])
    y0 = rng.integers(0, max(1, photo.shape[0] - lh))
    x0 = rng.integers(0, max(1, photo.shape[1] - lw))
    tex = photo[y0 : y0 + lh, x0 : x0 + lw]
    mask = _layer_mask(rng, tex.shape[0], tex.shape[1])
    px, py = rng.uniform(-0.2 * w, 0.9 * w), rng.uniform(-0.2 * h, 0.9 * h)
    angle = np.deg2rad(rng.uniform(-30, 30))
    sc = rng.uniform(0.8, 1.2) / shrink
    rot = sc * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pose = np.concatenate([rot, [[px], [py]]], 1)
    lc = _apply(pose, np.array([tex.shape[1] / 2, tex.shape[0] / 2]))
    motion = _affine(rng, max_motion, 10.0, (0.9, 1.1), lc)
    layers.append((_prefilter(tex, 1.0 / sc, footprint), mask, pose, motion))

  def render(poses):
    img = np.zeros((h, w, 3))
    top = np.full((h, w), -1)
    for i, (tex, mask, _, _) in enumerate(layers):
      to_tex = _apply(_invert(poses[i]), grid)
      cover = _sample(mask[..., None].astype(np.float64), to_tex, order=0)[..., 0] > 0.5
      colour = _sample(tex, to_tex, order=1)
      img[cover] = colour[cover]
      top[cover] = i
    return img, top

  poses1 = [pose for _, _, pose, _ in layers]
  poses2 = [_compose(motion, pose) for _, _, pose, motion in layers]
  img1, top1 = render(poses1)
  img2, top2 = render(poses2)
  flow = np.zeros((h, w, 2))
  occluded = np.zeros((h, w), bool)
  for i, (_, _, _, motion) in enumerate(layers):
    here = top1 == i
    dest = _apply(motion, grid)
    flow[here] = (dest - grid)[here]
    # Occluded: leaves the frame, or lands where frame 2 shows another layer.
    xi = np.clip(np.round(dest[..., 0]).astype(int), 0, w - 1)
    yi = np.clip(np.round(dest[..., 1]).astype(int), 0, h - 1)
    outside = (dest[..., 0] < 0) | (dest[..., 0] > w - 1) | (dest[..., 1] < 0) | (dest[..., 1] > h - 1)
    covered = top2[yi, xi] != i
    occluded[here] = (outside | covered)[here]
  to_u8 = lambda x: np.clip(np.round(x), 0, 255).astype(np.uint8)
  return dict(img1=to_u8(img1), img2=to_u8(img2), flow=flow.astype(np.float32), occluded=occluded)


def _final_pass(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  from scipy import ndimage  # pylint: disable=g-import-not-at-top

  blurred = ndimage.gaussian_filter(img.astype(np.float32), (0.8, 0.8, 0))
  noisy = blurred + rng.normal(0, 3.0, img.shape)
  return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def make_flow(
  out: str,
  num_pairs: int,
  seed: int,
  size=(120, 160),
  max_motion: float | None = None,
  val_fraction: float = 0.2,
  photo_dirs: tuple[str, ...] = (),
  log=print,
) -> None:
  """Writes `num_pairs` pairs in the FlyingChairs, Sintel and KITTI layouts."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  # Imported here: make_sample_data.py needs no TensorFlow for other data.
  from perceiver.data import flow as flow_io  # pylint: disable=g-import-not-at-top

  paths = find_photos(photo_dirs)
  if len(paths) < 2:
    raise RuntimeError(
      'need at least 2 real photos: install Debian mate-backgrounds (sudo '
      'bash scripts/install_sample_sources.sh) or scikit-learn / '
      'matplotlib, or pass --flow_photos DIR of JPEGs'
    )
  photos = [load_photo(p) for p in paths]
  if max_motion is None:  # Foreground shifts up to 6% of the frame's side.
    max_motion = 0.06 * min(size)
  log(f'flow: {len(photos)} photos, {num_pairs} pairs of {size[0]}x{size[1]}')
  rng = np.random.default_rng(seed)
  chairs = os.path.join(out, 'flying_chairs')
  sintel = os.path.join(out, 'sintel', 'training')
  kitti = os.path.join(out, 'kitti', 'training')
  for d in (
    os.path.join(chairs, 'data'),
    os.path.join(kitti, 'image_2'),
    os.path.join(kitti, 'flow_occ'),
    os.path.join(kitti, 'flow_noc'),
  ):
    os.makedirs(d, exist_ok=True)
  num_val = int(round(num_pairs * val_fraction))
  flags = []
  for n in range(1, num_pairs + 1):
    pair = make_pair(photos, rng, size, max_motion)
    img1, img2, flow, occ = (pair['img1'], pair['img2'], pair['flow'], pair['occluded'])
    base = os.path.join(chairs, 'data', f'{n:05d}')
    Image.fromarray(img1).save(base + '_img1.ppm')
    Image.fromarray(img2).save(base + '_img2.ppm')
    flow_io.write_flo(base + '_flow.flo', flow)
    flags.append(2 if n > num_pairs - num_val else 1)
    scene = f'pair_{n:05d}'
    for pass_name, frames in (('clean', (img1, img2)), ('final', (_final_pass(img1, rng), _final_pass(img2, rng)))):
      d = os.path.join(sintel, pass_name, scene)
      os.makedirs(d, exist_ok=True)
      for k, frame in enumerate(frames, 1):
        Image.fromarray(frame).save(os.path.join(d, f'frame_{k:04d}.png'))
    for sub, data in (('flow', None), ('occlusions', occ), ('invalid', np.zeros_like(occ))):
      d = os.path.join(sintel, sub, scene)
      os.makedirs(d, exist_ok=True)
      if data is None:
        flow_io.write_flo(os.path.join(d, 'frame_0001.flo'), flow)
      else:
        Image.fromarray(data.astype(np.uint8) * 255).save(os.path.join(d, 'frame_0001.png'))
    stem = f'{n - 1:06d}'
    Image.fromarray(img1).save(os.path.join(kitti, 'image_2', f'{stem}_10.png'))
    Image.fromarray(img2).save(os.path.join(kitti, 'image_2', f'{stem}_11.png'))
    flow_io.write_kitti_png(os.path.join(kitti, 'flow_occ', f'{stem}_10.png'), flow)
    flow_io.write_kitti_png(os.path.join(kitti, 'flow_noc', f'{stem}_10.png'), flow, ~occ)
  with open(os.path.join(chairs, 'FlyingChairs_train_val.txt'), 'w') as f:
    f.write('\n'.join(str(v) for v in flags) + '\n')
  log(f'flow: wrote {out} ({num_pairs - num_val} train / {num_val} validation pairs)')
