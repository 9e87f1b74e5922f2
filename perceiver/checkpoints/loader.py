"""One entry point for every checkpoint format this project reads.

``load_checkpoint(path)`` sniffs the format from the file's first bytes (not
its name) and returns ``(params, state, config)`` in reference naming:

* ``npz``: this project's format (``params::``/``state::``/``__config__``);
* ``pystate`` / ``pickle``: DeepMind's released pickles (safe unpickler; no
  config inside, pass one);
* ``hf-safetensors`` / ``hf-torch``: a transformers ``PerceiverFor*``
  state_dict; the HF ``config.json`` next to it (hub snapshot layout) or the
  ``hf_config`` argument gives the config;
* ``hf-npz``: the golden layout (``state_dict::<key>`` + HF ``__config__``).
"""

from __future__ import annotations

import os
import zipfile
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from perceiver.checkpoints import hf as hf_lib
from perceiver.checkpoints import npz_format
from perceiver.checkpoints.errors import CheckpointError, CheckpointFormatError, existing_file, format_errors
from perceiver.checkpoints.safe_pickle import DEFAULT_BUDGET, LoadBudget, Params, PathLike, load_deepmind_checkpoint
from perceiver.checkpoints.safetensors_io import is_safetensors, load_safetensors
from perceiver.checkpoints.torch_zip import is_legacy_torch_file, load_torch_state_dict

FORMATS = ('npz', 'pystate', 'pickle', 'hf-safetensors', 'hf-torch', 'hf-npz')
HF_STATE_DICT_PREFIX = 'state_dict::'
Config = Optional[Dict[str, Any]]


def _zip_names(path: str) -> list:
  with format_errors(path, 'zip archive'), zipfile.ZipFile(path) as zf:
    return zf.namelist()


def detect_format(path: PathLike) -> str:
  """The format of ``path`` from its content: one of ``FORMATS``."""
  path = existing_file(path)
  with open(path, 'rb') as f:
    head = f.read(64)
  if not head:
    raise CheckpointFormatError(f'{path}: empty file')
  if head.startswith(b'PK'):
    names = _zip_names(path)
    if any(n == 'data.pkl' or n.endswith('/data.pkl') for n in names):
      return 'hf-torch'
    if names and all(n.endswith('.npy') for n in names):
      return 'hf-npz' if any(n.startswith(HF_STATE_DICT_PREFIX) for n in names) else 'npz'
    raise CheckpointFormatError(f'{path}: a zip archive that is neither an .npz of .npy files nor a torch checkpoint')
  if head[:1] == b'\x80':
    if is_legacy_torch_file(head):
      raise CheckpointFormatError(
        f'{path}: legacy (torch < 1.6, non-zip) serialization is not supported; '
        're-save it with a recent torch or convert it to safetensors'
      )
    return 'pickle' if path.endswith('.pickle') else 'pystate'
  if is_safetensors(head):
    return 'hf-safetensors'
  raise CheckpointFormatError(
    f'{path}: unknown checkpoint format (expected .npz, a DeepMind .pystate/.pickle, '
    'a safetensors file or a torch zip .bin/.pt)'
  )


def _hf_config_for(path: str, given: Optional[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
  return given if given is not None else hf_lib.find_hf_config(path)


def _from_hf(
  state_dict: Mapping[str, np.ndarray], hf_config: Optional[Mapping[str, Any]], path: str
) -> Tuple[Params, Params, Config]:
  try:
    params, state = hf_lib.convert_hf_state_dict(state_dict)
  except CheckpointError as e:
    raise type(e)(f'{path}: {e}') from None
  if hf_config is None:
    return params, state, None
  try:
    hf_config = dict(hf_config)
    if hf_lib.hf_class_of(hf_config) is None:
      hf_config['hf_class'] = hf_lib.infer_hf_class(state_dict)
    return params, state, hf_lib.hf_config_to_reference(hf_config)
  except CheckpointError as e:
    raise type(e)(f'{path}: Hugging Face config: {e}') from None


def _check_forced_format(path: str, format: str) -> None:  # pylint: disable=redefined-builtin
  """A format given by the caller must not contradict the file's content."""
  try:
    found = detect_format(path)
  except CheckpointFormatError:
    return  # unrecognised content: the chosen reader reports what is wrong
  same = {'pystate': 'pickle', 'pickle': 'pystate'}
  if found != format and same.get(found) != format:
    raise CheckpointFormatError(f'{path}: asked to read it as {format!r}, but the file is {found!r}')


def load_checkpoint(
  path: PathLike,
  format: str = 'auto',
  *,  # pylint: disable=redefined-builtin
  config: Optional[Mapping[str, Any]] = None,
  hf_config: Optional[Mapping[str, Any]] = None,
  budget: LoadBudget = DEFAULT_BUDGET,
) -> Tuple[Params, Params, Config]:
  """Reads any supported checkpoint: ``(params, state, config)``.

  Args:
    path: the file.
    format: 'auto' (sniff the content) or one of ``FORMATS``.
    config: a reference-style config to return instead of the file's own
      (DeepMind pickles carry none; ``None`` is returned then).
    hf_config: the HF ``PerceiverConfig`` dict for HF weights, when there is no
      ``config.json`` beside the file.
    budget: caps on depth, objects and bytes built for pickle-based formats
      (see ``LoadBudget``; the defaults fit every released checkpoint).

  Returns:
    params and state as ``{module: {name: np.ndarray}}`` in the reference's
    Haiku naming, and the reference-style config (or ``None`` if unknown).
  """
  path = os.fspath(path)
  if format == 'auto':
    format = detect_format(path)
  elif format not in FORMATS:
    raise CheckpointFormatError(f'unknown format {format!r}; choose auto or one of {FORMATS}')
  else:
    _check_forced_format(path, format)
  override = dict(config) if config is not None else None
  if format == 'npz':
    params, state, own = npz_format.read_checkpoint(path)
    return params, state, override if override is not None else own
  if format in ('pystate', 'pickle'):
    tree = load_deepmind_checkpoint(path, budget=budget)
    return tree['params'], tree['state'], override
  if format == 'hf-npz':
    arrays = npz_format.read_npz(path)
    state_dict = {k[len(HF_STATE_DICT_PREFIX) :]: v for k, v in arrays.items() if k.startswith(HF_STATE_DICT_PREFIX)}
    own_hf = hf_config if hf_config is not None else npz_format.decode_config(arrays, source=path)
    params, state, converted = _from_hf(state_dict, own_hf, path)
  elif format == 'hf-safetensors':
    state_dict, _ = load_safetensors(path)
    params, state, converted = _from_hf(state_dict, _hf_config_for(path, hf_config), path)
  else:  # hf-torch
    state_dict = load_torch_state_dict(path, budget=budget)
    params, state, converted = _from_hf(state_dict, _hf_config_for(path, hf_config), path)
  return params, state, override if override is not None else converted
