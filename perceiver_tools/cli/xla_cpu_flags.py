r"""Measures XLA CPU options on the matmuls that set our step time.

  python scripts/xla_cpu_flags.py                 # every candidate below
  python scripts/xla_cpu_flags.py --flag_sets='--xla_cpu_use_xnnpack=true'

Each flag set runs in a fresh process (XLA reads XLA_FLAGS once, at start)
and times, best of --repeats: a square [n, n] matmul and the latent shape
[B*N, C] x [C, C] of configs/imagenet.py:cpu_bench ([256, 512] x [512, 512]),
in float32 and bfloat16. One JSON line per flag set: GFLOP/s of each, or the
error the flag set raised (an unknown flag or value aborts XLA). The
candidates are the CPU-backend options of jaxlib 0.10.2 that route dots to
other libraries (oneDNN, XNNPACK, YNNPACK) or change the runtime. A last
line (--onednn, on by default) times the same bf16 matmuls through
perceiver/onednn.py's custom call (`model.cpu_matmul='onednn_bf16'`), the
library call XLA's options do not reach.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import List, Optional

from absl import flags

from perceiver_tools.cli import _flags

CANDIDATES = (
  '',
  '--xla_cpu_use_thunk_runtime=false',
  '--xla_cpu_use_onednn=true',
  '--xla_cpu_experimental_onednn_custom_call=true',
  '--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot',
  '--xla_cpu_use_xnnpack=true',
  '--xla_cpu_experimental_xnn_fusion_type=dot',
  '--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY',
  '--xla_cpu_experimental_ynn_fusion_type=dot',
  '--xla_cpu_enable_fast_math=true',
)

FLAGS = flags.FlagValues()
_FLAG_SETS = flags.DEFINE_list(
  'flag_sets',
  None,
  'XLA_FLAGS values to try, comma-separated (default: the built-in candidates).',
  flag_values=FLAGS,
)
_N = flags.DEFINE_integer('n', 2048, 'Side of the square matmul.', flag_values=FLAGS)
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls per matmul (best is kept).', flag_values=FLAGS)
_ONEDNN = flags.DEFINE_bool(
  'onednn', True, "Also time the bf16 matmuls through perceiver.onednn's custom call.", flag_values=FLAGS
)

_MEASURE = r"""
import json, sys, time
import jax, jax.numpy as jnp
n, repeats, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
out = {}
matmul = lambda x, y: x @ y
if path == 'onednn':
  from perceiver import onednn
  onednn.check_available()
  matmul = lambda x, y: onednn.matmul(x, y, jnp.float32)
for dtype in ('float32', 'bfloat16') if path == 'xla' else ('bfloat16',):
  for name, (m, k, p) in (('square', (n, n, n)), ('latent', (256, 512, 512))):
    a = jax.random.normal(jax.random.PRNGKey(0), (m, k)).astype(dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (k, p)).astype(dtype)
    f = jax.jit(matmul).lower(a, b).compile()
    jax.block_until_ready(f(a, b))
    best = float('inf')
    for _ in range(repeats):
      t0 = time.perf_counter(); jax.block_until_ready(f(a, b)); best = min(best, time.perf_counter() - t0)
    out[f'{dtype}_{name}_gflops'] = round(2 * m * k * p / best / 1e9, 1)
print(json.dumps(out))
"""


def measure(flag_set: str, n: int, repeats: int, path: str = 'xla') -> dict:
  env = dict(os.environ, XLA_FLAGS=flag_set)
  proc = subprocess.run(
    [sys.executable, '-c', _MEASURE, str(n), str(repeats), path],
    env=env,
    capture_output=True,
    text=True,
    timeout=1800,
  )
  rec = {'xla_flags': flag_set, 'matmul': 'perceiver.onednn' if path == 'onednn' else 'xla'}
  rec['loadavg_1m'] = round(os.getloadavg()[0], 2)
  if proc.returncode != 0:
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    rec['error'] = (lines[-1] if lines else f'exit {proc.returncode}')[:300]
    return rec
  rec.update(json.loads(proc.stdout.strip().splitlines()[-1]))
  return rec


def main(argv: Optional[List[str]] = None) -> int:
  _flags.parse(FLAGS, argv, __doc__)
  for flag_set in _FLAG_SETS.value if _FLAG_SETS.value is not None else CANDIDATES:
    print(json.dumps(measure(flag_set, _N.value, _REPEATS.value)), flush=True)
  if _ONEDNN.value:
    print(json.dumps(measure('', _N.value, _REPEATS.value, path='onednn')), flush=True)
  return 0


def run() -> None:
  sys.exit(main())


if __name__ == '__main__':
  run()
