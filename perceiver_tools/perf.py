"""Measurement helpers for `scripts/benchmark.py`: FLOPs, memory, timing, profiles.

Why a FLOP counter of our own: XLA's `compiled.cost_analysis()['flops']`
counts the body of every `while` loop ONCE, whatever its trip count (checked
on jax 0.10: a 10-step `fori_loop` of a matmul reports the FLOPs of one
matmul). This codebase runs its shared latent blocks as `hk.fori_loop` and
its chunked attention as `lax.scan`/`lax.map`, so XLA's figure undercounts a
train step several-fold. `matmul_flops` walks the jaxpr instead and
multiplies loop bodies by their (static) lengths. Like XLA it counts a
multiply-add as 2 FLOPs; it counts only `dot_general` and convolutions (the
work a matmul peak is about), so elementwise work is excluded from MFU.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import math
import os
import re
import resource
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

# ---------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class FlopCount:
  """Multiply-adds counted as 2 FLOPs. `while_loops`: loops of unknown trip
  count, counted once (none are expected: static fori_loops lower to scan)."""

  matmul: int = 0
  while_loops: int = 0

  def add(self, other: 'FlopCount', times: int = 1) -> None:
    self.matmul += times * other.matmul
    self.while_loops += other.while_loops


def _prod(xs: Sequence[int]) -> int:
  return int(math.prod(int(x) for x in xs))


def _eqn_own_flops(eqn) -> int:
  name = eqn.primitive.name
  if name == 'dot_general':
    (lhs_contract, _), _ = eqn.params['dimension_numbers']
    lhs = eqn.invars[0].aval.shape
    out = eqn.outvars[0].aval.shape
    # out = batch x free_lhs x free_rhs; each element is a K-long dot product.
    return 2 * _prod(out) * _prod(lhs[d] for d in lhs_contract)
  if name == 'conv_general_dilated':
    rhs = eqn.invars[1].aval.shape
    dn = eqn.params['dimension_numbers']
    # rhs_spec = (out-feature dim, in-feature dim, *spatial dims); the
    # in-feature size is already per feature group. Taps on padding count
    # (XLA skips them), so SAME-padded convs count slightly more than XLA.
    rhs_spec = dn.rhs_spec
    kernel = _prod(rhs[d] for d in rhs_spec[1:])
    return 2 * _prod(eqn.outvars[0].aval.shape) * kernel
  if name == 'ffi_call' and eqn.params.get('target_name') == 'perceiver_onednn_matmul':
    # model.cpu_matmul's oneDNN matmul (perceiver/onednn.py): its logical views are attributes.
    # Its backward always traces both products; XLA drops the one whose
    # cotangent is unused (an input's), so a step counts more than it runs:
    # peer_bench takes the model's FLOPs from the XLA-dot variant instead.
    attrs = {k: np.asarray(getattr(v, 'val', v)) for k, v in eqn.params['attributes']}
    return 2 * _prod(attrs['out_dims']) * int(attrs['a_dims'][-1])
  return 0


def _sub_jaxprs(value: Any):
  if isinstance(value, jex_core.ClosedJaxpr):
    yield value.jaxpr
  elif isinstance(value, jex_core.Jaxpr):
    yield value
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _sub_jaxprs(v)


def _jaxpr_flops(jaxpr) -> FlopCount:
  total = FlopCount()
  for eqn in jaxpr.eqns:
    total.matmul += _eqn_own_flops(eqn)
    name = eqn.primitive.name
    if name == 'scan':
      total.add(_jaxpr_flops(eqn.params['jaxpr'].jaxpr), times=int(eqn.params['length']))
    elif name == 'cond':
      branches = [_jaxpr_flops(b.jaxpr) for b in eqn.params['branches']]
      total.add(max(branches, key=lambda f: f.matmul))
    elif name == 'while':
      total.while_loops += 1
      total.add(_jaxpr_flops(eqn.params['body_jaxpr'].jaxpr))
      total.add(_jaxpr_flops(eqn.params['cond_jaxpr'].jaxpr))
    else:  # jit / remat / custom_jvp / custom_vjp / closed_call: run once.
      for value in eqn.params.values():
        for sub in _sub_jaxprs(value):
          total.add(_jaxpr_flops(sub))
  return total


def matmul_flops(fn: Callable[..., Any], *args: Any) -> FlopCount:
  """Matmul + convolution FLOPs of one call of `fn(*args)`, loops unrolled.

  Traces `fn` (no compilation). Counts what the program executes, so a
  rematerialised forward pass counts twice: this is hardware FLOPs, which is
  what MFU against a measured peak should use.
  """
  return _jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def xla_cost(compiled) -> Dict[str, float]:
  """XLA's own cost analysis (loop bodies counted once, see module doc)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # Older jax: one dict per device.
    cost = cost[0]
  cost = cost or {}
  return {
    'xla_flops': float(cost.get('flops', float('nan'))),
    'xla_bytes_accessed': float(cost.get('bytes accessed', float('nan'))),
  }


