"""The training loop: ``train_and_evaluate(config, workdir, mode)``.

Determinism: the step's randomness is ``fold_in(train_key, step)`` and the
data order is a function of (seed, epoch) (see ``input_pipeline``), so the
parameters after N steps depend only on the config: a run killed at any
point and resumed from its last checkpoint ends bitwise identical to one
that never stopped (on the same devices).
"""

import concurrent.futures
import contextlib
import json
import math
import os
import signal
import threading
from typing import Any, Callable, Iterator, Mapping, NamedTuple

from absl import logging
import haiku as hk
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from perceiver import host_memory
from perceiver import tasks as tasks_lib
from perceiver.train import checkpoint as checkpoint_lib
from perceiver.train import config_checks
from perceiver.train import input_pipeline
from perceiver.train import losses
from perceiver.train import metrics_log
from perceiver.train import optim
from perceiver.train import parallel
from perceiver.train.progress import Progress
from perceiver.train import workdir_lock

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]


class TrainState(NamedTuple):
  step: jax.Array  # int32 [], optimizer steps done.
  params: hk.Params
  model_state: hk.State
  opt_state: optax.OptState


def _device_batch_keys(batch: Mapping[str, Any], task: tasks_lib.Task) -> dict[str, Any]:
  """What goes to the devices: the task's inputs and targets, eval mask."""
  keep = tuple(task.batch_keys) + ('mask',)
  return {k: v for k, v in batch.items() if k in keep}


def _check_batch(task: tasks_lib.Task, batch: Mapping[str, Any], config: ml_collections.ConfigDict, where: str) -> None:
  """The task's host-side check of a batch (labels in range), if it has one."""
  check = getattr(task, 'check_batch', None)
  if check is not None:
    check(batch, config, where)


def make_train_step(
  net: hk.TransformedWithState,
  tx: optax.GradientTransformation,
  schedule: optim.Schedule,
  config: ml_collections.ConfigDict,
  mesh: jax.sharding.Mesh | None = None,
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]:
  """Pure ``train_step(state, batch, rng) -> (state, metrics)``.

  ``rng`` is the run's training key; the step uses fold_in(rng, step) and
  micro-batch i of a gradient-accumulated step fold_in(that, i). With
  ``train.grad_accum_steps`` = A the global batch [B] is split into A
  micro-batches of B/A (every device keeps its own rows: no communication)
  scanned in sequence; the gradient is their mean, i.e. the full-batch one.
  The loss and the logged metrics come from the run's task
  (`perceiver.tasks`, `config.task`).
  """
  accum = config.train.grad_accum_steps
  task = tasks_lib.get_task(config)

  def loss_fn(params, model_state, rng, batch):
    return task.train_loss(net, params, model_state, rng, batch, config)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def train_step(state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, Metrics]:
    step_rng = jax.random.fold_in(rng, state.step)
    if accum == 1:
      (loss, (model_state, task_metrics)), grads = grad_fn(state.params, state.model_state, step_rng, batch)
    else:

      def to_micro(x):  # [B, ...] -> [A, B/A, ...]; row b -> (b % A, b // A).
        x = x.reshape((x.shape[0] // accum, accum) + x.shape[1:])
        x = jnp.swapaxes(x, 0, 1)
        if mesh is not None:
          x = jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(None, parallel.DATA_AXIS)))
        return x

      micro = jax.tree.map(to_micro, batch)

      def body(carry, xs):
        grads_sum, loss_sum, metrics_sum, model_state = carry
        i, mb = xs
        (loss, (model_state, task_metrics)), grads = grad_fn(
          state.params, model_state, jax.random.fold_in(step_rng, i), mb
        )
        grads_sum = jax.tree.map(jnp.add, grads_sum, grads)
        metrics_sum = jax.tree.map(jnp.add, metrics_sum, task_metrics)
        return (grads_sum, loss_sum + loss, metrics_sum, model_state), None

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      metric_shapes = jax.eval_shape(
        grad_fn, state.params, state.model_state, step_rng, jax.tree.map(lambda x: x[0], micro)
      )[0][1][1]
      metrics_zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes)
      init = (zeros, jnp.float32(0), metrics_zero, state.model_state)
      (grads, loss, task_metrics, model_state), _ = jax.lax.scan(body, init, (jnp.arange(accum), micro))
      grads = jax.tree.map(lambda g: g / accum, grads)
      loss = loss / accum
      task_metrics = jax.tree.map(lambda m: m / accum, task_metrics)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(
      task_metrics, loss=loss, grad_norm=optax.tree.norm(grads), lr=jnp.asarray(schedule(state.step), jnp.float32)
    )
    return TrainState(state.step + 1, params, model_state, opt_state), metrics

  return train_step


