"""The checkpoint wrapper on small pytrees (no model, no training)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perceiver.train import checkpoint as checkpoint_lib


def _state(scale):
  return {
    'params': {'w': jnp.arange(6.0).reshape(2, 3) * scale, 'b': jnp.ones(3) * scale},
    'spec': jnp.zeros((0, 4)),  # Zero-size: orbax cannot write it.
    'step': jnp.asarray(int(scale), jnp.int32),
  }


def _abstract(state):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def test_round_trip_with_zero_size_leaves_and_meta(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / 'c'), max_to_keep=2)
  for step in (1, 2, 3):
    ckpt.save(step, _state(step), {'seed': 7})
  ckpt.wait()
  assert ckpt.all_steps() == [2, 3]  # Keeps the last two.
  state, meta = ckpt.restore_latest(_abstract(_state(0)))
  assert meta['step'] == 3 and meta['seed'] == 7
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(_state(3))):
    np.testing.assert_array_equal(a, b)
    assert a.shape == b.shape and a.dtype == b.dtype
  ckpt.close()


def test_fingerprint_sees_every_bit():
  base = checkpoint_lib.fingerprint(_state(1))
  assert base == checkpoint_lib.fingerprint(_state(1))
  flipped = _state(1)
  flipped['params']['w'] = flipped['params']['w'].at[1, 2].set(jnp.nextafter(flipped['params']['w'][1, 2], 100.0))
  assert checkpoint_lib.fingerprint(flipped) != base
  swapped = _state(1)
  swapped['params']['w'] = swapped['params']['w'][::-1]  # Same values.
  assert checkpoint_lib.fingerprint(swapped) != base


def test_a_config_change_moves_nothing_aside(tmp_path):
  """If no step restores (a different model), the error says so and every
  checkpoint stays where it is."""
  directory = tmp_path / 'c'
  ckpt = checkpoint_lib.Checkpointer(str(directory), max_to_keep=3)
  ckpt.save(1, _state(1), {})
  ckpt.save(2, _state(2), {})
  ckpt.wait()
  other = _state(0)
  other['params']['w2'] = jnp.zeros((5,))
  with pytest.raises(RuntimeError, match='new workdir'):
    ckpt.restore_latest(_abstract(other))
  assert sorted(d for d in os.listdir(directory) if d.isdigit()) == ['1', '2']
  assert not os.path.exists(tmp_path / checkpoint_lib.CORRUPT_DIR)
  ckpt.close()
