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

Nothing here runs unless asked: `available()` is False without the wheel, a
compiler or a CPU that oneDNN has bf16 kernels for (AVX-512 or AMX), and
`model.cpu_matmul='onednn_bf16'` then fails with that reason
(`check_available`).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import os
import subprocess
import tempfile
from typing import Optional, Sequence, Tuple

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
  if not handler.PerceiverOnednnBf16Supported():
    return 'oneDNN has no bfloat16 matmul for this CPU (its bf16 kernels need AVX-512 or AMX)'
  jax.ffi.register_ffi_target(_TARGET, jax.ffi.pycapsule(handler.PerceiverOnednnMatmul), platform='cpu')
  return None


def unavailable_reason() -> Optional[str]:
  """None when the oneDNN matmul can be used, else why not (one line or a compiler log)."""
  return _register()


def available() -> bool:
  return _register() is None


View = Tuple[Tuple[int, ...], Tuple[int, ...]]  # (logical dims [..., rows, cols], element strides)


def _dense_strides(shape: Sequence[int]) -> Tuple[int, ...]:
  strides, step = [], 1
  for d in reversed(shape):
    strides.append(step)
    step *= d
  return tuple(reversed(strides))


def view(shape: Sequence[int], perm: Sequence[int]) -> View:
  """The logical view of a row-major array of `shape` with its axes
  reordered by `perm` (as jnp.transpose would), read in place by strides."""
  strides = _dense_strides(shape)
  return tuple(shape[i] for i in perm), tuple(strides[i] for i in perm)


def _dense(shape: Sequence[int]) -> View:
  """The row-major array of `shape` read as it is."""
  return view(shape, tuple(range(len(shape))))


def _transposed(v: View) -> View:
  """The same view with its last two (matrix) axes swapped."""
  (dims, strides), swap = v, lambda t: t[:-2] + (t[-1], t[-2])
  return swap(dims), swap(strides)


def _ffi(a: jax.Array, b: jax.Array, a_view: View, b_view: View, out_shape, out_view: View, out_dtype) -> jax.Array:
  """One oneDNN matmul on strided views: out_view(out) = a_view(a) @ b_view(b)."""
  check_available()  # builds and registers the custom call on first use
  (a_dims, _), (b_dims, _), (out_dims, _) = a_view, b_view, out_view
  if a_dims[:-2] != b_dims[:-2] or a_dims[-1] != b_dims[-2] or out_dims != a_dims[:-1] + b_dims[-1:]:
    raise ValueError(f'onednn.matmul: shapes do not multiply: {a_dims} @ {b_dims} -> {out_dims}')
  if out_view[1][-1] != 1:
    # oneDNN's fast kernels write row-major matrices only (a column-major
    # destination fell back to a reference kernel: 0.8 s for a [64, 128, 128]
    # batch); so compute the transposed product, C^T = b^T a^T, row-major.
    a, b, a_view, b_view = b, a, _transposed(b_view), _transposed(a_view)
    out_view = _transposed(out_view)
  as_attr = lambda t: np.asarray(t, np.int64)
  return jax.ffi.ffi_call(_TARGET, jax.ShapeDtypeStruct(tuple(out_shape), out_dtype))(
    a,
    b,
    a_dims=as_attr(a_view[0]),
    a_strides=as_attr(a_view[1]),
    b_dims=as_attr(b_view[0]),
    b_strides=as_attr(b_view[1]),
    out_dims=as_attr(out_view[0]),
    out_strides=as_attr(out_view[1]),
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6, 7))
def strided_matmul(
  a: jax.Array,
  b: jax.Array,
  a_view: View,
  b_view: View,
  out_shape: Tuple[int, ...],
  out_view: View,
  out_dtype,
  operand_dtype=None,
) -> jax.Array:
  """Batched matmul of strided views, computed by oneDNN on the CPU: the
  result array (`out_shape`, row-major) holds out_view = a_view @ b_view.
  Views let attention read [B, T, H, D] as [B, H, T, D] and write its output
  straight into [B, T, H, D] with no transpose copies. a and b share a dtype
  (bfloat16 or float32); `operand_dtype` (e.g. bfloat16) rounds them to it
  first. The gradients are two more such matmuls, written straight into a's
  and b's own layouts with float32 results, and returned in a's and b's own
  dtypes (no bf16 round trip for float32 operands)."""
  a, b = _operands(a, b, operand_dtype)
  return _ffi(a, b, a_view, b_view, out_shape, out_view, out_dtype)


