"""Cross-attention maps of a trained Perceiver, in the style of the paper's Fig. 3.

  python scripts/attention_maps.py --workdir=DIR --out=maps.png [--index=0]
      [--latents=0,8,16,24] [--split=test]
  perceiver-attention-maps --workdir=DIR --out=maps.png   # installed

Loads the run in DIR (its `config.json` and latest checkpoint), takes
example `--index` of the eval split, runs the model once and renders, for
the first, second and last cross-attend (rows), the input and the attention
of a few latents over the input positions (columns), each map on the
image's grid. Permuted runs are mapped back to the pixels' true places.

The model is not modified: `hk.experimental.intercept_methods` records the
queries and keys each encoder cross-attention hands to its `attend` method
(however its projections computed them) and the weights are recomputed
from them as the model does (softmax(q k^T / sqrt(d)), averaged over heads). Encoder blocks that
share weights run in `hk.fori_loop`, whose values cannot leave the loop, so
the interceptor also asks the encoder to unroll them (same numbers).
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import flags
import haiku as hk
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from perceiver import attention as attn_lib
from perceiver import io_processors
from perceiver.encoders import PerceiverEncoder
from perceiver_tools.cli import _flags

FLAGS = flags.FlagValues()
_WORKDIR = flags.DEFINE_string('workdir', None, 'the run', flag_values=FLAGS)
_OUT = flags.DEFINE_string('out', None, 'PNG file', flag_values=FLAGS)
_INDEX = flags.DEFINE_integer('index', 0, 'example of the eval split', lower_bound=0, flag_values=FLAGS)
_SPLIT = flags.DEFINE_string('split', None, "default: the run's eval split", flag_values=FLAGS)
_LATENTS = flags.DEFINE_list('latents', None, 'latent indices (default: 4 spread out)', flag_values=FLAGS)
flags.mark_flags_as_required(['workdir', 'out'], flag_values=FLAGS)


def load_run(workdir: str) -> Tuple[ml_collections.ConfigDict, Dict[str, Any], Dict[str, Any], int]:
  """(config, params, model_state restored from the run, step) of the latest checkpoint."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  with open(os.path.join(workdir, 'config.json')) as f:
    config = ml_collections.ConfigDict(json.load(f))
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'), item_names=('state', 'meta'))
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f'{workdir}: no checkpoint')
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(), meta=ocp.args.JsonRestore()))
  manager.close()
  state = restored['state']
  return config, state['params'], state.get('model_state') or {}, step


def eval_example(config: ml_collections.ConfigDict, index: int, split: Optional[str] = None) -> Dict[str, np.ndarray]:
  """Example `index` of the run's eval split, batch of one, through the run's pipeline."""
  from perceiver.train import input_pipeline  # pylint: disable=g-import-not-at-top

  batches = input_pipeline.eval_batches(
    config.data, split=split or config.eval.split, host_batch=config.eval.batch_size, process_index=0, process_count=1
  )
  seen = 0
  for batch in batches:
    n = int(batch['mask'].sum())
    if index < seen + n:
      return {k: v[index - seen : index - seen + 1] for k, v in batch.items()}
    seen += n
  raise IndexError(f'--index {index}: the split has {seen} examples')


def cross_attention_maps(
  net: hk.TransformedWithState, params, state, inputs: Dict[str, Any], num_heads: int
) -> List[np.ndarray]:
  """Attention weights [N, M] (heads averaged) of each encoder cross-attend, in call order."""

  def queries_and_keys(params, state, inputs):
    records: List[Tuple[jax.Array, jax.Array]] = []

    def interceptor(next_f, args, kwargs, context):
      module = context.module
      if isinstance(module, PerceiverEncoder) and context.method_name == '__call__':
        module._use_loops = False  # pylint: disable=protected-access  # Unroll shared blocks.
      if (
        isinstance(module, attn_lib.MultiHeadAttention)
        and context.method_name == 'attend'
        and 'perceiver_encoder' in module.module_name
        and 'cross_attention' in module.module_name
      ):
        records.append((args[0], args[1]))  # q [B, N, H, D/H], k [B, M, H, D/H]
      return next_f(*args, **kwargs)

    with hk.experimental.intercept_methods(interceptor):
      net.apply(params, state, None, inputs, is_training=False)
    return records

  maps = []
  for qh, kh in jax.jit(queries_and_keys)(params, state, inputs):
    if qh.shape[2] != num_heads:
      raise ValueError(f"the model's cross-attends have {qh.shape[2]} heads, not num_heads={num_heads}")
    logits = jnp.einsum('bthd,bshd->bhts', qh, kh) / math.sqrt(qh.shape[-1])  # [B, H, N, M]
    maps.append(np.asarray(jax.nn.softmax(logits, axis=-1).mean(axis=1)[0]))  # [N, M]
  return maps


