"""Checkpoint formats: DeepMind pickles, Hugging Face weights, our ``.npz``.

Everything returns parameters in the reference's Haiku naming,
``{module: {name: np.ndarray}}``, so they load into ``perceiver.models``
as-is. Nothing here imports torch, Haiku's private classes or executes code
from a checkpoint file.
"""

from perceiver.checkpoints.compat import check_compatible, shapes_of
from perceiver.checkpoints.errors import (
  CheckpointError,
  CheckpointFormatError,
  CheckpointMismatchError,
  CheckpointNotFoundError,
  UnsafeCheckpointError,
)
from perceiver.checkpoints.hf import convert_hf_state_dict, hf_config_to_reference, infer_hf_class
from perceiver.checkpoints.loader import FORMATS, detect_format, load_checkpoint
from perceiver.checkpoints.npz_format import read_checkpoint, save_checkpoint
from perceiver.checkpoints.published import PRESETS, published_config
from perceiver.checkpoints.safe_pickle import LoadBudget, Params, load_deepmind_checkpoint
from perceiver.checkpoints.safetensors_io import load_safetensors, save_safetensors
from perceiver.checkpoints.torch_zip import load_torch_state_dict

__all__ = [
  'CheckpointError',
  'CheckpointFormatError',
  'CheckpointMismatchError',
  'CheckpointNotFoundError',
  'UnsafeCheckpointError',
  'FORMATS',
  'LoadBudget',
  'PRESETS',
  'Params',
  'check_compatible',
  'convert_hf_state_dict',
  'detect_format',
  'hf_config_to_reference',
  'infer_hf_class',
  'load_checkpoint',
  'load_deepmind_checkpoint',
  'load_safetensors',
  'load_torch_state_dict',
  'published_config',
  'read_checkpoint',
  'save_checkpoint',
  'save_safetensors',
  'shapes_of',
]
