r"""Benchmarks a model's train and inference steps; prints one JSON line each.

  python scripts/benchmark.py --config=configs/imagenet.py:cpu_bench
  python scripts/benchmark.py --config=configs/imagenet.py:paper --batch_size=1 --mode=compile
  python scripts/benchmark.py --config=configs/benchmarks.py:attn224 --compare_chunk_sizes=0,512
  python scripts/benchmark.py --config=configs/imagenet.py:cpu_bench \
      --sweep=input_size --sweep_sizes=32,64,128
  python scripts/benchmark.py --model_preset=tiny --steps=2   # no configs/ needed

Lines (`measurement` field):
- `matmul_peak`: float32 FLOP/s of a jitted [n, n] @ [n, n] on the same
  devices, timed like the steps (median of `--steps` calls after a warm-up).
- `train`: the jitted train step (forward + backward + optimizer update,
  state buffers donated): lower/compile seconds, step times, examples/s,
  FLOPs, MFU, memory. `infer`: the forward pass with is_training=False.
- `compile`: lower + compile only, with HLO structure counts (while loops,
  dot instructions) that show whether shared blocks were compiled once.
- `sweep` / `sweep_ratio`: `--sweep=input_size`; the full model and its
  input-dependent part alone (one cross-attend, no latent Transformer) at
  each input size, and the cost ratios between sizes.
- `profile` (`--profile`): where the train step's CPU time goes.
- `chunk_ratio` (`--compare_chunk_sizes=0,512`): train steps at each
  attention chunk size in one process, then each one's XLA peak/temp memory
  and median/fastest step time relative to the first size's.

FLOPs: `flops` counts matmul/convolution multiply-adds as 2 (XLA's
convention) with loop bodies multiplied by their trip counts (see
perceiver_tools/perf.py); `xla_flops` is `compiled.cost_analysis()['flops']`,
which counts each while-loop body once and so undercounts looped models.
`hardware_peak`: the machine's matmul FLOP/s for the model's compute dtype,
the best over --hw_peak_sizes square matmuls by every available path (XLA,
numpy's BLAS for float32, PyTorch's oneDNN/MKL via --torch_python), each
path printed. MFU = flops / median step time / that peak; `mfu_best` =
flops / fastest step / that peak (the robust one when other processes share
the CPU: contention only ever slows a call down). `mfu_xla` divides by
XLA's own [n, n] matmul in this process instead (`matmul_peak`), which
flatters us wherever XLA's matmul is below the hardware's.
Memory: `xla_*_bytes` come from `compiled.memory_analysis()` (`xla_temp` is
XLA's peak scratch for intermediates; `xla_peak` = argument + output + temp -
aliased); `rss_peak_delta_bytes` is the growth of the process's peak
resident set during the measurement (includes compilation; 0 when an
earlier measurement in the same process already went higher).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple
from unittest import mock


from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import haiku as hk
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import optax

from perceiver import encoders
from perceiver import models
from perceiver_tools import perf

_CONFIG = config_flags.DEFINE_config_file(
  'config',
  None,
  'Experiment config file (configs/x.py:preset); its `model` section is '
  'benchmarked, and its `train`/`optimizer` sections if perceiver.train is present.',
  lock_config=False,
)
_PRESET = flags.DEFINE_string('model_preset', 'tiny', 'Built-in model when --config is absent.')
_BATCH = flags.DEFINE_integer('batch_size', 0, "Examples per step (0: the preset's).")
_INPUT = flags.DEFINE_string(
  'input_size', '', 'Index dims of one example: "H,W" (image), "T,H,W" (video), "N" (points, audio samples).'
)
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps after one warm-up step.')
_MODE = flags.DEFINE_enum('mode', 'all', ['train', 'infer', 'all', 'compile'], 'What to measure.')
_SWEEP = flags.DEFINE_enum('sweep', None, ['input_size'], 'Measure the cost as this grows.')
_SWEEP_SIZES = flags.DEFINE_string('sweep_sizes', '32,64,128', 'Image sides (or N for 1-D inputs) of the sweep.')
_CHUNK = flags.DEFINE_integer('chunk_size', -1, 'Override encoder.attention_chunk_size (-1: keep).')
_REMAT = flags.DEFINE_enum('remat', 'keep', ['keep', 'true', 'false'], 'Override encoder.remat.')
_DTYPE = flags.DEFINE_enum('compute_dtype', 'keep', ['keep', 'float32', 'bfloat16'], 'Override model.compute_dtype.')
_UNROLL = flags.DEFINE_bool(
  'unroll', False, 'Build the encoder with use_loops=False (shared blocks unrolled), to compare compile times.'
)
_PEAK_N = flags.DEFINE_integer('peak_size', 2048, 'Side of the square matmul for the peak (0: skip).')
_HW_SIZES = flags.DEFINE_list(
  'hw_peak_sizes',
  ['1024', '2048', '4096'],
  'Square matmul sizes whose best FLOP/s (over '
  'XLA, numpy and --torch_python) is the hardware peak MFU divides by (empty: skip).',
)
_TORCH_PYTHON = flags.DEFINE_string(
  'torch_python', '', 'An interpreter with torch, for its oneDNN/MKL matmul in the hardware peak (empty: skip).'
)
_PROFILE = flags.DEFINE_bool('profile', False, 'Profile the train step and summarise it.')
_COMPARE = flags.DEFINE_string(
  'compare_chunk_sizes',
  '',
  'Comma-separated attention chunk sizes '
  '(0: plain) measured one after another in this process, then their '
  'memory and step-time ratios to the first ("0,512").',
)

# Built-in models for use without configs/ (tests, quick checks).
BUILTIN_PRESETS: Dict[str, Dict[str, Any]] = {
  'tiny': dict(
    batch_size=2,
    input_size=(16, 16),
    model=dict(
      name='perceiver_io',
      input=dict(modality='image', num_bands=4, max_resolution=(16, 16)),
      # 3 blocks: block 0 follows the cross-attend, 1-2 run as a loop.
      encoder=dict(
        num_latents=8,
        latent_channels=16,
        num_blocks=3,
        num_self_attends_per_block=1,
        num_cross_attends=1,
        cross_attend_placement='start',
        num_self_attend_heads=2,
      ),
      decoder=dict(num_classes=10),
    ),
  ),
}

_DEFAULT_POINTS = 2048
_DEFAULT_AUDIO_SAMPLES = 61440


class _State(NamedTuple):
  """Train state of the fallback step (perceiver.train absent)."""

  step: jax.Array
  params: hk.Params
  model_state: hk.State
  opt_state: optax.OptState


def emit(record: Dict[str, Any]) -> None:
  """One JSON line on stdout (numbers rounded for reading)."""

  def clean(v):
    if isinstance(v, float):
      return v if math.isnan(v) else float(f'{v:.6g}')
    if isinstance(v, dict):
      return {k: clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
      return [clean(x) for x in v]
    return v

  print(json.dumps(clean(record), allow_nan=True), flush=True)


# ---------------------------------------------------------------------------
# Config, inputs, steps
# ---------------------------------------------------------------------------


def load_config() -> Tuple[ml_collections.ConfigDict, str, int, Optional[Tuple[int, ...]]]:
  """(config with a `model` section, its name, default batch, default input size).

  With --config the default batch is `train.batch_size` when the data are
  synthetic (a preset sized for this machine), else 8: the paper presets'
  batch of 1024 is a global batch for accelerator pods.
  """
  if _CONFIG.value is not None:
    config = ml_collections.ConfigDict(_CONFIG.value.to_dict())
    synthetic = 'data' in config and config.data.get('name') == 'synthetic'
    batch = int(config.train.batch_size) if synthetic and 'train' in config else 8
    return config, config_flags.get_config_filename(flags.FLAGS['config']), batch, None
  if _PRESET.value not in BUILTIN_PRESETS:
    raise app.UsageError(f'unknown --model_preset {_PRESET.value!r}; built-in: {sorted(BUILTIN_PRESETS)}')
  preset = BUILTIN_PRESETS[_PRESET.value]
  return (
    ml_collections.ConfigDict(dict(model=preset['model'])),
    f'builtin:{_PRESET.value}',
    preset['batch_size'],
    tuple(preset['input_size']),
  )


def apply_overrides(model_cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  cfg = ml_collections.ConfigDict(model_cfg.to_dict())
  if _CHUNK.value >= 0:
    cfg.encoder.attention_chunk_size = _CHUNK.value
  if _REMAT.value != 'keep':
    cfg.encoder.remat = _REMAT.value == 'true'
  if _DTYPE.value != 'keep':
    cfg.compute_dtype = _DTYPE.value
  if cfg.get('compute_dtype', 'auto') == 'auto':  # The dtype the model will run in here (MFU's peak).
    cfg.compute_dtype = models.resolve_compute_dtype('auto')
  return cfg


def default_input_size(config: ml_collections.ConfigDict) -> Tuple[int, ...]:
  """An example's index dims when neither the flag nor the preset gives them."""
  inp = config.model.input
  data = config.get('data')
  if data is not None and data.get('name') == 'synthetic':
    shape = tuple(data.inputs[inp.modality])
    return shape[:-1] if inp.modality in ('image', 'video', 'points') else shape
  if inp.modality == 'image':
    res = tuple(inp.get('max_resolution', ()) or ())
    ds = int(inp.get('spatial_downsample', 1)) if inp.get('prep_type') in ('conv', 'patches') else 1
    return tuple(r * ds for r in res) if res else (224, 224)
  if inp.modality == 'points':
    return (_DEFAULT_POINTS,)
  if inp.modality == 'audio':
    return (_DEFAULT_AUDIO_SAMPLES,)
  raise app.UsageError(f'give --input_size for modality {inp.modality!r}')


