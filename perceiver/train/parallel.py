"""Device mesh, shardings and multi-host set-up (``jax.jit`` + NamedSharding).

One mesh axis, ``data``: the batch is split over it. Parameters and optimizer
state are either replicated or, FSDP-style, split along one dimension over
the same axis (XLA inserts the all-gathers / reduce-scatters).
"""

from typing import Any, Mapping

from absl import logging
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'
PARAM_SHARDINGS = ('replicated', 'fsdp')


def maybe_initialize_distributed(cfg: ml_collections.ConfigDict) -> None:
  """Calls ``jax.distributed.initialize`` when ``parallel.multihost`` is set.

  Must run before anything touches a JAX backend. Empty address / -1 ids let
  JAX auto-detect them (TPU pods, SLURM). A short heartbeat timeout makes a
  run whose peer died fail with an error instead of hanging.
  """
  if not cfg.multihost:
    return
  # CPU multi-process collectives (tests, CPU clusters); no-op on TPU/GPU.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  kwargs = dict(
    coordinator_address=cfg.coordinator_address or None,
    num_processes=cfg.num_processes if cfg.num_processes > 0 else None,
    process_id=cfg.process_id if cfg.process_id >= 0 else None,
    initialization_timeout=cfg.initialization_timeout_s,
    heartbeat_timeout_seconds=cfg.heartbeat_timeout_s,
  )
  logging.info('jax.distributed.initialize(%s)', kwargs)
  jax.distributed.initialize(**kwargs)


def make_mesh() -> Mesh:
  """1-D ``data`` mesh over all devices, ordered by process.

  Ordering by process makes each host's devices a contiguous block of the
  batch, so a host's slice of the global batch is a contiguous row range.
  """
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over ``data``."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def fsdp_spec(shape: tuple[int, ...], num_shards: int, min_size: int) -> P:
  """Splits the largest dimension divisible by ``num_shards`` (else replicates).

  Small arrays (< ``min_size`` elements: biases, norms, scalars) stay
  replicated: sharding them saves nothing and costs a collective each.
  """
  if num_shards <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  candidates = [(size, -i) for i, size in enumerate(shape) if size % num_shards == 0]
  if not candidates:
    return P()
  _, neg_axis = max(candidates)
  spec = [None] * len(shape)
  spec[-neg_axis] = DATA_AXIS
  return P(*spec)


def state_shardings(abstract_state: Any, mesh: Mesh, cfg: ml_collections.ConfigDict) -> Any:
  """Sharding for every leaf of the train state (params, opt state, ...)."""
  if cfg.param_sharding not in PARAM_SHARDINGS:
    raise ValueError(f'parallel.param_sharding={cfg.param_sharding!r}; expected one of {PARAM_SHARDINGS}')
  num_shards = mesh.shape[DATA_AXIS]

  def leaf_sharding(leaf) -> NamedSharding:
    if cfg.param_sharding == 'replicated':
      return replicated(mesh)
    return NamedSharding(mesh, fsdp_spec(tuple(leaf.shape), num_shards, cfg.fsdp_min_size))

  return jax.tree.map(leaf_sharding, abstract_state)


def host_rows(mesh: Mesh, global_batch: int) -> slice:
  """The contiguous rows of the global batch that this process feeds."""
  sharding = batch_sharding(mesh)
  starts, stops = [], []
  for index in sharding.addressable_devices_indices_map((global_batch,)).values():
    starts.append(index[0].start or 0)
    stops.append(global_batch if index[0].stop is None else index[0].stop)
  lo, hi = min(starts), max(stops)
  if hi - lo != global_batch // jax.process_count():
    raise ValueError(
      f'this process holds rows [{lo}, {hi}) of a global batch of {global_batch}: not a contiguous equal share'
    )
  return slice(lo, hi)


def make_global_batch(mesh: Mesh, local_batch: Mapping[str, np.ndarray], global_batch: int) -> dict[str, jax.Array]:
  """Assembles per-host numpy batches into global arrays sharded over data."""
  sharding = batch_sharding(mesh)
  return {
    k: jax.make_array_from_process_local_data(sharding, np.asarray(v), (global_batch,) + np.shape(v)[1:])
    for k, v in local_batch.items()
  }