# ---------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------


def compiled_memory(compiled) -> Dict[str, int]:
  """XLA buffer assignment of one executable, in bytes.

  `temp` is XLA's scratch allocation, already sized for the peak of
  simultaneously-live intermediates; `peak` adds arguments and outputs and
  subtracts outputs that alias donated arguments.
  """
  m = compiled.memory_analysis()
  if m is None:
    return {}
  out = {
    'temp': int(m.temp_size_in_bytes),
    'argument': int(m.argument_size_in_bytes),
    'output': int(m.output_size_in_bytes),
    'alias': int(m.alias_size_in_bytes),
  }
  out['peak'] = out['temp'] + out['argument'] + out['output'] - out['alias']
  return out


def max_rss_bytes() -> int:
  """High-water mark of this process's resident memory (Linux: KiB units)."""
  return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


def time_calls(call: Callable[[], Any], steps: int, warmup: int = 1) -> List[float]:
  """Wall seconds of `steps` calls of `call()`, each waited for.

  `call` is a closure that may carry state between calls (donated buffers).
  """
  for _ in range(warmup):
    jax.block_until_ready(call())
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(call())
    times.append(time.perf_counter() - start)
  return times


def summarize_times(times: Sequence[float]) -> Dict[str, float]:
  return {'median_s': statistics.median(times), 'min_s': min(times), 'max_s': max(times), 'steps': len(times)}


def mfu(flops: float, median_s: float, min_s: float, peak_flops_per_s: float) -> Dict[str, float]:
  """Model FLOPs utilisation of a step against a peak: `mfu` from the median
  step time, `mfu_best` from the fastest (contention only slows a call down)."""
  return dict(mfu=flops / median_s / peak_flops_per_s, mfu_best=flops / min_s / peak_flops_per_s)


def matmul_peak(n: int = 2048, steps: int = 5, dtype=jnp.float32) -> Dict[str, float]:
  """Measured float32 matmul FLOP/s: a jitted [n, n] @ [n, n], timed like a step."""
  key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
  a = jax.random.normal(key_a, (n, n), dtype)
  b = jax.random.normal(key_b, (n, n), dtype)
  fn = jax.jit(lambda x, y: x @ y).lower(a, b).compile()
  times = time_calls(lambda: fn(a, b), steps)
  flops = 2 * n**3
  return {
    'n': n,
    'flops': flops,
    'median_s': statistics.median(times),
    'flops_per_s': flops / statistics.median(times),
    'best_flops_per_s': flops / min(times),
  }


# The torch measurement runs in whichever interpreter has torch (often a
# separate virtual environment), so it is a self-contained program.
_TORCH_PEAK = r"""
import json, sys, time, torch
dtype = getattr(torch, sys.argv[1]); sizes = [int(n) for n in sys.argv[2].split(',')]
repeats, inner = int(sys.argv[3]), int(sys.argv[4])
device = 'cuda' if sys.argv[5] == 'gpu' and torch.cuda.is_available() else 'cpu'
sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
out = {}
for n in sizes:
  a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
  a @ b; sync()
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(inner):
      a @ b
    sync(); best = min(best, (time.perf_counter() - t0) / inner)
  out[n] = 2 * n ** 3 / best
print(json.dumps({'flops_per_s': out, 'threads': torch.get_num_threads(), 'device': device,
                  'version': torch.__version__}))
"""


def _best_of(call: Callable[[], Any], repeats: int, inner: int = 1) -> float:
  """Best seconds per call over `repeats` timings of `inner` calls queued back
  to back, then one wait, so on an accelerator a launch's host overhead hides
  behind the previous call."""
  jax.block_until_ready(call())
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    out = [call() for _ in range(inner)]
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - start) / inner)
  return best


