"""perceiver/host_memory.py: with `reuse_freed_memory`, a jitted call's large
temporaries are reused from one call to the next instead of being mapped
and page-faulted in afresh (glibc only)."""

import json
import os
import subprocess
import sys

import pytest

from perceiver import host_memory

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# One call of a function whose XLA temporaries (three [2048, 2048] float32
# intermediates, 48 MB) are above glibc's largest mmap threshold (32 MB).
_SCRIPT = r"""
import json, resource, sys
from perceiver import host_memory
applied = host_memory.reuse_freed_memory() if sys.argv[1] == 'reuse' else False
import jax, jax.numpy as jnp
f = jax.jit(lambda x: (jnp.sin(x) @ jnp.cos(x) + jnp.exp(x)).sum(axis=0))
x = jnp.ones((2048, 2048), jnp.float32)
f(x).block_until_ready()
host_memory.release_free_memory()
# The heap settles after a few calls (freed blocks are fragmented at first, so
# it grows by one temporary per call a few times; measured: steady within 30 calls).
for _ in range(30):
  f(x).block_until_ready()
faults = []
for _ in range(3):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(dict(applied=applied, faults=min(faults))))
"""


def _faults(mode):
  proc = subprocess.run(
    [sys.executable, '-c', _SCRIPT, mode], cwd=REPO, capture_output=True, text=True, timeout=300, check=True
  )
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_reused_temporaries_are_not_faulted_in_again():
  if host_memory._glibc() is None:  # pylint: disable=protected-access
    assert not host_memory.reuse_freed_memory() and not host_memory.release_free_memory()
    pytest.skip('glibc: not this C library')
  system, reuse = _faults('system'), _faults('reuse')
  assert reuse['applied'] and not system['applied']
  # 48 MB of temporaries = ~12,000 pages of 4 KB faulted in every call by default.
  assert system['faults'] > 5000, system
  assert reuse['faults'] < system['faults'] / 10, (system, reuse)
