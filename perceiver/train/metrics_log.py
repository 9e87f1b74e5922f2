"""Metric sinks: TensorBoard event files, ``metrics.jsonl`` and console lines.

Only process 0 writes files. TensorBoard uses ``tf.summary`` from
tensorflow-cpu (already a dependency of the data pipelines) rather than a
hand-written event writer.
"""

import json
import math
import os
import time
from typing import Mapping

JSONL_NAME = 'metrics.jsonl'


def format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


class MetricsLog:
  """Writes scalars per step to TensorBoard and JSON lines."""

  def __init__(self, workdir: str, enabled: bool = True):
    self._enabled = enabled
    self._jsonl_path = os.path.join(workdir, JSONL_NAME)
    self._tb = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      import tensorflow as tf  # Lazy: keeps `import perceiver.train` light.

      self._tf = tf
      self._tb = tf.summary.create_file_writer(os.path.join(workdir, 'tb'))
      from tensorflow.core.framework import summary_pb2

      self._scalar_metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name='scalars')
      ).SerializeToString()

  def truncate_after(self, step: int) -> None:
    """Drops JSON lines of steps > ``step``: a resumed run re-does them."""
    if not self._enabled or not os.path.exists(self._jsonl_path):
      return
    with open(self._jsonl_path) as f:
      lines = f.readlines()
    kept = []
    for line in lines:
      try:
        if json.loads(line)['step'] <= step:
          kept.append(line)
      except (ValueError, KeyError, TypeError):
        continue  # A line cut short by a kill.
    tmp = self._jsonl_path + '.tmp'
    with open(tmp, 'w') as f:
      f.writelines(kept)
    os.replace(tmp, self._jsonl_path)

  def write(self, step: int, split: str, scalars: Mapping[str, float]) -> None:
    if not self._enabled:
      return
    record = {'step': int(step), 'split': split, **{k: float(v) for k, v in scalars.items()}}
    with open(self._jsonl_path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    with self._tb.as_default(step=int(step)):
      for k, v in scalars.items():
        # tf.summary.scalar lives in the tensorboard package; the core op
        # with the scalars-plugin tag writes the same event without it.
        self._tf.summary.write(
          f'{split}/{k}', self._tf.constant(float(v), self._tf.float32), metadata=self._scalar_metadata
        )
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


class Progress:
  """Console progress: step, loss, steps/s, examples/s, ETA."""

  def __init__(self, start_step: int, total_steps: int, global_batch: int):
    self._total = total_steps
    self._batch = global_batch
    self._t0 = time.time()
    self._step0 = start_step
    self._last_t = self._t0
    self._last_step = start_step

  def line(self, step: int, loss: float) -> tuple[str, float]:
    """Returns the console line and the steps/s since the previous line."""
    now = time.time()
    rate = (step - self._last_step) / max(now - self._last_t, 1e-9)
    overall = (step - self._step0) / max(now - self._t0, 1e-9)
    eta = (self._total - step) / overall if overall > 0 else float('inf')
    self._last_t, self._last_step = now, step
    text = (
      f'step {step}/{self._total} | loss {loss:.4f} | {rate:.2f} steps/s '
      f'| {rate * self._batch:.1f} examples/s | ETA '
      f'{format_duration(eta)}'
    )
    return text, rate
