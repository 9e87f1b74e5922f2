"""RandAugment(N, M) (Cubuk et al. 2020) in TensorFlow ops, for tf.data.

Written here rather than imported because no maintained option fits:
`keras.layers.RandAugment` (Keras 3) evaluates all of its 11 ops for each of
the N layers and selects the result with `where` (11x the work: 13 images/s
at 224x224 on 2 cores here), draws each magnitude uniformly from [0, factor]
instead of using a fixed M, and has a different op set; KerasCV is in
maintenance mode, and tf-models-official pins its own TensorFlow version.

The op list and magnitude ranges follow the tensorflow/tpu implementation
that the Perceiver reference code calls (16 ops, magnitude M on a 0..10
scale, translate 100 px and cutout 40 px at 224 px, here scaled with the
image size), using the "increasing" convention for Posterize and Solarize
(larger M = stronger change) so that M means the same for every op.
Only the selected op is computed (`tf.switch_case`).
"""

import math

from perceiver.data import rng as rng_lib
from perceiver.data._tf import tf

_MAX_LEVEL = 10.0
_FILL = 128.0  # Grey fill for geometric ops and cutout, as the reference.


def _blend(a: tf.Tensor, b: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  """a + factor * (b - a), clipped to [0, 255]."""
  return tf.clip_by_value(a + factor * (b - a), 0.0, 255.0)


def _random_sign(x: tf.Tensor, rng: rng_lib.SeedStream) -> tf.Tensor:
  return tf.where(rng.coin(), -x, x)


def _grey(image: tf.Tensor) -> tf.Tensor:
  return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))


def _transform(image: tf.Tensor, matrix: list[tf.Tensor]) -> tf.Tensor:
  """Projective transform; `matrix` maps output to input pixel coords."""
  m = tf.cast(tf.stack(matrix), tf.float32)[tf.newaxis]  # [1, 8]
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  out = tf.raw_ops.ImageProjectiveTransformV3(
    images=image[tf.newaxis],
    transforms=m,
    output_shape=tf.stack([h, w]),
    fill_value=_FILL,
    interpolation='BILINEAR',
    fill_mode='CONSTANT',
  )
  return out[0]


def _rotate(image: tf.Tensor, level: tf.Tensor, rng) -> tf.Tensor:
  angle = _random_sign(level * 30.0, rng) * (math.pi / 180.0)
  h = tf.cast(tf.shape(image)[0], tf.float32)
  w = tf.cast(tf.shape(image)[1], tf.float32)
  c, s = tf.cos(angle), tf.sin(angle)
  # Rotation about the image centre.
  x0 = (w - 1) / 2 - (c * (w - 1) / 2 - s * (h - 1) / 2)
  y0 = (h - 1) / 2 - (s * (w - 1) / 2 + c * (h - 1) / 2)
  zero = tf.constant(0.0)
  return _transform(image, [c, -s, x0, s, c, y0, zero, zero])


def _shear_x(image: tf.Tensor, level: tf.Tensor, rng) -> tf.Tensor:
  s = _random_sign(level * 0.3, rng)
  one, zero = tf.constant(1.0), tf.constant(0.0)
  return _transform(image, [one, s, zero, zero, one, zero, zero, zero])


def _shear_y(image: tf.Tensor, level: tf.Tensor, rng) -> tf.Tensor:
  s = _random_sign(level * 0.3, rng)
  one, zero = tf.constant(1.0), tf.constant(0.0)
  return _transform(image, [one, zero, zero, s, one, zero, zero, zero])


def _translate(image: tf.Tensor, level: tf.Tensor, axis: int, rng) -> tf.Tensor:
  size = tf.cast(tf.shape(image)[1 - axis], tf.float32)
  d = _random_sign(level * (100.0 / 224.0) * size, rng)
  one, zero = tf.constant(1.0), tf.constant(0.0)
  dx, dy = (d, zero) if axis == 0 else (zero, d)
  return _transform(image, [one, zero, dx, zero, one, dy, zero, zero])


def _auto_contrast(image: tf.Tensor) -> tf.Tensor:
  lo = tf.reduce_min(image, axis=[0, 1], keepdims=True)  # [1, 1, 3]
  hi = tf.reduce_max(image, axis=[0, 1], keepdims=True)
  scaled = (image - lo) * 255.0 / tf.maximum(hi - lo, 1e-3)
  return tf.where(hi > lo, scaled, image)


