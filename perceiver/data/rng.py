"""Stateless randomness for tf.data: augmentation as a function of a seed.

The training loop rebuilds epoch e with shuffle_seed = f(seed, e) and skips
batches to resume, which is exact only if the same seed gives the same
augmented batches. Stateful TF random ops do not (their state is advanced in
whatever order the parallel map runs), so every random draw here comes from
a per-example seed: `get_dataset` zips the examples with
`tf.data.Dataset.random(shuffle_seed)` and each preprocessing function draws
from a `SeedStream` built on that example's seed.
"""

from perceiver.data._tf import tf


class SeedStream:
  """Distinct stateless seeds [2] derived from one seed, in trace order."""

  def __init__(self, seed: tf.Tensor):
    self._seed = tf.cast(seed, tf.int64)
    self._count = 0

  def __call__(self) -> tf.Tensor:
    self._count += 1
    return tf.random.experimental.stateless_fold_in(self._seed, self._count)

  def uniform(self, shape, minval=0.0, maxval=1.0, dtype=tf.float32) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, self(), minval, maxval, dtype)

  def randint(self, minval, maxval, shape=()) -> tf.Tensor:
    """int32 in [minval, maxval) (maxval may be a tensor)."""
    return tf.random.stateless_uniform(shape, self(), minval, maxval, tf.int32)

  def coin(self, p: float = 0.5) -> tf.Tensor:
    """A bool that is True with probability p."""
    return self.uniform([]) < p


def example_seeds(seed: int | None) -> tf.data.Dataset:
  """An endless dataset of int64 [2] seeds (nondeterministic if None)."""
  return tf.data.Dataset.random(seed=seed).batch(2)
