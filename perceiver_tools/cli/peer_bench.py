r"""Times our model against the same model in other implementations.

  python scripts/peer_bench.py --vs=hf,lucidrains,reference \
      --peer_python=/path/to/torch-venv/bin/python \
      --reference_path=/path/to/deepmind-research --rounds=7

Each implementation runs in a process of its own (perceiver_tools/peers.py,
under --peer_python for the PyTorch peers, since they need torch and we need
JAX), built from OUR config, and the processes take turns: one train (or
inference) step each, A B then B A, for --rounds rounds, so load from other
processes on the machine hits both alike. Cases (`--cases`):

  io_train_b2, io_train_b8   configs/imagenet.py:cpu_bench's Perceiver IO,
                             train step at batch 2 / 8 (vs hf, reference)
  io_infer_b16               the same model, inference at batch 16
  perceiver_train_b4         the original Perceiver: 4 interleaved
                             cross-attends (2..4 shared), 128 x 512 latents,
                             6 shared self-attends per block, 64x64 input,
                             batch 4 (vs lucidrains)
  paper_perceiver_train      configs/imagenet.py:paper's Perceiver at 224 x 224
                             (vs lucidrains), batch 32 unless --batch_size
  io_a_train                 configs/imagenet.py:io_fourier (Perceiver IO
                             config A) at 224 x 224 (vs hf, reference)
  tiny_io_train, tiny_perceiver_train   seconds-long versions for tests

A train step is forward + cross-entropy + backward + global-norm clip + AdamW
in every implementation (JAX jitted with the state donated, PyTorch eager).
Peers: `hf` (transformers), `lucidrains` (perceiver-pytorch) from the package
index (`pip install torch transformers perceiver-pytorch` in the interpreter
given by --peer_python); `reference` is DeepMind's Perceiver IO code, which
is not on the index: clone github.com/deepmind/deepmind-research and pass the
folder holding its `perceiver/` as --reference_path (runs under this
interpreter, it needs JAX and Haiku). A peer that cannot be imported is named
in a `peer_unavailable` line and on stderr; the others still run.

Lines (JSON, `measurement` field):
  peer_setup   each implementation's parameter count, versions, threads
  peer_step    its step times (median, min, all), peak RSS of its process
  peer_cold_start  (JAX implementations, --compilation_cache on) the first
               process, which compiled: its set-up time and peak RSS. The
               timed process then loads the compiled step from the cache (as
               the launcher does on a restart), so `peer_step` and the RSS
               ratio are the warm figures; rss_ratio_cold is the cold one
  peer_ratio   ours / peer: median and best step-time ratios, peak-RSS
               ratio, and whether the parameter counts match (or why not)
  peer_unavailable  an implementation that cannot be imported, or whose
               process died while setting up (on a GPU: out of memory at
               that batch); the others still run
  peer_case_failed  our process died while setting up, or any process
               during the timed rounds: the case is skipped, the next cases
               still run, and the exit status is 1
  hardware_peak  (--mfu) the machine's matmul peak per dtype: best of
               square matmuls by XLA, numpy and PyTorch (--peer_python)
  peer_mfu     (--mfu, train cases) our step's matmul FLOPs / median step
               time / that peak, in float32 and in bfloat16 compute (a
               third worker, `ours_bf16`, takes its turn in the same
               rounds), and the bf16 speed-up (float32 time / bf16 time).
               On the CPU also `ours_onednn` (model.cpu_matmul=onednn_bf16:
               float32 compute, linear layers and attention on bf16 operands in oneDNN;
               needs the cpu-bf16 extra) with its speed-up, and the PyTorch
               peers again under bf16 autocast (`hf_bf16`, `lucidrains_bf16`)
               so that `peer_ratio` lines with ours=ours_onednn compare bf16
               with bf16 as well as with the float32 peers

`--attention_ab` adds `ours_plain_attention`: ours with every attention
call on the plain einsum path, an A/B of the cuDNN selection on a GPU.
`--ours_b_model=encoder.project_positions_once=false` adds `ours+model`:
ours with those model-config overrides, an A/B of a model option
(`--ours_b_xla_flags` does the same for XLA options, as `ours+flags`).
`--summarize=FILE` prints a short table of a run's JSON lines.

The figures in the README's Performance section come from one run of:

  python scripts/peer_bench.py --vs=hf,lucidrains,reference \
      --peer_python=/path/to/torch-venv/bin/python --rounds=9
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence

from absl import flags

from perceiver_configs import common
from perceiver_configs import imagenet
from perceiver_tools.cli import _flags

WORKER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'peers.py')
PEERS = ('hf', 'lucidrains', 'reference')

FLAGS = flags.FlagValues()

_VS = flags.DEFINE_list('vs', list(PEERS), f'Peers to compare with: any of {",".join(PEERS)}.', flag_values=FLAGS)
_CASES = flags.DEFINE_list(
  'cases',
  ['io_train_b2', 'io_train_b8', 'io_infer_b16', 'perceiver_train_b4'],
  'Which cases (see the module doc).',
  flag_values=FLAGS,
)
_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Interleaved rounds (one step per implementation each).', flag_values=FLAGS)
_STEPS = flags.DEFINE_integer('steps_per_turn', 1, 'Steps an implementation runs per turn.', flag_values=FLAGS)
_PEER_PYTHON = flags.DEFINE_string(
  'peer_python', sys.executable, 'Interpreter with torch/transformers/perceiver-pytorch.', flag_values=FLAGS
)
_REFERENCE = flags.DEFINE_string(
  'reference_path', '', 'deepmind-research checkout (holds perceiver/).', flag_values=FLAGS
)
_THREADS = flags.DEFINE_integer('threads', 0, 'PyTorch intra-op threads (0: its default).', flag_values=FLAGS)
_BATCH = flags.DEFINE_integer('batch_size', 0, "Override every case's batch (0: keep).", flag_values=FLAGS)
_DTYPE = flags.DEFINE_enum(
  'compute_dtype',
  'keep',
  ['keep', 'float32', 'bfloat16'],
  'Compute dtype of every implementation (PyTorch: autocast).',
  flag_values=FLAGS,
)
_DEVICE = flags.DEFINE_enum(
  'device', 'cpu', ['cpu', 'gpu'], 'Where the PyTorch peers run (JAX uses its default backend).', flag_values=FLAGS
)
_AB_FLAGS = flags.DEFINE_string(
  'ours_b_xla_flags',
  None,
  'Also run ours with XLA_FLAGS set '
  'to this, as a peer named "ours+flags": an interleaved A/B '
  'of XLA options in one run.',
  flag_values=FLAGS,
)
_AB_MODEL = flags.DEFINE_list(
  'ours_b_model',
  None,
  'Also run ours with these model-config overrides (section.field=value, e.g. '
  'encoder.project_positions_once=false), as a worker named "ours+model": an '
  'interleaved A/B of a model option in one run.',
  flag_values=FLAGS,
)
_MFU = flags.DEFINE_bool(
  'mfu',
  True,
  'Measure the hardware matmul peak (float32, bfloat16) and run ours in '
  'bfloat16 as well in train cases, for MFU lines.',
  flag_values=FLAGS,
)
_HOST_MEMORY = flags.DEFINE_enum(
  'host_memory',
  'reuse',
  ['reuse', 'system'],
  "Our worker's host allocator settings, as the launcher's --host_memory (reuse: its default).",
  flag_values=FLAGS,
)
_COMPILATION_CACHE = flags.DEFINE_string(
  'compilation_cache',
  'fresh',
  "The JAX workers' persistent compilation cache, as the launcher's --compilation_cache: fresh = a new "
  'temporary directory, filled by a first (untimed) process per JAX implementation whose peak RSS is reported '
  'as the cold start, so that the timed process loads its compiled step as a restarted run does; off; or a '
  'directory.',
  flag_values=FLAGS,
)
_PEAK_SIZES = flags.DEFINE_list(
  'peak_sizes', ['1024', '2048', '4096'], 'Square matmul sizes for the hardware peak.', flag_values=FLAGS
)
_ATTENTION_AB = flags.DEFINE_bool(
  'attention_ab',
  False,
  'Also run ours with every attention call on the plain einsum path, as a worker named '
  '"ours_plain_attention": an interleaved A/B of the fused (cuDNN) attention selection on a GPU.',
  flag_values=FLAGS,
)
_SUMMARIZE = flags.DEFINE_string(
  'summarize', None, 'Print a short table of an earlier run (its JSON lines file) and exit.', flag_values=FLAGS
)
_CPUS = flags.DEFINE_list(
  'cpus',
  [],
  'Pin every worker to these CPUs (e.g. 0 for one core '
  'each: robust to load from other processes; PyTorch then runs '
  'len(cpus) threads). Empty: no pinning.',
  flag_values=FLAGS,
)


class WorkerDied(RuntimeError):
  """A worker process ended without answering; the message holds the tail of its stderr."""

  def __init__(self, impl: str, stderr_tail: str):
    super().__init__(f'{impl} worker died: {stderr_tail}')
    lines = [x for x in stderr_tail.splitlines() if x.strip()]
    # For one-line reports: the last line it wrote (its exception).
    self.last_line = f'{impl} worker died: {lines[-1][:300] if lines else "no output"}'


class _UsageError(ValueError):
  """A bad --vs / --cases value: reported in one line, exit status 2."""


def _scalar(text: str) -> Any:
  """An override's value: true/false, an int, a float, else the string."""
  if text.lower() in ('true', 'false'):
    return text.lower() == 'true'
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def with_overrides(model: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
  """A copy of a model config dict with `section.field=value` overrides set;
  the typed schema then checks names and values (build_model)."""
  model = copy.deepcopy(model)
  for item in overrides:
    path, sep, value = item.partition('=')
    keys = path.split('.')
    if not sep or not all(keys):
      raise _UsageError(f'--ours_b_model: expected section.field=value, got {item!r}')
    node = model
    for key in keys[:-1]:
      node = node.setdefault(key, {})
      if not isinstance(node, dict):
        raise _UsageError(f'--ours_b_model: {path!r}: {key!r} is not a config section')
    node[keys[-1]] = _scalar(value)
  return model


def _emit(record: Dict[str, Any]) -> None:
  print(json.dumps(record), flush=True)


def _io_model() -> Dict[str, Any]:
  return imagenet.cpu_bench().model.to_dict()


def _perceiver_model() -> Dict[str, Any]:
  """The ImageNet `paper` Perceiver at cpu_bench's size: 4 cross-attends."""
  model = imagenet.paper().model
  model.input.max_resolution = (64, 64)
  model.encoder = common.model_encoder(num_latents=128, latent_channels=512, num_blocks=4, num_cross_attends=4)
  return model.to_dict()


def _paper_perceiver_model() -> Dict[str, Any]:
  """configs/imagenet.py:paper's Perceiver (8 cross-attends, 512 x 1024 latents)."""
  return imagenet.paper().model.to_dict()


def _tiny(name: str) -> Dict[str, Any]:
  model = common.model(
    name,
    10,
    input=common.model_input(num_bands=4, max_resolution=(16, 16)),
    encoder=common.tiny_encoder(
      num_cross_attends=1 if name == 'perceiver_io' else 2,
      cross_attend_placement='start' if name == 'perceiver_io' else 'interleaved',
    ),
  )
  return model.to_dict()


def case_spec(case: str) -> Dict[str, Any]:
  """(model config dict, batch, input size, mode) of a named case."""
  cases = {
    'io_train_b2': (_io_model, 2, 64, 'train'),
    'io_train_b8': (_io_model, 8, 64, 'train'),
    'io_infer_b16': (_io_model, 16, 64, 'infer'),
    'perceiver_train_b4': (_perceiver_model, 4, 64, 'train'),
    # The paper-size models at 224 x 224 (accelerators: scripts/gpu_bench.sh).
    'paper_perceiver_train': (_paper_perceiver_model, 32, 224, 'train'),
    'io_a_train': (lambda: imagenet.io_fourier().model.to_dict(), 32, 224, 'train'),
    'tiny_io_train': (lambda: _tiny('perceiver_io'), 2, 16, 'train'),
    'tiny_perceiver_train': (lambda: _tiny('perceiver'), 2, 16, 'train'),
  }
  if case not in cases:
    raise _UsageError(f'unknown --cases entry {case!r}; known: {sorted(cases)}')
  make, batch, side, mode = cases[case]
  model = make()
  if _DTYPE.value != 'keep':
    model['compute_dtype'] = _DTYPE.value
  if model.get('compute_dtype', 'auto') == 'auto':
    # Resolved here, so that the PyTorch peers (autocast) compute in the same dtype as ours.
    from perceiver import models as models_lib  # pylint: disable=g-import-not-at-top

    model['compute_dtype'] = models_lib.resolve_compute_dtype('auto', 'gpu' if _DEVICE.value == 'gpu' else 'cpu')
  return dict(model=model, batch_size=_BATCH.value or batch, input_size=[side, side], mode=mode, device=_DEVICE.value)


def peers_for(model: Dict[str, Any], wanted: Sequence[str]) -> List[str]:
  """The peers whose model family matches: HF and DeepMind's code are
  Perceiver IO (one cross-attend); lucidrains' is the interleaved Perceiver."""
  io_like = model['name'] == 'perceiver_io'
  fits = {'hf': io_like, 'reference': io_like, 'lucidrains': not io_like}
  return [p for p in wanted if fits[p]]


class Worker:
  """One implementation's process, driven over its stdin/stdout."""

  def __init__(self, impl: str, spec: Dict[str, Any], python: str, env: Dict[str, str], label: Optional[str] = None):
    self.impl = label or impl
    # A file, not a pipe: a worker that logs much (XLA on a GPU) must not block on a full pipe nobody reads.
    self._stderr = tempfile.TemporaryFile(mode='w+')
    self.proc = subprocess.Popen(
      [python, WORKER, f'--impl={impl}'],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      stderr=self._stderr,
      text=True,
      env=env,
    )
    self.setup_error: Optional[WorkerDied] = None
    try:
      self._send(spec)
      self.ready = self._recv()
    except (OSError, WorkerDied):
      # It died while setting up (on a GPU: out of memory at this batch), maybe
      # before reading its spec: a peer is then reported like one that cannot be imported.
      self.setup_error = self._died()
      self.ready = {'unavailable': self.setup_error.last_line}

  def _send(self, obj: Dict[str, Any]) -> None:
    self.proc.stdin.write(json.dumps(obj) + '\n')
    self.proc.stdin.flush()

  def _recv(self) -> Dict[str, Any]:
    line = self.proc.stdout.readline()
    if not line:
      raise self._died()
    return json.loads(line)

  def _died(self) -> WorkerDied:
    self.proc.wait(timeout=60)
    self._stderr.seek(0)
    return WorkerDied(self.impl, self._stderr.read()[-3000:])

  def time(self, steps: int) -> List[float]:
    self._send({'steps': steps})
    return self._recv()['times']

  def close(self) -> Dict[str, Any]:
    if 'unavailable' in self.ready or self.proc.poll() is not None:  # That worker has already exited.
      self.proc.wait(timeout=60)
      return {}
    try:
      self._send({'quit': True})
      out = self._recv()
    except (OSError, WorkerDied):  # It died meanwhile (e.g. out of device memory).
      self.kill()
      return {}
    self.proc.wait(timeout=60)
    return out

  def kill(self) -> None:
    """Ends the process (a failed case must not keep its device memory)."""
    if self.proc.poll() is None:
      self.proc.kill()
    self.proc.wait(timeout=60)


def _load() -> float:
  return round(os.getloadavg()[0], 2)


def hardware_peaks() -> Dict[str, float]:
  """Emits a hardware_peak line per dtype; returns dtype -> FLOP/s.

  With --cpus, measured on those CPUs, as the workers run (the PyTorch
  subprocess inherits the pinning), so the MFU compares like with like.
  """
  if _CPUS.value:
    os.sched_setaffinity(0, [int(c) for c in _CPUS.value])
  from perceiver_tools import perf  # pylint: disable=g-import-not-at-top

  peaks = {}
  for dtype in ('float32', 'bfloat16'):
    hw = perf.hardware_matmul_peak(
      dtype,
      [int(n) for n in _PEAK_SIZES.value],
      repeats=5,
      torch_python=_PEER_PYTHON.value,
      # On a GPU one matmul is a millisecond: queue several per timing so launch overhead does not count.
      inner=10 if _DEVICE.value == 'gpu' else 1,
      torch_device=_DEVICE.value,
    )
    _emit(dict(measurement='hardware_peak', loadavg_1m=_load(), **hw))
    peaks[dtype] = hw['peak_flops_per_s']
  return peaks


def _mfu_record(case: str, spec: Dict[str, Any], results: Dict[str, Any], peaks: Dict[str, float]) -> Dict[str, Any]:
  """ours (float32, or the config's dtype) and ours_bf16 against the peak of their dtype."""
  from perceiver_tools import perf  # pylint: disable=g-import-not-at-top

  rec: Dict[str, Any] = dict(measurement='peer_mfu', case=case, batch_size=spec['batch_size'])
  variants = (
    ('ours', spec['model'].get('compute_dtype') or 'float32'),
    ('ours_bf16', 'bfloat16'),
    ('ours_onednn', 'bfloat16'),  # bf16 matmul operands: against the bf16 peak
    ('ours_plain_attention', spec['model'].get('compute_dtype') or 'float32'),
  )
  for impl, dtype in variants:
    res = results.get(impl)
    if not res or not res.get('matmul_flops'):
      continue
    if impl != 'ours' and results.get('ours', {}).get('matmul_flops'):
      # The model's FLOPs do not depend on how its matmuls run (see perf._eqn_own_flops).
      res = dict(res, matmul_flops=results['ours']['matmul_flops'])
    peak = peaks.get('bfloat16' if dtype == 'bfloat16' else 'float32')
    achieved = res['matmul_flops'] / res['median_s']
    rec[impl] = dict(
      compute_dtype=dtype,
      matmul_flops=res['matmul_flops'],
      median_s=res['median_s'],
      achieved_flops_per_s=achieved,
      hardware_peak_flops_per_s=peak,
      **(perf.mfu(res['matmul_flops'], res['median_s'], res['min_s'], peak) if peak else dict(mfu=None, mfu_best=None)),
    )
  for impl, key in (
    ('ours_bf16', 'bf16_speedup'),
    ('ours_onednn', 'onednn_bf16_speedup'),
    ('ours_plain_attention', 'plain_attention_speedup'),
  ):
    if 'ours' in rec and impl in rec:
      rec[key] = rec['ours']['median_s'] / rec[impl]['median_s']
  return rec


_FRESH_CACHE: List[str] = []


def _cache_dir() -> Optional[str]:
  """--compilation_cache as a directory (one fresh temporary one per run), or None."""
  value = _COMPILATION_CACHE.value
  if value == 'off':
    return None
  if value != 'fresh':
    os.makedirs(os.path.expanduser(value), exist_ok=True)
    return os.path.expanduser(value)
  if not _FRESH_CACHE:
    import atexit  # pylint: disable=g-import-not-at-top
    import shutil  # pylint: disable=g-import-not-at-top
    import tempfile  # pylint: disable=g-import-not-at-top

    _FRESH_CACHE.append(tempfile.mkdtemp(prefix='peer_bench_jax_cache_'))
    atexit.register(shutil.rmtree, _FRESH_CACHE[0], ignore_errors=True)  # a fresh cache is this run's only
  return _FRESH_CACHE[0]


def _base_impl(label: str) -> str:
  """The implementation a worker label runs: ours+flags, ours_bf16 and
  ours_onednn are ours; hf_bf16 / lucidrains_bf16 are the PyTorch peers."""
  return 'ours' if label.startswith('ours') else label.removesuffix('_bf16')


def _start_worker(impl: str, spec: Dict[str, Any], bf16: Dict[str, Any], python: str, base_env) -> 'Worker':
  """The worker process of one implementation label (see the module doc)."""
  if impl == 'ours+flags':
    return Worker('ours', spec, python, dict(base_env, XLA_FLAGS=_AB_FLAGS.value), label=impl)
  if impl == 'ours+model':
    return Worker(
      'ours', dict(spec, model=with_overrides(spec['model'], _AB_MODEL.value)), python, base_env, label=impl
    )
  if impl == 'ours_plain_attention':
    return Worker('ours', dict(spec, attention='plain'), python, base_env, label=impl)
  if impl == 'ours_onednn':
    return Worker('ours', dict(spec, model=dict(spec['model'], cpu_matmul='onednn_bf16')), python, base_env, label=impl)
  if impl.endswith('_bf16'):
    return Worker(_base_impl(impl), bf16, python, base_env, label=impl)
  return Worker(impl, spec, python, base_env)


def run_case(case: str, wanted: Sequence[str], peaks: Optional[Dict[str, float]] = None) -> None:
  spec = case_spec(case)
  spec.update(
    threads=_THREADS.value or len(_CPUS.value),
    reference_path=_REFERENCE.value,
    cpus=[int(c) for c in _CPUS.value],
    host_memory=_HOST_MEMORY.value,
    compilation_cache_dir=_cache_dir(),
  )
  base_env = dict(os.environ)
  workers: List[Worker] = []
  cold_rss: Dict[str, Optional[int]] = {}
  extra = ['ours+flags'] if _AB_FLAGS.value is not None else []
  if _AB_MODEL.value:
    extra.append('ours+model')
  if _ATTENTION_AB.value:
    extra.append('ours_plain_attention')
  bf16 = dict(spec, model=dict(spec['model'], compute_dtype='bfloat16'))
  if peaks is not None and spec['mode'] == 'train' and spec['model'].get('compute_dtype') != 'bfloat16':
    extra.append('ours_bf16')
    if _DEVICE.value == 'cpu':
      # float32 compute, linear layers' matmuls on bf16 operands in oneDNN;
      # the PyTorch peers then also run in bf16 (autocast), as `<peer>_bf16`.
      extra.append('ours_onednn')
  peers = peers_for(spec['model'], wanted)
  if 'ours_onednn' in extra:
    peers += [f'{p}_bf16' for p in peers if p in ('hf', 'lucidrains')]
  for impl in ['ours'] + extra + peers:
    python = _PEER_PYTHON.value if _base_impl(impl) in ('hf', 'lucidrains') else sys.executable
    # Started one at a time so that no compile overlaps another's warm-up.
    w = _start_worker(impl, spec, bf16, python, base_env)
    if spec.get('compilation_cache_dir') and _base_impl(impl) in ('ours', 'reference'):
      # That process compiled into the cache: its peak RSS is the cold start.
      # The timed process loads the compiled step, as a restarted run does.
      if 'unavailable' not in w.ready:
        cold = w.close()
        cold_rss[impl] = cold.get('rss_peak_bytes')
        _emit(
          dict(
            measurement='peer_cold_start',
            case=case,
            impl=impl,
            setup_s=w.ready.get('setup_s'),
            rss_peak_bytes=cold.get('rss_peak_bytes'),
          )
        )
        w = _start_worker(impl, spec, bf16, python, base_env)
    if impl == 'ours' and w.setup_error:
      raise w.setup_error  # No case without ours (it starts first: no other worker to stop).
    if 'unavailable' in w.ready:
      _emit(dict(measurement='peer_unavailable', case=case, impl=impl, reason=w.ready['unavailable']))
      print(f'peer_bench: {w.ready["unavailable"]}', file=sys.stderr)
      w.close()
      continue
    _emit(
      dict(measurement='peer_setup', case=case, impl=impl, batch_size=spec['batch_size'], mode=spec['mode'], **w.ready)
    )
    workers.append(w)
  times: Dict[str, List[float]] = {w.impl: [] for w in workers}
  loads = []
  try:
    for r in range(_ROUNDS.value):
      loads.append(_load())
      # A B, then B A: neither always runs right after the other.
      for w in workers if r % 2 == 0 else workers[::-1]:
        times[w.impl] += w.time(_STEPS.value)
  finally:
    closing = {w.impl: w.close() for w in workers}
  results = {}
  for w in workers:
    t = times[w.impl]
    results[w.impl] = dict(
      median_s=statistics.median(t),
      min_s=min(t),
      rss_peak_bytes=closing[w.impl].get('rss_peak_bytes'),
      device_peak_bytes=closing[w.impl].get('device_peak_bytes'),
      num_params=w.ready['num_params'],
      comparable_params=w.ready.get('comparable_params', w.ready['num_params']),
      matmul_flops=w.ready.get('matmul_flops'),
    )
    _emit(
      dict(
        measurement='peer_step',
        case=case,
        impl=w.impl,
        mode=spec['mode'],
        batch_size=spec['batch_size'],
        times_s=[round(x, 4) for x in t],
        loadavg_1m=loads,
        **results[w.impl],
      )
    )
  if peaks is not None and spec['mode'] == 'train':
    _emit(_mfu_record(case, spec, results, peaks))
  for ours_impl in ('ours', 'ours_onednn'):
    _emit_ratios(case, spec, ours_impl, results, workers, loads, cold_rss)


def _emit_ratios(case, spec, ours_impl, results, workers, loads, cold_rss) -> None:
  """One `peer_ratio` line per peer: `ours_impl`'s time and RSS over the peer's."""
  ours = results.get(ours_impl)
  for impl, res in results.items():
    if impl.startswith('ours') or ours is None:
      continue
    rec = dict(
      measurement='peer_ratio',
      case=case,
      ours=ours_impl,
      peer=impl,
      mode=spec['mode'],
      batch_size=spec['batch_size'],
      rounds=_ROUNDS.value,
      loadavg_1m=loads,
      time_ratio=ours['median_s'] / res['median_s'],
      time_ratio_best=ours['min_s'] / res['min_s'],
      rss_ratio=(
        ours['rss_peak_bytes'] / res['rss_peak_bytes'] if ours['rss_peak_bytes'] and res['rss_peak_bytes'] else None
      ),
      params=[ours['num_params'], res['num_params']],
      params_match=ours['num_params'] == res['num_params'],
    )
    if cold_rss.get(ours_impl) and res['rss_peak_bytes']:
      rec['rss_ratio_cold'] = cold_rss[ours_impl] / res['rss_peak_bytes']
    if not rec['params_match']:
      note = next((w.ready.get('params_note') for w in workers if w.impl == impl), None)
      rec['params_note'] = note
      rec['comparable_params_match'] = ours['num_params'] == res['comparable_params']
      if not rec['comparable_params_match']:
        print(
          f'peer_bench: {case}: parameter counts differ and the difference is not '
          f'explained: ours {ours["num_params"]}, {impl} {res["num_params"]} '
          f'(comparable {res["comparable_params"]})',
          file=sys.stderr,
        )
    _emit(rec)


def summarize(lines: Sequence[str]) -> List[str]:
  """A short table of a run's JSON lines: what a reader wants at the end of a long log."""
  recs = []
  for line in lines:
    try:
      rec = json.loads(line)
    except ValueError:
      continue
    if isinstance(rec, dict):
      recs.append(rec)
  gb = lambda b: f'{b / 1e9:.1f}' if b else '-'
  out = []
  for r in recs:
    if r.get('measurement') == 'hardware_peak':
      paths = ', '.join(
        f'{k} {v["best_flops_per_s"] / 1e12:.1f}' for k, v in r['paths'].items() if 'best_flops_per_s' in v
      )
      out.append(f'peak {r["dtype"]}: {r["peak_flops_per_s"] / 1e12:.1f} TFLOP/s ({paths})')
  out.append(f'{"case":<24} {"impl":<20} {"batch":>5} {"median s":>9} {"dev GB":>7} {"RSS GB":>7}')
  for r in recs:
    if r.get('measurement') == 'peer_step':
      out.append(
        f'{r["case"]:<24} {r["impl"]:<20} {r["batch_size"]:>5} {r["median_s"]:>9.4f} '
        f'{gb(r.get("device_peak_bytes")):>7} {gb(r.get("rss_peak_bytes")):>7}'
      )
  for r in recs:
    m = r.get('measurement')
    if m == 'peer_ratio':
      out.append(f'{r["case"]}: {r["ours"]} / {r["peer"]} = {r["time_ratio"]:.3f} (best {r["time_ratio_best"]:.3f})')
    elif m == 'peer_mfu':
      for impl in ('ours', 'ours_bf16', 'ours_onednn', 'ours_plain_attention'):
        if r.get(impl) and r[impl].get('mfu') is not None:
          v = r[impl]
          out.append(
            f'{r["case"]}: {impl} MFU {v["mfu"]:.3f} ({v["compute_dtype"]}, '
            f'{v["achieved_flops_per_s"] / 1e12:.1f} TFLOP/s of {v["hardware_peak_flops_per_s"] / 1e12:.1f})'
          )
    elif m in ('peer_unavailable', 'peer_case_failed'):
      out.append(f'{r["case"]}: {m} {r.get("impl", "")} {r.get("reason") or r.get("error")}')
  return out


def main(argv: Optional[List[str]] = None) -> int:
  _flags.parse(FLAGS, argv, __doc__)
  if _SUMMARIZE.value:
    try:
      with open(_SUMMARIZE.value) as f:
        print('\n'.join(summarize(f.read().splitlines())))
    except OSError as e:
      print(f'peer_bench: error: --summarize: cannot read {_SUMMARIZE.value}: {e.strerror}', file=sys.stderr)
      return 2
    return 0
  try:
    unknown = [p for p in _VS.value if p not in PEERS]
    if unknown:
      raise _UsageError(f'--vs: unknown peer(s) {unknown}; known: {",".join(PEERS)}')
    for case in _CASES.value:
      spec = case_spec(case)  # Fails on a bad name before anything runs.
      if _AB_MODEL.value:
        from perceiver import config as config_lib  # pylint: disable=g-import-not-at-top

        try:
          config_lib.parse_model_config(with_overrides(spec['model'], _AB_MODEL.value))
        except config_lib.ModelConfigError as e:
          raise _UsageError(f'--ours_b_model: {e}') from None
  except _UsageError as e:
    print(f'peer_bench: error: {e}', file=sys.stderr)
    return 2
  command = ['python', 'scripts/peer_bench.py'] + list(sys.argv[1:] if argv is None else argv)
  _emit(dict(measurement='peer_bench_command', command=' '.join(command), cpus=os.cpu_count(), loadavg_1m=_load()))
  peaks = hardware_peaks() if _MFU.value else None
  failed = 0
  for case in _CASES.value:
    try:
      run_case(case, _VS.value, peaks)
    except WorkerDied as e:  # e.g. out of device memory: the other cases still run.
      failed += 1
      _emit(dict(measurement='peer_case_failed', case=case, error=e.last_line))
      print(f'peer_bench: {case} failed: {e}', file=sys.stderr)
  return 1 if failed else 0


def run() -> None:
  sys.exit(main())


if __name__ == '__main__':
  run()
