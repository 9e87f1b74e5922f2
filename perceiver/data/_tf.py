"""TensorFlow, imported with accelerators hidden.

tf.data runs on the host; if TensorFlow saw the GPUs/TPUs it would grab
their memory before JAX does. Every pipeline module imports `tf` from here.
"""

import tensorflow as tf


def _hide_accelerators() -> None:
  for kind in ('GPU', 'TPU'):
    try:
      tf.config.set_visible_devices([], kind)
    except (RuntimeError, ValueError):
      # RuntimeError: devices already initialised (someone imported TF
      # first and used it); ValueError: unknown device type on this build.
      pass


_hide_accelerators()

__all__ = ['tf']