def make_batch(
  model_cfg: ml_collections.ConfigDict, batch: int, size: Sequence[int], seed: int = 0
) -> Dict[str, jax.Array]:
  """Random inputs [B, *size, C] keyed by modality, and int32 labels [B]."""
  modality = model_cfg.input.modality
  channels = {'image': (3,), 'video': (3,), 'points': (3,), 'audio': ()}
  if modality not in channels:
    raise app.UsageError(f'benchmark inputs for modality {modality!r} are not supported')
  k_x, k_y = jax.random.split(jax.random.PRNGKey(seed))
  x = jax.random.normal(k_x, (batch,) + tuple(size) + channels[modality], jnp.float32)
  y = jax.random.randint(k_y, (batch,), 0, int(model_cfg.decoder.num_classes), jnp.int32)
  return {modality: x, 'label': y}


def num_inputs(model_cfg: ml_collections.ConfigDict, size: Sequence[int]) -> int:
  """M, the length of the byte array the encoder attends to."""
  inp = model_cfg.input
  ds = int(inp.get('spatial_downsample', 1)) if inp.get('prep_type') in ('conv', 'patches') else 1
  if inp.modality == 'image':
    return int(size[0] // ds * (size[1] // ds))
  if inp.modality == 'audio':
    return int(size[0] // int(inp.get('samples_per_patch', 96)))
  return int(math.prod(size))


@contextlib.contextmanager
def maybe_unrolled(unroll: bool) -> Iterator[None]:
  """Builds encoders with use_loops=False (a measurement knob the config lacks)."""
  if not unroll:
    yield
    return
  with mock.patch.object(models, 'PerceiverEncoder', functools.partial(encoders.PerceiverEncoder, use_loops=False)):
    yield


def make_train_step(net: hk.TransformedWithState, config: ml_collections.ConfigDict) -> Tuple[Callable, Callable, str]:
  """(train_step(state, batch, rng), init_state(params, model_state), source).

  The project's `perceiver.train.make_train_step` when it and the config's
  train/optimizer sections exist; otherwise an equivalent LAMB + softmax
  cross-entropy step (same structure: value_and_grad, tx.update, apply).
  """
  try:
    from perceiver import train as train_lib  # pylint: disable=g-import-not-at-top
    from perceiver.train import optim  # pylint: disable=g-import-not-at-top
  except ImportError:
    train_lib = None
  if train_lib is not None and 'train' in config and 'optimizer' in config:
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.train.grad_accum_steps = 1
    schedule = optim.make_schedule(cfg.optimizer.schedule, steps_per_epoch=1000, total_steps=100_000)
    tx = optim.make_optimizer(cfg.optimizer, schedule)
    step = train_lib.make_train_step(net, tx, schedule, cfg)
    init = lambda p, s: train_lib.TrainState(jnp.zeros([], jnp.int32), p, s, tx.init(p))
    return step, init, 'perceiver.train.make_train_step'

  tx = optax.chain(optax.clip_by_global_norm(10.0), optax.lamb(1e-3, weight_decay=0.1))
  num_classes = int(config.model.decoder.num_classes)

  def loss_fn(params, model_state, rng, batch):
    inputs = {k: v for k, v in batch.items() if k != 'label'}
    logits, model_state = net.apply(params, model_state, rng, inputs, is_training=True)
    targets = jax.nn.one_hot(batch['label'], num_classes)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets).mean(), model_state

  def step(state: _State, batch, rng):
    (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, state.model_state, jax.random.fold_in(rng, state.step), batch
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return _State(state.step + 1, params, model_state, opt_state), {'loss': loss}

  init = lambda p, s: _State(jnp.zeros([], jnp.int32), p, s, tx.init(p))
  return step, init, 'scripts/benchmark.py fallback (optax LAMB + softmax CE)'


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------


def _compile(fn: Callable, args: Sequence[Any], donate: Tuple[int, ...] = ()) -> Tuple[Any, Dict[str, float]]:
  jitted = jax.jit(fn, donate_argnums=donate)
  t0 = time.perf_counter()
  lowered = jitted.lower(*args)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  return compiled, {'lower_s': t1 - t0, 'compile_s': t2 - t1}


def _memory_fields(compiled, rss_before: int) -> Dict[str, Any]:
  mem = perf.compiled_memory(compiled)
  out = {f'xla_{k}_bytes': v for k, v in mem.items()}
  rss = perf.max_rss_bytes()
  out.update(rss_peak_bytes=rss, rss_peak_delta_bytes=rss - rss_before)
  return out


def _mfu(
  flops: int, t: Dict[str, float], peak: Optional[Dict[str, float]], hw_peak: Optional[float]
) -> Dict[str, float]:
  """`mfu`: against the hardware's measured peak for the dtype (the honest
  figure); `mfu_xla`: against XLA's own square matmul in this process."""
  out = {}
  if hw_peak:
    out.update(perf.mfu(flops, t['median_s'], t['min_s'], hw_peak))
  if peak:
    out.update(
      mfu_xla=flops / t['median_s'] / peak['flops_per_s'], mfu_xla_best=flops / t['min_s'] / peak['best_flops_per_s']
    )
  return out


class Bench:
  """One model config at one batch and input size."""

  hw_peak: Optional[float] = None  # The machine's matmul FLOP/s (set by main).

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    model_cfg: ml_collections.ConfigDict,
    batch: int,
    size: Sequence[int],
    unroll: bool = False,
  ):
    self.config = config
    self.model_cfg = model_cfg
    self.batch_size = batch
    self.size = tuple(size)
    self.unroll = unroll
    self.batch = make_batch(model_cfg, batch, size)
    self.inputs = {k: v for k, v in self.batch.items() if k != 'label'}
    with maybe_unrolled(unroll):
      self.net = models.build_model(model_cfg)
      # Parameter shapes do not depend on the batch: init on one example.
      one = {k: v[:1] for k, v in self.inputs.items()}
      self.params, self.model_state = jax.jit(functools.partial(self.net.init, is_training=True))(
        jax.random.PRNGKey(0), one
      )
    self.num_params = int(sum(x.size for x in jax.tree.leaves(self.params)))
    self.rng = jax.random.PRNGKey(1)

  def describe(self) -> Dict[str, Any]:
    enc = self.model_cfg.encoder
    return dict(
      batch_size=self.batch_size,
      input_size=list(self.size),
      num_inputs=num_inputs(self.model_cfg, self.size),
      num_params=self.num_params,
      model=self.model_cfg.name,
      num_latents=int(enc.get('num_latents', 512)),
      latent_channels=int(enc.get('latent_channels', 1024)),
      attention_chunk_size=int(enc.get('attention_chunk_size', 0)),
      remat=bool(enc.get('remat', False)),
      compute_dtype=self.model_cfg.get('compute_dtype', 'float32'),
      unrolled=self.unroll,
    )

  def _train_parts(self):
    with maybe_unrolled(self.unroll):
      step, init, source = make_train_step(self.net, self.config)
      state = jax.jit(init)(self.params, self.model_state)
    return step, state, source

  def compile_only(self) -> Dict[str, Any]:
    rss0 = perf.max_rss_bytes()
    step, state, source = self._train_parts()
    with maybe_unrolled(self.unroll):
      flops = perf.matmul_flops(step, state, self.batch, self.rng)
      compiled, times = _compile(step, (state, self.batch, self.rng), donate=(0,))
    rec = dict(times, train_step=source, flops=flops.matmul, **perf.hlo_structure(compiled.as_text()))
    rec.update(perf.xla_cost(compiled))
    rec.update(_memory_fields(compiled, rss0))
    return rec

  def train(
    self, steps: int, peak: Optional[Dict[str, float]], profile: bool = False
  ) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
    rss0 = perf.max_rss_bytes()
    step, state, source = self._train_parts()
    args = (state, self.batch, self.rng)
    with maybe_unrolled(self.unroll):
      flops = perf.matmul_flops(step, *args)
      compiled, times = _compile(step, args, donate=(0,))
    rec = dict(times, train_step=source, flops=flops.matmul, unknown_trip_loops=flops.while_loops)
    rec.update(perf.xla_cost(compiled))
    holder = {'state': state}

    def call():
      holder['state'], metrics = compiled(holder['state'], self.batch, self.rng)
      return metrics

    self._train_call = call
    t = perf.summarize_times(perf.time_calls(call, steps))
    rec.update({f'step_{k}' if k != 'steps' else k: v for k, v in t.items()})
    rec['examples_per_s'] = self.batch_size / t['median_s']
    rec['achieved_flops_per_s'] = flops.matmul / t['median_s']
    rec.update(_mfu(flops.matmul, t, peak, self.hw_peak))
    rec.update(_memory_fields(compiled, rss0))
    rec['param_dtypes'] = perf.tree_dtypes(holder['state'].params)
    prof = perf.profile_step(call, compiled.as_text()) if profile else None
    return rec, prof

  def time_more(self, steps: int) -> List[float]:
    """Times `steps` more calls of the train step compiled by `train`."""
    return perf.time_calls(self._train_call, steps, warmup=0)

  def infer(self, steps: int, peak: Optional[Dict[str, float]]) -> Dict[str, Any]:
    rss0 = perf.max_rss_bytes()

    def forward(params, model_state, inputs):
      return self.net.apply(params, model_state, None, inputs, is_training=False)[0]

    args = (self.params, self.model_state, self.inputs)
    flops = perf.matmul_flops(forward, *args)
    compiled, times = _compile(forward, args)
    rec = dict(times, flops=flops.matmul)
    rec.update(perf.xla_cost(compiled))
    t = perf.summarize_times(perf.time_calls(lambda: compiled(*args), steps))
    rec.update({f'step_{k}' if k != 'steps' else k: v for k, v in t.items()})
    rec['examples_per_s'] = self.batch_size / t['median_s']
    rec.update(_mfu(flops.matmul, t, peak, self.hw_peak))
    rec.update(_memory_fields(compiled, rss0))
    return rec


def input_dependent_part(model_cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The model minus its latent Transformer: pre-processing, one cross-attend, decoder."""
  cfg = ml_collections.ConfigDict(model_cfg.to_dict())
  cfg.encoder.num_blocks = 0
  cfg.encoder.num_cross_attends = 1
  cfg.encoder.cross_attend_placement = 'start'
  return cfg


def sweep_sizes(model_cfg: ml_collections.ConfigDict) -> List[Tuple[int, ...]]:
  sides = [int(s) for s in _SWEEP_SIZES.value.split(',') if s]
  if model_cfg.input.modality == 'image':
    return [(s, s) for s in sides]
  return [(s,) for s in sides]


def run_sweep(config, model_cfg, batch: int, steps: int, step_kind: str, common: Dict[str, Any]) -> None:
  """Step cost vs input size: whole model and its input-dependent part.

  `step_kind` 'train' times the train step, 'infer' the forward pass.
  """
  results: Dict[Tuple[str, Tuple[int, ...]], Dict[str, Any]] = {}
  sizes = sweep_sizes(model_cfg)
  for size in sizes:
    for part, cfg in (('full', model_cfg), ('input_dependent', input_dependent_part(model_cfg))):
      bench = Bench(config, cfg, batch, size)
      rec = bench.train(steps, peak=None)[0] if step_kind == 'train' else bench.infer(steps, None)
      keep = ('flops', 'step_median_s', 'step_min_s', 'xla_temp_bytes', 'compile_s')
      row = dict(
        common, measurement='sweep', step=step_kind, part=part, **bench.describe(), **{k: rec[k] for k in keep}
      )
      results[(part, size)] = row
      emit(row)
  for small, big in zip(sizes, sizes[1:]):
    m_small = num_inputs(model_cfg, small)
    m_big = num_inputs(model_cfg, big)
    row = dict(
      common, measurement='sweep_ratio', step=step_kind, num_inputs=[m_small, m_big], input_ratio=m_big / m_small
    )
    for part in ('full', 'input_dependent'):
      a, b = results[(part, small)], results[(part, big)]
      row[f'{part}_time_ratio'] = b['step_median_s'] / a['step_median_s']
      row[f'{part}_flops_ratio'] = b['flops'] / a['flops']
    latent = [results[('full', s)]['flops'] - results[('input_dependent', s)]['flops'] for s in (small, big)]
    row['latent_flops'] = latent
    row['latent_flops_constant'] = latent[0] == latent[1]
    row['target_input_dependent_time_ratio'] = 1.1 * m_big / m_small
    row['meets_target'] = row['input_dependent_time_ratio'] <= row['target_input_dependent_time_ratio']
    emit(row)


def run_chunk_comparison(
  config,
  model_cfg,
  batch: int,
  size: Sequence[int],
  steps: int,
  peak: Optional[Dict[str, float]],
  common: Dict[str, Any],
) -> None:
  """Train steps at each --compare_chunk_sizes value, then ratios to the first.

  Memory is XLA's buffer assignment (`xla_peak_bytes`, `xla_temp_bytes`):
  the process's peak RSS only ever grows, so it cannot compare runs in one
  process. Step times are interleaved (all sizes once, then again) so that
  load from other processes hits every size alike.
  """
  chunks = [int(c) for c in _COMPARE.value.split(',') if c.strip()]
  if len(chunks) < 2:
    raise app.UsageError('--compare_chunk_sizes needs at least two sizes, e.g. 0,512')
  runs = []
  for chunk in chunks:
    cfg = ml_collections.ConfigDict(model_cfg.to_dict())
    cfg.encoder.attention_chunk_size = chunk
    bench = Bench(config, cfg, batch, size)
    rec, _ = bench.train(1, peak)
    runs.append((bench, rec))
  # Interleaved timing rounds.
  times: List[List[float]] = [[] for _ in chunks]
  for _ in range(steps):
    for i, (bench, _) in enumerate(runs):
      times[i] += bench.time_more(1)
  records = []
  for (bench, rec), t in zip(runs, times):
    s = perf.summarize_times(t)
    rec.update({f'step_{k}' if k != 'steps' else k: v for k, v in s.items()})
    rec['examples_per_s'] = bench.batch_size / s['median_s']
    rec.update(_mfu(rec['flops'], s, peak, bench.hw_peak))
    records.append(rec)
    emit(dict(common, measurement='train', **bench.describe(), **rec))
  base = records[0]
  for chunk, rec in zip(chunks[1:], records[1:]):
    emit(
      dict(
        common,
        measurement='chunk_ratio',
        chunk_sizes=[chunks[0], chunk],
        peak_memory_ratio=rec['xla_peak_bytes'] / base['xla_peak_bytes'],
        temp_memory_ratio=rec['xla_temp_bytes'] / base['xla_temp_bytes'],
        step_time_ratio=rec['step_median_s'] / base['step_median_s'],
        step_time_ratio_best=rec['step_min_s'] / base['step_min_s'],
      )
    )


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config, name, batch, size = load_config()
  model_cfg = apply_overrides(config.model)
  batch = _BATCH.value or batch
  if _INPUT.value:
    size = tuple(int(s) for s in _INPUT.value.split(','))
  size = size or default_input_size(config)
  common = dict(
    config=name, devices=[str(d) for d in jax.devices()], loadavg_1m=os.getloadavg()[0], cpu_count=os.cpu_count()
  )
  peak = None
  if _PEAK_N.value > 0 and _MODE.value != 'compile':
    peak = perf.matmul_peak(_PEAK_N.value, max(_STEPS.value, 8))
    emit(dict(common, measurement='matmul_peak', **peak))
  hw_peak = None
  if _HW_SIZES.value and _MODE.value != 'compile':
    hw = perf.hardware_matmul_peak(
      model_cfg.get('compute_dtype', 'float32'),
      [int(n) for n in _HW_SIZES.value],
      repeats=max(_STEPS.value, 3),
      torch_python=_TORCH_PYTHON.value or None,
    )
    emit(dict(common, measurement='hardware_peak', **hw))
    hw_peak = hw['peak_flops_per_s']
  Bench.hw_peak = hw_peak  # Read by every Bench made below.
  if _SWEEP.value == 'input_size':
    if _MODE.value == 'compile':
      raise app.UsageError('--sweep times steps: use --mode=train, infer or all (= train)')
    run_sweep(config, model_cfg, batch, _STEPS.value, 'infer' if _MODE.value == 'infer' else 'train', common)
    return
  if _COMPARE.value:
    run_chunk_comparison(config, model_cfg, batch, size, _STEPS.value, peak, common)
    return
  bench = Bench(config, model_cfg, batch, size, unroll=_UNROLL.value)
  if _MODE.value == 'compile':
    emit(dict(common, measurement='compile', **bench.describe(), **bench.compile_only()))
    return
  if _MODE.value in ('train', 'all'):
    rec, prof = bench.train(_STEPS.value, peak, profile=_PROFILE.value)
    emit(dict(common, measurement='train', **bench.describe(), **rec))
    if prof:
      emit(dict(common, measurement='profile', **bench.describe(), **prof))
  if _MODE.value in ('infer', 'all'):
    emit(dict(common, measurement='infer', **bench.describe(), **bench.infer(_STEPS.value, peak)))


if __name__ == '__main__':
  app.run(main)