def to_grid(weights: np.ndarray, image_hw: Tuple[int, int], permute_seed: int) -> np.ndarray:
  """[N, M] weights over the (possibly permuted) inputs -> [N, h, w] on the image grid."""
  n, m = weights.shape
  if permute_seed >= 0:  # Input j sits at pixel perm[j].
    unpermuted = np.empty_like(weights)
    unpermuted[:, io_processors.fixed_permutation(m, permute_seed)] = weights
    weights = unpermuted
  h, w = image_hw
  scale = math.sqrt(h * w / m)  # Conv / patch preprocessing shrinks the grid.
  gh, gw = int(round(h / scale)), int(round(w / scale))
  if gh * gw != m:
    raise ValueError(f'{m} inputs do not form a grid for a {h}x{w} image')
  return weights.reshape(n, gh, gw)


def render(
  image: np.ndarray, maps: Sequence[np.ndarray], rows: Sequence[int], latents: Sequence[int], out: str, title: str
) -> None:
  """Rows: the chosen cross-attends; columns: the input, then one map per latent."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  cols = 1 + len(latents)
  fig, axes = plt.subplots(len(rows), cols, figsize=(2.1 * cols, 2.2 * len(rows)), squeeze=False)
  shown = image[..., 0] if image.shape[-1] == 1 else (image - image.min()) / (np.ptp(image) + 1e-9)
  for r, index in enumerate(rows):
    axes[r, 0].imshow(shown, cmap='gray' if shown.ndim == 2 else None)
    axes[r, 0].set_ylabel(f'cross-attend {index + 1}', fontsize=9)
    axes[r, 0].set_title('input' if r == 0 else '', fontsize=9)
    for c, latent in enumerate(latents, start=1):
      axes[r, c].imshow(maps[index][latent], cmap='viridis', interpolation='nearest')
      if r == 0:
        axes[r, c].set_title(f'latent {latent}', fontsize=9)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  plt.close(fig)


def _error(message: str) -> int:
  print(f'error: {message}', file=sys.stderr)
  return 2


def main(argv: Optional[List[str]] = None) -> int:
  _flags.parse(FLAGS, argv, __doc__)
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  from perceiver import models  # pylint: disable=g-import-not-at-top

  config, params, restored_state, step = load_run(_WORKDIR.value)
  model_cfg = config.model.to_dict()
  if model_cfg.get('name') not in ('perceiver', 'perceiver_io'):
    return _error(f'{_WORKDIR.value}: model {model_cfg.get("name")!r} has no cross-attention')
  batch = eval_example(config, _INDEX.value, _SPLIT.value)
  inputs = {k: jnp.asarray(batch[k]) for k in ('image',) if k in batch}
  if 'image' not in inputs:
    return _error('attention maps are drawn on images (model.input.modality=image)')
  net = models.build_model(model_cfg)
  # Zero-size state (input specs) is not written to checkpoints: start from a
  # fresh state and put back what the run saved (e.g. BatchNorm statistics).
  _, state = net.init(jax.random.PRNGKey(0), inputs, is_training=False)
  state = {
    m: {
      **state.get(m, {}),
      **{k: v for k, v in restored_state.get(m, {}).items() if hasattr(v, 'shape')},
    }  # Skips orbax placeholders.
    for m in set(state) | set(restored_state)
  }
  heads = int(model_cfg['encoder'].get('num_cross_attend_heads', 1))
  maps = cross_attention_maps(net, params, state, inputs, heads)
  image = np.asarray(batch['image'][0])  # [H, W, C]
  seed = int(model_cfg['input'].get('permute_seed', -1))
  grids = [to_grid(m, image.shape[:2], seed) for m in maps]
  n = grids[0].shape[0]
  latents = [int(x) for x in _LATENTS.value] if _LATENTS.value else sorted({round(i * (n - 1) / 3) for i in range(4)})
  rows = sorted({0, min(1, len(grids) - 1), len(grids) - 1})  # First, second, last.
  label = int(batch['label'][0]) if batch['label'].ndim == 1 else None
  render(
    image,
    grids,
    rows,
    latents,
    _OUT.value,
    f'{os.path.basename(os.path.normpath(_WORKDIR.value))} (step {step}), example {_INDEX.value}'
    + (f', label {label}' if label is not None else ''),
  )
  print(f'wrote {_OUT.value}: {len(grids)} cross-attends, rows {[r + 1 for r in rows]}, latents {latents}')
  return 0


def run() -> None:
  sys.exit(main())


if __name__ == '__main__':
  run()
