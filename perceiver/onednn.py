"""bf16 matmuls on the CPU through oneDNN (`model.cpu_matmul='onednn_bf16'`).

Why hand-written: XLA's CPU backend (jax 0.10) runs bf16 dots no faster than
float32 ones: it has no kernels for the CPU's avx512_bf16 / AMX instructions,
and none of its CPU flags selects a library that has them
(`scripts/xla_cpu_flags.py` measures them; figures in the README). oneDNN, the
library behind PyTorch's CPU matmuls, has them, and PyPI ships it as the
`onednn-cpu-gomp` wheel (a C library, no Python binding). So the matmul is an
XLA FFI custom call (`_onednn_matmul.cc`) into that library, compiled with the
system's g++ on first use and cached. A `jax.pure_callback` into oneDNN was
tried first and lost everything to the callback's copies (0.25 ms a call at
[256, 512], 430 calls a train step).

Nothing here runs unless asked: `available()` is False without the wheel or a
compiler, and callers fall back to XLA's dot.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import os
import subprocess
import tempfile
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

_WHEEL = 'onednn-cpu-gomp'
_TARGET = 'perceiver_onednn_matmul'
_FLAGS_TAG = b'O2-c++17-shared-fPIC'
_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '_onednn_matmul.cc')


class OneDNNUnavailable(RuntimeError):
  """oneDNN's matmul was asked for but cannot be used (reason in the message)."""


def library_path() -> Optional[str]:
  """Path of libdnnl.so.3 from the installed `onednn-cpu-gomp` wheel, or None."""
  try:
    files = importlib.metadata.files(_WHEEL) or []
  except importlib.metadata.PackageNotFoundError:
    return None
  for f in files:
    if f.name == 'libdnnl.so.3':
      path = os.path.realpath(str(f.locate()))
      return path if os.path.exists(path) else None
  return None


def _cache_dir() -> str:
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'perceiver')


def _build(lib: str) -> str:
  """Compiles the FFI handler once per (source, jaxlib, library) into the cache."""
  with open(_SOURCE, 'rb') as f:
    source = f.read()
  tag = hashlib.sha256(source + jax.__version__.encode() + lib.encode() + _FLAGS_TAG).hexdigest()[:16]
  out = os.path.join(_cache_dir(), f'onednn_matmul_{tag}.so')
  if os.path.exists(out):
    return out
  os.makedirs(_cache_dir(), exist_ok=True)
  lib_dir = os.path.dirname(lib)
  fd, tmp = tempfile.mkstemp(suffix='.so', dir=_cache_dir())
  os.close(fd)
  cmd = [
    os.environ.get('CXX', 'g++'),
    '-O2',
    '-std=c++17',
    '-shared',
    '-fPIC',
    f'-I{jax.ffi.include_dir()}',
    _SOURCE,
    '-o',
    tmp,
    f'-L{lib_dir}',
    '-l:libdnnl.so.3',
    f'-Wl,-rpath,{lib_dir}',
  ]
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  except (OSError, subprocess.TimeoutExpired) as e:
    os.unlink(tmp)
    raise OneDNNUnavailable(f'cannot compile {_SOURCE} with {cmd[0]} ({type(e).__name__}); set $CXX') from None
  if proc.returncode != 0:
    os.unlink(tmp)
    raise OneDNNUnavailable(f'compiling {_SOURCE} failed:\n{proc.stderr[-2000:]}')
  os.replace(tmp, out)  # atomic: concurrent builders each write their own temp file
  return out


@functools.lru_cache(maxsize=None)
def _register() -> Optional[str]:
  """Builds and registers the custom call; returns why it is unavailable, or None."""
  lib = library_path()
  if lib is None:
    return f'the {_WHEEL} wheel is not installed (pip install perceiver[cpu-bf16])'
  try:
    handler = ctypes.cdll.LoadLibrary(_build(lib))
  except (OneDNNUnavailable, OSError) as e:
    return str(e)
  jax.ffi.register_ffi_target(_TARGET, jax.ffi.pycapsule(handler.PerceiverOnednnMatmul), platform='cpu')
  return None


def unavailable_reason() -> Optional[str]:
  """None when the oneDNN matmul can be used, else why not (one line or a compiler log)."""
  return _register()


def available() -> bool:
  return _register() is None


def _layout(shape: Tuple[int, int], transpose: bool) -> Tuple[Tuple[int, int], Tuple[int, int]]:
  """Logical dims and element strides of a row-major 2-D operand, read transposed if asked."""
  rows, cols = shape
  return ((cols, rows), (1, cols)) if transpose else ((rows, cols), (cols, 1))


def _call(a: jax.Array, b: jax.Array, trans_a: bool, trans_b: bool, out_dtype) -> jax.Array:
  """op(a) @ op(b) -> [M, N] in out_dtype, op = transpose where asked."""
  check_available()  # builds and registers the custom call on first use
  (a_dims, a_strides), (b_dims, b_strides) = _layout(a.shape, trans_a), _layout(b.shape, trans_b)
  if a_dims[1] != b_dims[0]:
    raise ValueError(f'onednn.matmul: contraction sizes differ: {a_dims} @ {b_dims}')
  out_dims = (a_dims[0], b_dims[1])
  as_attr = lambda t: np.asarray(t, np.int64)
  return jax.ffi.ffi_call(_TARGET, jax.ShapeDtypeStruct(out_dims, out_dtype))(
    a,
    b,
    a_dims=as_attr(a_dims),
    a_strides=as_attr(a_strides),
    b_dims=as_attr(b_dims),
    b_strides=as_attr(b_strides),
    out_dims=as_attr(out_dims),
    out_strides=as_attr((out_dims[1], 1)),
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def matmul(x: jax.Array, w: jax.Array, out_dtype=None) -> jax.Array:
  """x [M, K] @ w [K, N] -> [M, N] on the CPU by oneDNN. x and w must share a
  dtype (bfloat16 or float32); the result is out_dtype (default x's), so bf16
  operands can return float32 as PyTorch's autocast matmuls do internally."""
  return _call(x, w, False, False, out_dtype or x.dtype)


def _matmul_fwd(x, w, out_dtype=None):
  return _call(x, w, False, False, out_dtype or x.dtype), (x, w)


def _matmul_bwd(out_dtype, res, g):
  del out_dtype
  x, w = res
  g = g.astype(x.dtype)
  dx = _call(g, w, False, True, jnp.float32).astype(x.dtype)  # g w^T [M, K]
  dw = _call(x, g, True, False, jnp.float32).astype(w.dtype)  # x^T g [K, N]
  return dx, dw


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def check_available() -> None:
  """Raises OneDNNUnavailable (why, in one line or a compiler log) when the
  oneDNN matmul cannot run on this machine."""
  reason = unavailable_reason()
  if reason is not None:
    raise OneDNNUnavailable(f"model.cpu_matmul='onednn_bf16' needs oneDNN: {reason}")
