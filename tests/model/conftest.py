"""Shared small model configs for the model-library tests."""

import copy

import pytest

GOLDEN_DIR = __import__('pathlib').Path(__file__).resolve().parents[3] / 'shared' / 'golden'


def tiny_config(**overrides):
  """A small Perceiver classifier config (this project's config.model schema)."""
  cfg = dict(
    name='perceiver',
    input=dict(modality='image', prep_type='pixels', position_encoding='fourier', num_bands=4),
    encoder=dict(
      num_latents=8,
      latent_channels=16,
      num_blocks=3,
      num_self_attends_per_block=2,
      num_cross_attends=3,
      num_self_attend_heads=2,
      num_cross_attend_heads=1,
    ),
    decoder=dict(name='average_project', num_classes=5),
  )
  cfg = copy.deepcopy(cfg)
  for section, values in overrides.items():
    if isinstance(values, dict):
      cfg[section].update(values)
    else:
      cfg[section] = values
  return cfg


@pytest.fixture
def golden_dir():
  if not GOLDEN_DIR.exists():
    pytest.skip(f'golden files not found at {GOLDEN_DIR}')
  return GOLDEN_DIR