def hardware_matmul_peak(
  dtype: str = 'float32',
  sizes: Sequence[int] = (1024, 2048, 4096),
  repeats: int = 5,
  torch_python: Optional[str] = None,
  inner: int = 1,
  torch_device: str = 'cpu',
) -> Dict[str, Any]:
  """The machine's matmul FLOP/s for `dtype`: the best over square sizes and
  repeats by every path available, so MFU is against what the hardware does
  rather than against XLA's own (possibly slower) matmul.

  Paths: XLA (jitted, this process), numpy's BLAS (float32 only: numpy has
  no bfloat16 matmul) and PyTorch (oneDNN/MKL; `torch_python` is an
  interpreter with torch, e.g. a separate venv; skipped if none; on
  `torch_device='gpu'` its CUDA device). Each repeat times `inner` calls
  back to back (accelerators: > 1, so launch overhead does not count).
  Returns the per-path figures, the peak and the path that reached it.
  """
  paths: Dict[str, Dict[str, Any]] = {}
  jdtype = jnp.dtype(dtype)
  xla = {}
  for n in sizes:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(jdtype)
    fn = jax.jit(lambda x, y: x @ y).lower(a, a).compile()
    xla[n] = 2 * n**3 / _best_of(lambda: fn(a, a), repeats, inner)
  paths['xla'] = {'flops_per_s': xla}
  if dtype == 'float32':
    rng = np.random.default_rng(0)
    out = {}
    for n in sizes:
      a = rng.standard_normal((n, n), dtype=np.float32)
      out[n] = 2 * n**3 / _best_of(lambda: a @ a, repeats)
    paths['numpy'] = {'flops_per_s': out}
  if torch_python:
    import subprocess  # pylint: disable=g-import-not-at-top

    proc = subprocess.run(
      [torch_python, '-c', _TORCH_PEAK, dtype, ','.join(map(str, sizes)), str(repeats), str(inner), torch_device],
      capture_output=True,
      text=True,
      timeout=1800,
    )
    if proc.returncode == 0:
      import json  # pylint: disable=g-import-not-at-top

      got = json.loads(proc.stdout.strip().splitlines()[-1])
      paths['torch'] = dict(got, flops_per_s={int(k): v for k, v in got['flops_per_s'].items()})
    else:
      paths['torch'] = {
        'error': proc.stderr.strip().splitlines()[-1][:200] if proc.stderr else f'exit {proc.returncode}'
      }
  best_path, best = max(
    ((name, max(p['flops_per_s'].values())) for name, p in paths.items() if 'flops_per_s' in p), key=lambda kv: kv[1]
  )
  for p in paths.values():
    if 'flops_per_s' in p:
      p['best_flops_per_s'] = max(p['flops_per_s'].values())
      p['flops_per_s'] = {str(k): v for k, v in p['flops_per_s'].items()}
  return {
    'dtype': dtype,
    'sizes': list(sizes),
    'repeats': repeats,
    'paths': paths,
    'peak_flops_per_s': best,
    'peak_path': best_path,
  }


# ---------------------------------------------------------------------------
# Compiled-program structure and profiles
# ---------------------------------------------------------------------------

