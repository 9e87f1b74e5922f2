"""check_compatible: refusing a checkpoint made for another config."""

import jax
import numpy as np
import pytest

from perceiver.checkpoints import CheckpointMismatchError, check_compatible, shapes_of

MODEL = {
  'enc/linear': {'w': (32, 34), 'b': (34,)},
  'enc/layer_norm': {'scale': (32,), 'offset': (32,)},
  'dec/output': {'w': (32, 10), 'b': (10,)},
}


def _ckpt(shapes):
  return {m: {n: np.zeros(s, np.float32) for n, s in leaves.items()} for m, leaves in shapes.items()}


def test_matching_checkpoint_passes():
  check_compatible(MODEL, _ckpt(MODEL))
  # jax arrays and ShapeDtypeStructs (jax.eval_shape of init) on either side
  check_compatible(
    jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, np.float32), MODEL, is_leaf=lambda x: isinstance(x, tuple)),
    _ckpt(MODEL),
  )


def test_lists_every_problem_sorted_with_shapes():
  got = _ckpt(MODEL)
  del got['enc/layer_norm']['offset']  # missing
  got['dec/output']['w'] = np.zeros((32, 1000))  # mis-shaped
  got['enc/linear']['b'] = np.zeros((30,))  # mis-shaped
  got['extra/linear'] = {'w': np.zeros((3, 3))}  # unexpected
  with pytest.raises(CheckpointMismatchError) as info:
    check_compatible(MODEL, got)
  e = info.value
  assert e.missing == [('enc/layer_norm::offset', (32,))]
  assert e.unexpected == [('extra/linear::w', (3, 3))]
  assert e.mis_shaped == [('dec/output::w', (32, 10), (32, 1000)), ('enc/linear::b', (34,), (30,))]
  lines = str(e).splitlines()
  assert lines[0] == ('checkpoint params do not fit the model: 1 missing, 1 unexpected, 2 mis-shaped')
  assert 'enc/layer_norm::offset  (model expects shape (32,))' in lines[1]
  assert 'extra/linear::w  (checkpoint shape (3, 3))' in lines[2]
  assert lines[3].endswith('dec/output::w  model (32, 10) vs checkpoint (32, 1000)')
  assert isinstance(e, ValueError)


def test_state_is_named_in_the_message():
  with pytest.raises(CheckpointMismatchError, match='checkpoint state do not fit'):
    check_compatible({'bn/~/mean_ema': {'average': (1, 1, 1, 4)}}, {}, what='state')


def test_shapes_of():
  assert shapes_of(_ckpt(MODEL)) == MODEL