def make_eval_step(
  net: hk.TransformedWithState, config: ml_collections.ConfigDict
) -> Callable[[hk.Params, hk.State, Batch], Metrics]:
  """``eval_step(params, model_state, batch)``: the task's per-example
  outputs [B] (and its ``collect`` arrays), plus the batch's ``mask``."""
  task = tasks_lib.get_task(config)

  def eval_step(params, model_state, batch):
    out = task.eval_outputs(net, params, model_state, batch, config)
    return dict(out, mask=batch['mask'])

  return eval_step


@contextlib.contextmanager
def _sigterm_flag() -> Iterator[threading.Event]:
  """Sets the yielded event on SIGTERM (preemption); restores the old handler.

  The handler only sets a flag: the loop checkpoints and returns at the next
  step boundary, never in the middle of a step or a write.
  """
  flag = threading.Event()
  if threading.current_thread() is not threading.main_thread():
    yield flag  # Signal handlers can only be installed from the main thread.
    return
  previous = signal.signal(signal.SIGTERM, lambda *_: flag.set())
  try:
    yield flag
  finally:
    signal.signal(signal.SIGTERM, previous)


def _any_process(flag: bool) -> bool:
  """True if ``flag`` is set on any process (all processes must call)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils

  flags = multihost_utils.process_allgather(np.asarray([flag], np.int32))
  return bool(np.any(flags))


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
  return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _ceil_div(a: int, b: int) -> int:
  return -(-a // b)


def _first_non_finite(history: list[tuple[int, dict[str, float]]]) -> tuple[int, str, float] | None:
  for step, metrics in history:
    for name in ('loss', 'grad_norm'):
      if not math.isfinite(metrics[name]):
        return step, name, metrics[name]
  return None


class _Run:
  """Objects shared by training and evaluation of one run."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, *, write_logs: bool = True):
    self.config = config
    self.workdir = workdir
    self.mesh = parallel.make_mesh()
    self.num_processes = jax.process_count()
    self.process_index = jax.process_index()
    config_checks.check_devices(config, self.mesh.size, self.num_processes)
    self.is_chief = self.process_index == 0
    self.task = tasks_lib.get_task(config)
    self.net = self.task.build_model(config)
    self.global_batch = config.train.batch_size
    self.host_batch = self.global_batch // self.num_processes
    try:  # Split sizes and class counts: one-line errors naming the field.
      self.num_train = input_pipeline.num_examples(config.data, 'train')
      if 'num_classes' in config.model.get('decoder', {}):
        input_pipeline.check_num_classes(config.data, config.model.decoder.num_classes)
    except ValueError as e:
      if type(e) is not ValueError:  # pylint: disable=unidiomatic-typecheck
        raise  # CorruptDataError & co. keep their own type.
      raise config_checks.ConfigError(str(e)) from None
    # Every host must have at least host_batch * steps_per_epoch examples.
    self.steps_per_epoch = self.num_train // self.num_processes // self.host_batch
    if self.steps_per_epoch < 1:
      raise config_checks.ConfigError(
        f'train.batch_size={self.global_batch} exceeds the {self.num_train} training examples'
      )
    t = config.train
    self.total_steps = t.num_steps if t.num_steps > 0 else int(round(t.num_epochs * self.steps_per_epoch))
    self.schedule = optim.make_schedule(
      config.optimizer.schedule, steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps
    )
    self.tx = optim.make_optimizer(config.optimizer, self.schedule)
    if hasattr(self.task, 'wrap_optimizer'):  # e.g. a frozen encoder
      self.tx = self.task.wrap_optimizer(self.tx, config)
    key = jax.random.PRNGKey(config.seed)
    self.init_key, self.train_key = jax.random.split(key)
    self.checkpointer = checkpoint_lib.Checkpointer(
      os.path.join(workdir, 'checkpoints'), config.checkpoint.max_to_keep, async_save=config.checkpoint.async_save
    )
    self.log = metrics_log.MetricsLog(workdir, enabled=self.is_chief and write_logs)
    self._state_shardings = None

  # --- state ---------------------------------------------------------------

  def _example_batch(self) -> dict[str, np.ndarray]:
    """One host-local eval batch: shapes for init (no augmentation)."""
    it = input_pipeline.eval_batches(
      self.config.data,
      split=self.config.eval.split,
      host_batch=self.config.eval.batch_size // self.num_processes,
      process_index=self.process_index,
      process_count=self.num_processes,
    )
    return next(it)

  def _init_fn(self, inputs: Any) -> TrainState:
    params, model_state = self.net.init(self.init_key, inputs, is_training=True)
    return TrainState(jnp.zeros([], jnp.int32), params, model_state, self.tx.init(params))

  def abstract_state(self, example: dict[str, np.ndarray]) -> Any:
    """Shapes, dtypes and shardings of the train state (nothing computed)."""
    # Parameter shapes do not depend on the batch size: init on one example
    # (one clip of it when eval batches carry a clip axis).
    skip = 2 if self.config.eval.clip_axis else 1
    inputs = jax.tree.map(
      lambda v: jax.ShapeDtypeStruct((1,) + v.shape[skip:], v.dtype), self.task.model_inputs(example)
    )
    shapes = jax.eval_shape(self._init_fn, inputs)
    self._state_shardings = parallel.state_shardings(shapes, self.mesh, self.config.parallel)
    self._inputs_spec = inputs
    return jax.tree.map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, self._state_shardings
    )

  def init_state(self) -> TrainState:
    """Fresh state, created directly with its shardings."""
    init = jax.jit(self._init_fn, out_shardings=self._state_shardings)
    inputs = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self._inputs_spec)
    return init(inputs)

  def meta(self) -> dict[str, Any]:
    return dict(
      seed=self.config.seed,
      global_batch=self.global_batch,
      steps_per_epoch=self.steps_per_epoch,
      total_steps=self.total_steps,
    )

  def restore(self, abstract_state: Any) -> TrainState | None:
    restored = self.checkpointer.restore_latest(abstract_state)
    if restored is None:
      return None
    state, meta = restored
    changed = {k: (meta.get(k), v) for k, v in self.meta().items() if meta.get(k) != v}
    if changed:
      logging.warning(
        'Resuming with a different config (saved, now): %s; the data order will not match the original run.', changed
      )
    logging.info('Restored checkpoint at step %d from %s', meta['step'], self.checkpointer.directory)
    return state

  def init_from_file(self, fresh: TrainState) -> TrainState:
    """``fresh`` with params and model state read from ``config.init_from``.

    Any format `perceiver.checkpoints.load_checkpoint` reads (DeepMind
    `.pystate`/`.pickle` without executing code, this project's `.npz`,
    Hugging Face weights). Fails listing every missing, unexpected and
    mis-shaped parameter when the file does not fit `config.model`. The
    optimizer state and step start fresh (evaluation or fine-tuning).
    """
    from perceiver import checkpoints  # pylint: disable=g-import-not-at-top

    path = self.config.init_from
    params, model_state, _ = checkpoints.load_checkpoint(path)
    if hasattr(self.task, 'load_params'):  # e.g. a pre-trained encoder + new head
      params = self.task.load_params(fresh.params, params, self.config)
    checkpoints.check_compatible(fresh.params, params)
    # `input_spec` records the input shapes the model was built for (zero-size
    # arrays, no data): it is ours, not the file's (DeepMind's have none).
    ours = {m: v for m, v in fresh.model_state.items() if m != 'input_spec'}
    model_state = {m: v for m, v in model_state.items() if m != 'input_spec'}
    checkpoints.check_compatible(ours, model_state, what='state')
    model_state = dict(model_state, **{m: v for m, v in fresh.model_state.items() if m == 'input_spec'})
    cast = lambda new, old: np.asarray(new, dtype=old.dtype)
    params = jax.tree.map(cast, params, fresh.params)
    model_state = jax.tree.map(cast, model_state, fresh.model_state)
    shardings = self._state_shardings
    params = jax.device_put(params, shardings.params)
    model_state = jax.device_put(model_state, shardings.model_state)
    opt_state = jax.jit(self.tx.init, out_shardings=shardings.opt_state)(params)
    logging.info('Initialised from %s (%d parameters)', path, sum(x.size for x in jax.tree.leaves(params)))
    return TrainState(fresh.step, params, model_state, opt_state)

  def export_params(self, state: TrainState) -> str:
    """Writes WORKDIR/params.npz (this project's format, `config.model`
    and the run's config inside): the trained weights for
    `--config.init_from`, `perceiver.load_pretrained`,
    scripts/eval_checkpoint.py and sharing, without orbax. Every process takes part (params may be
    sharded); the chief writes."""
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    from perceiver.checkpoints import npz_format  # pylint: disable=g-import-not-at-top

    params, model_state = multihost_utils.process_allgather((state.params, state.model_state), tiled=True)
    path = os.path.join(self.workdir, 'params.npz')
    if self.is_chief:
      # `config.model` rebuilds the model (perceiver.load_pretrained); the
      # whole run config lets scripts/eval_checkpoint.py rerun its evaluation.
      npz_format.save_checkpoint(
        path,
        params,
        model_state,
        {'config.model': self.config.model.to_dict(), 'config': json.loads(self.config.to_json_best_effort())},
      )
      logging.info('Exported parameters to %s', path)
    return path

  # --- evaluation ----------------------------------------------------------

  def evaluate(self, state: TrainState, step: int) -> dict[str, float]:
    cfg = self.config
    split = cfg.eval.split
    host_batch = cfg.eval.batch_size // self.num_processes
    n = input_pipeline.num_examples(cfg.data, split)
    # Same count on every host (hosts hold ceil or floor of n / P examples).
    num_steps = _ceil_div(_ceil_div(n, self.num_processes), host_batch)
    eval_step = self._jit_eval_step()
    it = input_pipeline.eval_batches(
      cfg.data, split=split, host_batch=host_batch, process_index=self.process_index, process_count=self.num_processes
    )
    sums: dict[str, float] = {}
    collected: dict[str, list[np.ndarray]] = {}
    template = None
    progress = Progress(num_steps, f'eval {split} at step {step}:')
    for i in range(num_steps):
      progress.update(i)
      batch = next(it, None)
      if batch is None:  # This host ran out: feed an all-masked batch.
        if template is None:
          raise ValueError(f'process {self.process_index} has no {split} examples')
        batch = {k: np.zeros_like(v) for k, v in template.items()}
      template = batch
      gbatch = self._global_batch(batch, cfg.eval.batch_size, f'{split} batch {i}')
      out = jax.device_get(eval_step(state.params, state.model_state, gbatch))
      mask = out.pop('mask') > 0
      for k, v in out.pop('collect', {}).items():
        collected.setdefault(k, []).append(np.asarray(v)[mask])
      for k, v in out.items():
        sums[k] = sums.get(k, 0.0) + float(np.sum(v[mask], dtype=np.float64))
      sums['count'] = sums.get('count', 0.0) + float(mask.sum())
    count = sums.pop('count')
    result = {k: v / max(count, 1) for k, v in sums.items()}
    result.update(self.task.finalize_eval({k: np.concatenate(v) for k, v in collected.items()}, cfg))
    result['num_examples'] = count
    warning = losses.check_eval_finite(result, step=step, split=split, stop=cfg.eval.get('stop_on_nonfinite', False))
    if warning:
      logging.warning('%s', warning)
    self.log.write(step, split, result)
    logging.info('eval %s at step %d: %s', split, step, ', '.join(f'{k}={v:.4f}' for k, v in result.items()))
    return result

  def _jit_eval_step(self):
    if not hasattr(self, '_eval_step'):
      self._eval_step = jax.jit(
        make_eval_step(self.net, self.config),
        in_shardings=(
          self._state_shardings.params,
          self._state_shardings.model_state,
          parallel.batch_sharding(self.mesh),
        ),
        out_shardings=parallel.replicated(self.mesh),
      )
    return self._eval_step

  # --- training ------------------------------------------------------------

  def save(self, state: TrainState, step: int, wait: bool = False) -> None:
    """Checkpoints ``state`` unless a parameter is NaN/Inf (then raises).

    A finite loss at the last step does not prove its update was finite, so
    the parameters themselves are checked (one on-device reduction).
    """
    if not bool(_all_finite(state.params)):
      self.checkpointer.wait()
      raise FloatingPointError(
        f'params are not finite at step {step}; stopping without '
        f'writing this checkpoint. The last good checkpoint (step '
        f'{self.checkpointer.latest_step()}) in '
        f'{self.checkpointer.directory} is kept.'
      )
    self.checkpointer.save(step, state, self.meta(), wait=wait)

  def _global_batch(self, batch: Mapping[str, Any], global_batch: int, where: str) -> dict[str, jax.Array]:
    """This host's rows `batch`, checked by the task (errors name `where`), as a global batch on the mesh."""
    _check_batch(self.task, batch, self.config, where)
    return parallel.make_global_batch(self.mesh, _device_batch_keys(batch, self.task), global_batch)

  def train(self, state: TrainState, evaluate: bool) -> dict[str, Any]:
    cfg = self.config
    start = int(jax.device_get(state.step))
    self.log.truncate_after(start)
    train_step = jax.jit(
      make_train_step(self.net, self.tx, self.schedule, cfg, self.mesh),
      in_shardings=(self._state_shardings, parallel.batch_sharding(self.mesh), parallel.replicated(self.mesh)),
      out_shardings=(self._state_shardings, parallel.replicated(self.mesh)),
      donate_argnums=0,
    )
    batches = input_pipeline.train_batches(
      cfg.data,
      seed=cfg.seed,
      start_step=start,
      steps_per_epoch=self.steps_per_epoch,
      host_batch=self.host_batch,
      process_index=self.process_index,
      process_count=self.num_processes,
    )
    progress = metrics_log.Progress(start, self.total_steps, self.global_batch)
    pending: list[tuple[int, Metrics]] = []
    result: dict[str, Any] = dict(preempted=False)
    logging.info(
      'Training steps %d -> %d (%d steps/epoch, global batch %d, %d micro-batches, %d devices, %d processes)',
      start,
      self.total_steps,
      self.steps_per_epoch,
      self.global_batch,
      cfg.train.grad_accum_steps,
      self.mesh.size,
      self.num_processes,
    )

    # The next step's batch is read, checked and put on the devices by one
    # worker thread (in step order) while this step runs: CPU steps run
    # inline (host_memory), so nothing else would overlap that host work.
    def read(step: int) -> dict[str, jax.Array]:
      return self._global_batch(next(batches), self.global_batch, f'train batch of step {step}')

    prefetch = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='next_train_batch')
    with _sigterm_flag() as sigterm, prefetch:
      upcoming = prefetch.submit(read, start + 1) if start < self.total_steps else None
      for step in range(start + 1, self.total_steps + 1):
        gbatch = upcoming.result()
        if step < self.total_steps:
          upcoming = prefetch.submit(read, step + 1)
        if step == start + 1:  # Compiled, and the compiler's memory released, before it runs.
          train_step = host_memory.compile_ahead(train_step, state, gbatch, self.train_key)
        state, metrics = train_step(state, gbatch, self.train_key)
        pending.append((step, metrics))
        last = step == self.total_steps
        at_log = step % cfg.train.log_every == 0 or last
        # One process's flag at a step boundary; agreed on at log steps when
        # there are several processes (a collective every step would stall).
        stop = sigterm.is_set() if self.num_processes == 1 else (at_log and _any_process(sigterm.is_set()))
        at_ckpt = step % cfg.checkpoint.every_steps == 0 or last or stop
        at_eval = evaluate and cfg.eval.every_steps > 0 and (step % cfg.eval.every_steps == 0) and not last
        if not (at_log or at_ckpt or at_eval):
          continue
        # Every step since the last check is verified finite before any
        # checkpoint is written: a NaN never reaches the disk.
        history = [(s, {k: float(v) for k, v in jax.device_get(m).items()}) for s, m in pending]
        pending = []
        bad = _first_non_finite(history)
        if bad is not None:
          bad_step, name, value = bad
          self.checkpointer.wait()
          raise FloatingPointError(
            f'{name} is {value} at step {bad_step}; stopping. The last '
            f'good checkpoint (step {self.checkpointer.latest_step()}) in '
            f'{self.checkpointer.directory} is kept.'
          )
        if at_log:
          means = {k: float(np.mean([m[k] for _, m in history])) for k in history[-1][1]}
          means['lr'] = history[-1][1]['lr']
          text, rate = progress.line(step, means['loss'])
          means.update(steps_per_sec=rate, examples_per_sec=rate * self.global_batch)
          if self.is_chief:
            logging.info('%s', text)
          self.log.write(step, 'train', means)
          result['train'] = means
        if at_ckpt:
          self.save(state, step, wait=stop or last)
        if at_eval:
          result['eval'] = self.evaluate(state, step)
        if stop:
          logging.warning('SIGTERM: checkpoint written at step %d; exiting.', step)
          result.update(preempted=True, step=step)
          return result
    self.checkpointer.wait()
    if cfg.checkpoint.export_npz:
      result['exported'] = self.export_params(state)
    if evaluate:
      result['eval'] = self.evaluate(state, self.total_steps)
    result['step'] = self.total_steps
    return result


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, mode: str = 'train_and_eval') -> dict[str, Any]:
  """Trains and/or evaluates ``config`` in ``workdir``; resumes if possible.

  Returns a summary: the last train/eval metrics, the final step, and
  ``preempted`` (True when SIGTERM stopped the run after a checkpoint).
  Raises FloatingPointError if the loss or gradient becomes NaN/Inf, and
  workdir_lock.WorkdirError (one line) if another run holds the workdir or
  it is full or read-only (``mode='eval'`` still runs on a read-only
  workdir: results go to the log and stdout only).
  """
  config_checks.check_config(config, mode)
  parallel.maybe_initialize_distributed(config.parallel)
  read_only = mode == 'eval' and not workdir_lock.is_writable(workdir)
  lock = None
  if jax.process_index() == 0 and '://' not in workdir and not read_only:
    lock = workdir_lock.WorkdirLock(workdir).acquire()  # before anything is written
  try:
    return _train_and_evaluate(config, workdir, mode, read_only)
  except Exception as e:  # pylint: disable=broad-except
    error = workdir_lock.workdir_error_in(e, workdir)
    if error is None:
      raise
    raise error from e
  finally:
    if lock is not None:
      lock.release()


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, mode: str, read_only: bool) -> dict[str, Any]:
  run = _Run(config, workdir, write_logs=not read_only)
  try:
    if run.is_chief and not read_only:
      os.makedirs(workdir, exist_ok=True)
      with open(os.path.join(workdir, 'config.json'), 'w') as f:
        f.write(config.to_json_best_effort(indent=2))
    abstract = run.abstract_state(run._example_batch())
    # A checkpoint in the workdir wins over `init_from`: a preempted
    # fine-tuning run resumes where it stopped.
    state = run.restore(abstract)
    if state is None and config.init_from:
      state = run.init_from_file(run.init_state())
    if mode == 'eval':
      if state is None:
        raise FileNotFoundError(f'mode=eval but no checkpoint in {workdir} and no --config.init_from=FILE to evaluate')
      step = int(jax.device_get(state.step))
      result = run.evaluate(state, step)
      if read_only and run.is_chief:  # nowhere to write: the results go to stdout
        print(json.dumps({'step': step, config.eval.split: result}), flush=True)
      return dict(eval=result, step=step, preempted=False)
    if state is None:
      state = run.init_state()
      num_params = sum(x.size for x in jax.tree.leaves(state.params))
      logging.info('Initialised %d parameters (%.2fM)', num_params, num_params / 1e6)
    return run.train(state, evaluate=mode == 'train_and_eval')
  finally:
    run.checkpointer.close()
    run.log.close()