_INSTR_RE = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\S+).*?\s([\w\-]+)\((.*)$')
_COMP_RE = re.compile(r'^%?([\w.\-]+)\s.*\{\s*$')
_CALLS_RE = re.compile(r'calls=%?([\w.\-]+)')
_OPNAME_RE = re.compile(r'op_name="([^"]*)"')
# custom-call: in our steps, oneDNN's matmul on the CPU (model.cpu_matmul) and cuBLAS/cuDNN calls on GPUs.
_MATMUL_OPS = ('dot', 'convolution', 'custom-call')
_MOVE_OPS = (
  'copy',
  'transpose',
  'dynamic-update-slice',
  'dynamic-slice',
  'concatenate',
  'pad',
  'slice',
  'gather',
  'scatter',
  'broadcast',
  'reshape',
  'bitcast',
)
_CONTROL_OPS = ('while', 'conditional', 'call')


@dataclasses.dataclass
class HloInstruction:
  name: str
  opcode: str
  computation: str
  calls: Optional[str]
  op_name: str
  shape: str = ''


def parse_hlo(hlo_text: str) -> Tuple[Dict[str, HloInstruction], Dict[str, List[str]]]:
  """Instructions by name and computation -> its instructions' opcodes."""
  instrs: Dict[str, HloInstruction] = {}
  comps: Dict[str, List[str]] = collections.defaultdict(list)
  current = ''
  for line in hlo_text.splitlines():
    if not line.startswith(' ') and line.rstrip().endswith('{'):
      m = _COMP_RE.match(line)
      current = m.group(1) if m else ''
      continue
    m = _INSTR_RE.match(line)
    if not m or not current:
      continue
    name, shape, opcode = m.group(1), m.group(2), m.group(3)
    calls = _CALLS_RE.search(line)
    op_name = _OPNAME_RE.search(line)
    instrs[name] = HloInstruction(
      name, opcode, current, calls.group(1) if calls else None, op_name.group(1) if op_name else '', shape.split('{')[0]
    )
    comps[current].append(opcode)
  return instrs, comps


def hlo_structure(hlo_text: str) -> Dict[str, int]:
  """Counts that show whether repeated blocks were compiled once or unrolled."""
  _, comps = parse_hlo(hlo_text)
  opcodes = [op for ops in comps.values() for op in ops]
  return {
    'hlo_while_loops': opcodes.count('while'),
    'hlo_dots': sum(op in _MATMUL_OPS for op in opcodes),
    'hlo_instructions': len(opcodes),
  }


def _category(instr: Optional[HloInstruction], comps: Mapping[str, List[str]]) -> str:
  if instr is None:
    return 'other'
  ops = [instr.opcode]
  if instr.opcode in ('fusion', 'custom-call') and instr.calls:
    ops = comps.get(instr.calls, ops)
  if any(op in _MATMUL_OPS for op in ops):
    return 'matmul'
  if instr.opcode in _CONTROL_OPS:
    return 'loop/control'
  if any(op in ('reduce', 'reduce-window') for op in ops):
    return 'reduction'
  compute = [op for op in ops if op not in _MOVE_OPS + ('parameter', 'constant', 'tuple', 'get-tuple-element')]
  if not compute:
    return 'data movement'
  return 'elementwise'


def _self_times(events: List[Tuple[int, int, str]]) -> Dict[str, float]:
  """Exclusive time per event name on one thread (nested events subtracted)."""
  out: Dict[str, float] = collections.defaultdict(float)
  stack: List[List[Any]] = []  # [end, name, child_time, duration]

  def pop():
    end, name, child, dur = stack.pop()
    out[name] += dur - child
    if stack:
      stack[-1][2] += dur

  for start, dur, name in sorted(events, key=lambda e: (e[0], -e[1])):
    while stack and stack[-1][0] <= start:
      pop()
    stack.append([start + dur, name, 0, dur])
  while stack:
    pop()
  return out


def profile_step(call: Callable[[], Any], hlo_text: str, steps: int = 2, top: int = 8) -> Dict[str, Any]:
  """Where a compiled step's time goes, from a `jax.profiler` trace.

  Runs `call` `steps` times under the profiler, takes the XLA CPU runtime's
  per-HLO-instruction events, turns them into exclusive (self) thread time,
  and groups them by kind (matmul fusions, elementwise, reductions, data
  movement, loop control). Shares are of summed thread time over all
  worker threads, so they add up to 100% of busy CPU time.
  """
  instrs, comps = parse_hlo(hlo_text)
  with tempfile.TemporaryDirectory() as logdir:
    jax.block_until_ready(call())
    jax.profiler.start_trace(logdir)
    try:
      for _ in range(steps):
        jax.block_until_ready(call())
    finally:
      jax.profiler.stop_trace()
    files = glob.glob(os.path.join(logdir, '**', '*.xplane.pb'), recursive=True)
    if not files:
      return {}
    data = jax.profiler.ProfileData.from_file(files[-1])
  per_instr: Dict[str, float] = collections.defaultdict(float)
  for plane in data.planes:
    if not plane.name.startswith('/host:CPU'):
      continue
    for line in plane.lines:
      events = [(ev.start_ns, ev.duration_ns, ev.name) for ev in line.events if ev.name in instrs]
      for name, t in _self_times(events).items():
        per_instr[name] += t
  total = sum(per_instr.values()) or 1.0
  by_cat: Dict[str, float] = collections.defaultdict(float)
  by_op: Dict[str, float] = collections.defaultdict(float)
  for name, t in per_instr.items():
    instr = instrs.get(name)
    by_cat[_category(instr, comps)] += t
    # Group by the JAX primitive that produced it (last op_name component).
    label = instr.op_name.rsplit('/', 1)[-1] if instr and instr.op_name else name
    by_op[f'{_category(instr, comps)}:{label}'] += t
  top_instrs = []
  for name, t in sorted(per_instr.items(), key=lambda kv: -kv[1])[:top]:
    instr = instrs.get(name)
    top_instrs.append((name, instr.shape if instr else '', instr.op_name[-90:] if instr else '', round(t / total, 4)))
  return {
    'busy_thread_s_per_step': total / 1e9 / steps,
    'share_by_kind': {k: round(v / total, 4) for k, v in sorted(by_cat.items(), key=lambda kv: -kv[1])},
    'top_ops': [(k, round(v / total, 4)) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[:top]],
    'top_instructions': top_instrs,
  }


def tree_bytes(tree: Any) -> int:
  return int(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def tree_dtypes(tree: Any) -> List[str]:
  return sorted({str(x.dtype) for x in jax.tree.leaves(tree)})
