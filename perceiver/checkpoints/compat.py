"""Checks that a checkpoint fits a model before any array is used.

The model side calls ``check_compatible(shapes_of(model_params), ckpt_params)``
so a checkpoint for another configuration is refused with one message listing
every missing, unexpected and mis-shaped parameter, instead of a shape error
deep inside XLA.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

from perceiver.checkpoints.errors import CheckpointMismatchError

Shape = Tuple[int, ...]
ShapeTree = Dict[str, Dict[str, Shape]]


def _shape(value: Any) -> Shape:
  """Shape of an array-like, or the value itself when it already is a shape."""
  if hasattr(value, 'shape'):
    return tuple(int(d) for d in value.shape)
  return tuple(int(d) for d in value)


def shapes_of(tree: Mapping[str, Mapping[str, Any]]) -> ShapeTree:
  """``{module: {name: array}}`` (numpy, jax or ShapeDtypeStruct) -> shapes."""
  return {module: {name: _shape(v) for name, v in leaves.items()} for module, leaves in tree.items()}


def _flat(tree: Mapping[str, Mapping[str, Any]]) -> Dict[str, Shape]:
  return {f'{module}::{name}': _shape(v) for module, leaves in tree.items() for name, v in leaves.items()}


def check_compatible(
  expected: Mapping[str, Mapping[str, Any]], got: Mapping[str, Mapping[str, Any]], *, what: str = 'params'
) -> None:
  """Raises CheckpointMismatchError unless ``got`` has exactly ``expected``'s shapes.

  Args:
    expected: ``{module: {name: shape}}`` the model needs (arrays accepted too).
    got: the checkpoint's ``{module: {name: array}}`` (or shapes).
    what: 'params' or 'state', used in the message.

  The error lists all problems, sorted by key, with shapes, and carries them as
  ``.missing``, ``.unexpected`` and ``.mis_shaped`` for programmatic use.
  """
  want, have = _flat(expected), _flat(got)
  missing: List[Tuple[str, Shape]] = sorted((k, s) for k, s in want.items() if k not in have)
  unexpected: List[Tuple[str, Shape]] = sorted((k, s) for k, s in have.items() if k not in want)
  mis_shaped: List[Tuple[str, Shape, Shape]] = sorted(
    (k, want[k], have[k]) for k in want.keys() & have.keys() if want[k] != have[k]
  )
  if not (missing or unexpected or mis_shaped):
    return
  lines = [
    f'checkpoint {what} do not fit the model: {len(missing)} missing, '
    f'{len(unexpected)} unexpected, {len(mis_shaped)} mis-shaped'
  ]
  lines += [f'  missing     {k}  (model expects shape {s})' for k, s in missing]
  lines += [f'  unexpected  {k}  (checkpoint shape {s})' for k, s in unexpected]
  lines += [f'  mis-shaped  {k}  model {w} vs checkpoint {h}' for k, w, h in mis_shaped]
  error = CheckpointMismatchError('\n'.join(lines))
  error.missing, error.unexpected, error.mis_shaped = missing, unexpected, mis_shaped
  raise error