def _operands(a, b, operand_dtype):
  return (a, b) if operand_dtype is None else (a.astype(operand_dtype), b.astype(operand_dtype))


def _strided_fwd(a, b, a_view, b_view, out_shape, out_view, out_dtype, operand_dtype=None):
  like = (jnp.zeros((), a.dtype), jnp.zeros((), b.dtype))  # the primal dtypes, for the cotangents
  a, b = _operands(a, b, operand_dtype)
  return _ffi(a, b, a_view, b_view, out_shape, out_view, out_dtype), (a, b, like)


def _strided_bwd(a_view, b_view, out_shape, out_view, out_dtype, operand_dtype, res, g):
  del out_shape, out_dtype, operand_dtype
  a, b, (a_like, b_like) = res
  g = g.astype(a.dtype)
  da = _ffi(g, b, out_view, _transposed(b_view), a.shape, a_view, jnp.float32)  # dC b^T
  db = _ffi(a, g, _transposed(a_view), out_view, b.shape, b_view, jnp.float32)  # a^T dC
  return da.astype(a_like.dtype), db.astype(b_like.dtype)


strided_matmul.defvjp(_strided_fwd, _strided_bwd)


def matmul(x: jax.Array, w: jax.Array, out_dtype=None, operand_dtype=None) -> jax.Array:
  """x [M, K] @ w [K, N] -> [M, N] on the CPU by oneDNN. x and w must share a
  dtype (bfloat16 or float32), or are rounded to `operand_dtype`; the result
  is out_dtype (default x's), so bf16 operands can return float32 as
  PyTorch's autocast matmuls do internally."""
  if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
    raise ValueError(f'onednn.matmul: shapes do not multiply: {x.shape} @ {w.shape}')
  out_shape = (x.shape[0], w.shape[1])
  return strided_matmul(
    x, w, _dense(x.shape), _dense(w.shape), out_shape, _dense(out_shape), out_dtype or x.dtype, operand_dtype
  )


# Attention's heads are first moved next to the batch ([B, T, H, D] -> [B, H, T, D],
# a copy XLA's own einsum makes too): oneDNN read batch strides that
# interleave heads (reading [B, T, H, D] in place) through a reference kernel,
# 20x slower than the step it replaced.
def attention_logits(q: jax.Array, k: jax.Array, operand_dtype=None) -> jax.Array:
  """q [B, T, H, D], k [B, S, H, D] -> float32 [B, H, T, S] (einsum 'bthd,bshd->bhts')."""
  q_h, k_h = jnp.transpose(q, (0, 2, 1, 3)), jnp.transpose(k, (0, 2, 1, 3))  # [B, H, T, D], [B, H, S, D]
  out_shape = q_h.shape[:3] + k_h.shape[2:3]
  k_view = view(k_h.shape, (0, 1, 3, 2))  # k^T per head: [B, H, D, S]
  return strided_matmul(q_h, k_h, _dense(q_h.shape), k_view, out_shape, _dense(out_shape), jnp.float32, operand_dtype)


def attention_values(weights: jax.Array, v: jax.Array, out_dtype, operand_dtype=None) -> jax.Array:
  """weights [B, H, T, S], v [B, S, H, Dv] -> [B, T, H, Dv] (einsum 'bhts,bshd->bthd')."""
  v_h = jnp.transpose(v, (0, 2, 1, 3))  # [B, H, S, Dv]
  out_shape = weights.shape[:3] + v_h.shape[3:]
  out = strided_matmul(
    weights, v_h, _dense(weights.shape), _dense(v_h.shape), out_shape, _dense(out_shape), out_dtype, operand_dtype
  )
  return jnp.transpose(out, (0, 2, 1, 3))  # [B, T, H, Dv]


def check_available() -> None:
  """Raises OneDNNUnavailable (why, in one line or a compiler log) when the
  oneDNN matmul cannot run on this machine."""
  reason = unavailable_reason()
  if reason is not None:
    raise OneDNNUnavailable(f"model.cpu_matmul='onednn_bf16' needs oneDNN: {reason}")
