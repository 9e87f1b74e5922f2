"""perceiver/host_memory.py: with `reuse_freed_memory`, a jitted call's large
temporaries are reused from one call to the next instead of being mapped
and page-faulted in afresh, and they are freed before the call returns
(glibc only)."""

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


# A train-step-like loop (donated carry, block on the output) that reads
# glibc's bytes in use right after each call returns: with JAX's asynchronous
# CPU dispatch the call's 33 MB of temporaries are often still allocated then
# (measured: in 14 of 20 calls), which is what lets the next call allocate its
# own first and grow the kept heap.
_INLINE_SCRIPT = r"""
import ctypes, json
from perceiver import host_memory

class MallInfo2(ctypes.Structure):
  _fields_ = [(name, ctypes.c_size_t) for name in
              'arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost'.split()]

libc = host_memory._glibc()
libc.mallinfo2.restype = MallInfo2
assert host_memory.reuse_freed_memory()
import jax, jax.numpy as jnp
step = jax.jit(lambda c, x: (c + (jnp.sin(x) @ jnp.cos(x) + jnp.exp(x)).sum(axis=0), c.sum()), donate_argnums=(0,))
x, carry = jnp.ones((2048, 2048), jnp.float32), jnp.zeros((2048,), jnp.float32)
carry, out = step(carry, x)
out.block_until_ready()
in_use = []
for _ in range(20):
  carry, out = step(carry, x)
  out.block_until_ready()
  in_use.append(libc.mallinfo2().uordblks)
print(json.dumps(in_use))
"""


def test_inline_calls_free_their_temporaries_before_returning():
  libc = host_memory._glibc()  # pylint: disable=protected-access
  if libc is None or not hasattr(libc, 'mallinfo2'):
    pytest.skip('glibc >= 2.33 (mallinfo2): not this C library')
  proc = subprocess.run(
    [sys.executable, '-c', _INLINE_SCRIPT],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
    check=True,
  )
  in_use = json.loads(proc.stdout.strip().splitlines()[-1])
  # Every call returns with the same bytes in use: none of its 33 MB of
  # temporaries is still held (a held one would add >= 16 MB).
  assert max(in_use) - min(in_use) < 4e6, in_use