def _equalize_channel(ch: tf.Tensor) -> tf.Tensor:
  """Histogram equalisation of one uint8-valued channel [H, W]."""
  ch_int = tf.cast(ch, tf.int32)
  hist = tf.math.bincount(ch_int, minlength=256, maxlength=256)
  nonzero = tf.boolean_mask(hist, hist > 0)
  step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255

  def equalised():
    lut = (tf.cumsum(hist) + step // 2) // step
    lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
    return tf.cast(tf.gather(lut, ch_int), tf.float32)

  return tf.cond(step == 0, lambda: ch, equalised)


def _equalize(image: tf.Tensor) -> tf.Tensor:
  return tf.stack([_equalize_channel(image[..., c]) for c in range(3)], -1)


def _sharpness(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
  kernel = tf.tile(kernel[:, :, tf.newaxis, tf.newaxis], [1, 1, 3, 1])
  smooth = tf.nn.depthwise_conv2d(image[tf.newaxis], kernel, [1, 1, 1, 1], 'VALID')[0]
  # Keep the border pixels as they are (as PIL does).
  smooth = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
  mask = tf.pad(tf.ones_like(smooth[2:, 2:]), [[1, 1], [1, 1], [0, 0]])
  smooth = tf.where(mask > 0, smooth, image)
  return _blend(smooth, image, factor)


def _cutout(image: tf.Tensor, level: tf.Tensor, rng) -> tf.Tensor:
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  side = tf.cast(level * (80.0 / 224.0) * tf.cast(tf.minimum(h, w), tf.float32), tf.int32)
  cy = rng.randint(0, h)
  cx = rng.randint(0, w)
  ys, xs = tf.range(h)[:, tf.newaxis], tf.range(w)[tf.newaxis, :]
  inside = (tf.abs(ys - cy) * 2 < side) & (tf.abs(xs - cx) * 2 < side)
  return tf.where(inside[..., tf.newaxis], _FILL, image)


def _enhance_factor(level: tf.Tensor, rng) -> tf.Tensor:
  return 1.0 + _random_sign(level * 0.9, rng)


def _posterize(image: tf.Tensor, level: tf.Tensor) -> tf.Tensor:
  shift = tf.cast(level * 4.0, tf.int32)  # Drop up to 4 low bits.
  x = tf.cast(image, tf.int32)
  return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(x, shift), shift), tf.float32)


def _ops(image: tf.Tensor, level: tf.Tensor, rng: rng_lib.SeedStream) -> list:
  """The 16 RandAugment ops as thunks; `level` = M / 10 in [0, 1]."""
  return [
    lambda: _auto_contrast(image),
    lambda: _equalize(image),
    lambda: 255.0 - image,  # Invert.
    lambda: _rotate(image, level, rng),
    lambda: _posterize(image, level),
    # Solarize: invert pixels above a threshold falling with M.
    lambda: tf.where(image >= 256.0 - level * 256.0, 255.0 - image, image),
    lambda: _blend(_grey(image), image, _enhance_factor(level, rng)),  # Color.
    lambda: _blend(  # Contrast: blend with the mean grey level.
      tf.fill(tf.shape(image), tf.reduce_mean(_grey(image))), image, _enhance_factor(level, rng)
    ),
    lambda: _blend(
      tf.zeros_like(image),
      image,  # Brightness.
      _enhance_factor(level, rng),
    ),
    lambda: _sharpness(image, _enhance_factor(level, rng)),
    lambda: _shear_x(image, level, rng),
    lambda: _shear_y(image, level, rng),
    lambda: _translate(image, level, 0, rng),
    lambda: _translate(image, level, 1, rng),
    lambda: _cutout(image, level, rng),
    # SolarizeAdd: add up to 110 to pixels below 128.
    lambda: tf.where(image < 128.0, tf.minimum(image + level * 110.0, 255.0), image),
  ]


NUM_OPS = 16


def randaugment(image: tf.Tensor, num_layers: int, magnitude: float, rng: rng_lib.SeedStream) -> tf.Tensor:
  """Applies `num_layers` uniformly chosen ops at magnitude M.

  Args:
    image: float32 [H, W, 3] with values in [0, 255].
    num_layers: N, the number of ops applied in sequence.
    magnitude: M on the 0..10 scale.
    rng: the example's seed stream.

  Returns:
    float32 [H, W, 3] in [0, 255].
  """
  level = tf.constant(magnitude / _MAX_LEVEL, tf.float32)
  shape = image.shape
  for _ in range(num_layers):
    image = _one_layer(image, level, rng())
    image = tf.ensure_shape(image, shape)
  return image


@tf.function(
  input_signature=[
    tf.TensorSpec([None, None, 3], tf.float32),
    tf.TensorSpec([], tf.float32),
    tf.TensorSpec([2], tf.int32),
  ]
)
def _one_layer(image: tf.Tensor, level: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """One uniformly chosen op. A tf.function so that its 16 branches are
  traced once, not once per layer (tracing dominates pipeline start-up)."""
  rng = rng_lib.SeedStream(seed)
  index = rng.randint(0, NUM_OPS)
  image = tf.switch_case(index, _ops(image, level, rng))
  return tf.clip_by_value(image, 0.0, 255.0)
