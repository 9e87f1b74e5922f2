"""JAX's persistent compilation cache, set the one way the entry points use it.

The launcher (``--compilation_cache``) and the peer benchmark's workers call
``use``: a restarted run, like the benchmark's timed worker, then loads every
program the first process compiled instead of compiling it again.
"""


def use(path: str) -> None:
  """Points JAX's persistent cache at ``path`` and caches every program.

  JAX caches only programs that took at least a second to compile by
  default, so which small programs (init, eval, checkpoint fingerprints) were
  kept depended on the machine's load: a loaded run cached one that a quiet
  run had compiled under the threshold. Setting options touches no backend,
  so this is safe before ``jax.distributed.initialize``.
  """
  import jax  # pylint: disable=g-import-not-at-top

  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
