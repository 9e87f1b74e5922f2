"""Golden-file parity: rebuild a model from a golden `.npz`, run it, compare.

Golden files (../shared/golden/README.md) hold a reference config
(`__config__`), parameters (`params::<module>::<name>`), Haiku state
(`state::...`), inputs (`input::<name>`) and outputs (`output` or
`output::<modality>`). Hugging Face goldens hold `state_dict::<key>` instead
of params and are converted first.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, Mapping, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from perceiver import models
from perceiver.checkpoints.compat import check_compatible

# The bar from the golden README.
MAX_ABS_ERR = 1e-4
MAX_REL_ERR = 1e-3

Tree = Dict[str, Dict[str, np.ndarray]]


def split_flat(arrays: Mapping[str, np.ndarray], prefix: str) -> Tree:
  """`prefix::module::name` keys -> {module: {name: array}}."""
  tree: Tree = {}
  for key, value in arrays.items():
    if key.startswith(prefix + '::'):
      module, name = key[len(prefix) + 2 :].rsplit('::', 1)
      tree.setdefault(module, {})[name] = np.asarray(value)
  return tree


@dataclasses.dataclass
class GoldenCase:
  name: str
  config: dict
  params: Tree
  state: Tree
  inputs: Dict[str, np.ndarray]
  outputs: Dict[str, np.ndarray]  # '' for a single output


def load_golden(path: str) -> GoldenCase:
  if not os.path.exists(path):
    raise FileNotFoundError(f'golden file not found: {path}')
  with np.load(path, allow_pickle=False) as data:
    arrays = {k: data[k] for k in data.files}
  if '__config__' not in arrays:
    raise ValueError(f'{path}: not a golden file (no __config__ entry)')
  config = json.loads(str(arrays['__config__']))
  inputs = {k.split('::', 1)[1]: v for k, v in arrays.items() if k.startswith('input::')}
  outputs = {
    k.split('::', 1)[1] if '::' in k else '': v for k, v in arrays.items() if k == 'output' or k.startswith('output::')
  }
  if any(k.startswith('state_dict::') for k in arrays):
    from perceiver.checkpoints import hf  # Local import: only HF goldens need it.

    state_dict = {k.split('::', 1)[1]: v for k, v in arrays.items() if k.startswith('state_dict::')}
    params, state = hf.convert_state_dict(state_dict, config)
    ref_config = hf.hf_config_to_reference(config)
    inputs = hf.convert_inputs(inputs, config)
    config = ref_config
  else:
    params, state = split_flat(arrays, 'params'), split_flat(arrays, 'state')
  name = os.path.splitext(os.path.basename(path))[0]
  return GoldenCase(name, config, params, state, inputs, outputs)


def run_case(case: GoldenCase) -> Dict[str, np.ndarray]:
  """Runs our model on the case's inputs (inference mode)."""
  model = models.build_from_reference_config(case.config)
  missing = [n for n in model.input_names if n not in case.inputs]
  if missing:
    raise ValueError(f'{case.name}: golden file lacks inputs {missing}')
  args = [jnp.asarray(case.inputs[n]) for n in model.input_names]
  params = jax.tree.map(jnp.asarray, case.params)
  state = jax.tree.map(jnp.asarray, case.state)
  expected_params, expected_state = jax.eval_shape(
    lambda: model.net.init(jax.random.PRNGKey(0), *args, is_training=True)
  )
  check_compatible(expected_params, params, what='params')
  check_compatible(expected_state, state, what='state')
  out, _ = jax.jit(lambda p, s, *a: model.net.apply(p, s, jax.random.PRNGKey(0), *a, is_training=False))(
    params, state, *args
  )
  if model.output_names is None:
    return {'': np.asarray(out)}
  return {k: np.asarray(out[k]) for k in model.output_names}


def compare(ours: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]) -> Tuple[float, float]:
  """Max abs and max relative error over every output array."""
  if set(ours) != set(ref):
    raise ValueError(f'outputs differ: ours {sorted(ours)}, reference {sorted(ref)}')
  abs_err, rel_err = 0.0, 0.0
  for key, r in ref.items():
    o = ours[key]
    if o.shape != r.shape:
      raise ValueError(f'output {key or "output"}: shape {o.shape} != reference {r.shape}')
    err = float(np.max(np.abs(o.astype(np.float64) - r.astype(np.float64))))
    abs_err = max(abs_err, err)
    rel_err = max(rel_err, err / max(float(np.max(np.abs(r))), 1e-30))
  return abs_err, rel_err


def check_file(path: str) -> Tuple[str, float, float, bool]:
  case = load_golden(path)
  abs_err, rel_err = compare(run_case(case), case.outputs)
  return case.name, abs_err, rel_err, (abs_err <= MAX_ABS_ERR and rel_err <= MAX_REL_ERR)
