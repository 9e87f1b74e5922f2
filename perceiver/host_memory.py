"""Host-memory allocator settings for XLA's CPU backend (glibc only).

Why: each execution of a compiled step allocates its temporaries as one
buffer (357 MB for `configs/imagenet.py:cpu_bench` at batch 2). glibc serves
an allocation that large from a fresh `mmap` and returns it with `munmap`,
so every step page-faults the whole buffer back in (87,000 faults a step
there) and unmaps it again. Keeping freed memory in the process lets the
next step reuse the same pages: in interleaved runs of that train step the
CPU time per step fell by 12% (README, Performance).

These are process-wide settings (like `jax.config.update`), so nothing here
runs on import: entry points (the launcher, the benchmarks) call
`reuse_freed_memory` once, before JAX starts its threads, and
`release_free_memory` after compiling (`compile_ahead` does both steps of
the latter). Elsewhere (musl, macOS) both do
nothing and return False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any, Optional

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# Freed memory at the top of the heap is kept up to this size (the largest
# value mallopt takes: a C int), so a step's temporaries are reused.
_KEEP_BYTES = 2**31 - 1


@functools.lru_cache(maxsize=None)
def _glibc() -> Optional[ctypes.CDLL]:
  name = ctypes.util.find_library('c')
  try:
    libc = ctypes.CDLL(name or 'libc.so.6')
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    libc.gnu_get_libc_version()
  except (OSError, AttributeError):
    return None
  return libc


def reuse_freed_memory() -> bool:
  """Makes glibc keep and reuse freed memory instead of unmapping it.

  One arena for all threads (with several, the peak grows; the price is
  one allocator lock, which slows small steps: docs/performance.md,
  "Small steps"), no mmap for large blocks, and no trimming of free memory
  below `_KEEP_BYTES`.
  It also runs single-device CPU computations in the calling thread (JAX's
  `jax_cpu_enable_async_dispatch=False`): with asynchronous dispatch, XLA
  frees a step's temporaries only after the step's outputs are ready, so the
  next step (which waits only on those outputs) can allocate its own first,
  and the kept heap then holds two or three step-sized buffers for the rest
  of the run instead of one (docs/performance.md, "a race under
  --host_memory=reuse"). Inline, each call returns after its temporaries
  are freed; computations over several devices stay asynchronous (JAX
  applies the setting to single-device ones only).
  Call before the first JAX computation (JAX reads the dispatch setting when
  it creates its CPU backend). Returns whether it applied.
  """
  libc = _glibc()
  if libc is None:
    return False
  ok = libc.mallopt(_M_ARENA_MAX, 1) and libc.mallopt(_M_MMAP_MAX, 0)
  if not (ok and libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES)):
    return False
  import jax  # pylint: disable=g-import-not-at-top

  jax.config.update('jax_cpu_enable_async_dispatch', False)
  return True


def release_free_memory() -> bool:
  """Returns the process's free heap memory to the OS (glibc's malloc_trim).

  After compiling: what the compiler freed would otherwise stay resident
  under `reuse_freed_memory`, and a step's temporaries would be placed
  above it, raising the peak resident size.
  """
  libc = _glibc()
  return bool(libc is not None and libc.malloc_trim(0))


def compile_ahead(jitted: Any, *args: Any) -> Any:
  """`jitted.lower(*args).compile()`, then `release_free_memory`: the compiled
  executable, with what the compiler freed handed back before its first call.

  Compiling inside the first call instead would allocate that call's
  temporaries beside the compiler's leftovers, and the resident size would
  stay at their sum (docs/performance.md, session 14). The training loop and
  the peer benchmark's worker both compile through here, so the benchmark
  measures the loop's order.
  """
  compiled = jitted.lower(*args).compile()
  release_free_memory()
  return compiled
