"""Training checkpoints in the workdir with orbax ``CheckpointManager``.

What orbax gives: atomic finalize (a step is written to a temporary
directory and renamed only when complete, so a half-written checkpoint is
never listed), async writes, keep-last-N. What this module adds: a content
fingerprint stored next to each step, so a checkpoint whose files were
damaged after the fact is detected on restore and the previous step is used,
with a warning naming both.
"""

import hashlib
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

CORRUPT_DIR = 'corrupt_checkpoints'


def _leaf_fingerprint(x: jax.Array) -> jax.Array:
  """Two uint32 sums of the leaf's raw bits (plain and position-weighted).

  Integer sums wrap modulo 2**32, so the result is exact and independent of
  reduction order, hence of how the leaf is sharded.
  """
  x = jnp.asarray(x)
  if x.dtype.itemsize == 8:
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)  # [..., 2]
  else:
    uint = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[x.dtype.itemsize]
    bits = jax.lax.bitcast_convert_type(x, uint).astype(jnp.uint32)
  bits = bits.reshape(-1)
  weights = 2 * jnp.arange(bits.shape[0], dtype=jnp.uint32) + 1
  return jnp.stack([jnp.sum(bits, dtype=jnp.uint32), jnp.sum(bits * weights, dtype=jnp.uint32)])


@jax.jit
def _fingerprints(state: Any) -> list[jax.Array]:
  return [_leaf_fingerprint(x) for x in jax.tree.leaves(state)]


def fingerprint(state: Any) -> str:
  """Hex digest of every leaf's bits, computed on device (any sharding)."""
  sums = np.asarray(jax.device_get(_fingerprints(state)), np.uint32)
  return hashlib.sha256(sums.tobytes()).hexdigest()


def _skip_empty(tree: Any) -> Any:
  """Zero-size leaves (they hold no data) as orbax placeholders: orbax
  refuses to write zero-size arrays; restore recreates them from shapes."""
  return jax.tree.map(lambda x: x if x.size else ocp.PLACEHOLDER, tree)


class Checkpointer:
  """Periodic / forced saves and verified restore of the train state.

  Saved per step: ``state`` (a pytree of jax arrays) and ``meta`` (JSON:
  the step, the fingerprint of ``state`` and whatever the caller adds).
  """

  def __init__(self, directory: str, max_to_keep: int, async_save: bool = True):
    self.directory = epath.Path(directory)
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save),
      item_names=('state', 'meta'),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict[str, Any], wait: bool = False) -> None:
    """Writes step ``step`` (async unless ``wait``); the caller checked that
    ``state`` is finite."""
    meta = dict(meta, step=int(step), fingerprint=fingerprint(state))
    self._manager.save(
      int(step),
      force=True,
      args=ocp.args.Composite(state=ocp.args.PyTreeSave(_skip_empty(state)), meta=ocp.args.JsonSave(meta)),
    )
    if wait:
      self.wait()

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def _restore_step(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
    target = _skip_empty(abstract_state)
    restore_args = jax.tree.map(
      lambda a: (
        a if a is ocp.PLACEHOLDER else ocp.ArrayRestoreArgs(sharding=a.sharding, global_shape=a.shape, dtype=a.dtype)
      ),
      target,
    )
    restored = self._manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(target, restore_args=restore_args), meta=ocp.args.JsonRestore()
      ),
    )
    state = jax.tree.map(
      lambda r, a: jax.device_put(np.zeros(a.shape, a.dtype), a.sharding) if r is ocp.PLACEHOLDER else r,
      restored['state'],
      abstract_state,
    )
    meta = dict(restored['meta'])
    if meta.get('step') != step:
      raise ValueError(f'meta says step {meta.get("step")}')
    if fingerprint(state) != meta.get('fingerprint'):
      raise ValueError('content fingerprint mismatch: files were modified')
    return state, meta

  def restore_latest(self, abstract_state: Any) -> tuple[Any, dict[str, Any]] | None:
    """Restores the newest verifiable step; None if there is no step.

    A step that fails to restore or verify is skipped for the next older
    one, with a warning naming both; once an older step restores, the
    failed newer ones are moved aside to ``<workdir>/corrupt_checkpoints/``
    (so training can write those steps again). If no step restores, nothing
    is moved (a changed config fails every step the same way) and the error
    lists each step's failure.
    """
    steps = self.all_steps()
    failures = []
    for step in reversed(steps):
      try:
        state, meta = self._restore_step(step, abstract_state)
      except Exception as e:  # pylint: disable=broad-except
        failures.append((step, e))
        older = [s for s in steps if s < step]
        logging.warning(
          'Checkpoint %s is corrupt or unreadable (%s: %s); falling back to %s.',
          self.directory / str(step),
          type(e).__name__,
          e,
          self.directory / str(older[-1]) if older else 'nothing',
        )
        continue
      self._quarantine([s for s, _ in failures])
      return state, meta
    if failures:
      raise RuntimeError(
        f'no checkpoint in {self.directory} can be restored for this '
        'config (if the model or optimizer changed, use a new workdir): '
        + '; '.join(f'step {s}: {type(e).__name__}: {e}' for s, e in failures)
      )
    return None

  def _quarantine(self, steps: list[int]) -> None:
    if not steps:
      return
    if jax.process_index() == 0:
      aside = self.directory.parent / CORRUPT_DIR
      aside.mkdir(parents=True, exist_ok=True)
      for step in steps:
        src = self.directory / str(step)
        dst = aside / f'{self.directory.name}_{step}'
        i = 0
        while dst.exists():
          i += 1
          dst = aside / f'{self.directory.name}_{step}.{i}'
        src.rename(dst)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices('perceiver_checkpoint_quarantine')
    self._manager.reload()
