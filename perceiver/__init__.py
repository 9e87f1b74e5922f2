"""Perceiver and Perceiver IO in JAX/Haiku.

`import perceiver` is cheap: the names below are imported on first use.

  model = perceiver.image_classifier(num_classes=10, input_channels=3)
  params, state = model.init(jax.random.PRNGKey(0), images)   # [B, H, W, C]
  logits = model(params, state, images)

- Models: `image_classifier`, `point_cloud_classifier`, `io_classifier`,
  `masked_lm`, `optical_flow` (named constructors), `build_model(config.model)`
  (any registered `model.name`), `load_pretrained(path)` -> (model, params,
  state) from any supported checkpoint; `Model` (see perceiver/api.py).
- Schema: the `config.model` kinds `PerceiverConfig`, `PerceiverIOConfig`,
  `BaselineConfig`, sections `InputConfig`, `EncoderConfig`,
  `DecoderConfig`; `parse_model_config`, `register_model`.
- Modules (for your own `hk.Module`): `PerceiverEncoder`, `Perceiver`,
  decoders, pre/post-processors, position encodings, attention blocks.
"""

import importlib
from typing import Any

__version__ = '0.1.0'

_EXPORTS = {
  # API (perceiver/api.py)
  'Model': 'perceiver.api',
  'load_pretrained': 'perceiver.api',
  'image_classifier': 'perceiver.api',
  'point_cloud_classifier': 'perceiver.api',
  'io_classifier': 'perceiver.api',
  'masked_lm': 'perceiver.api',
  'optical_flow': 'perceiver.api',
  'from_config': 'perceiver.api',
  # Builders
  'build_model': 'perceiver.models',
  'build_from_reference_config': 'perceiver.models',
  'Perceiver': 'perceiver.models',
  # Schema
  'PerceiverConfig': 'perceiver.config',
  'PerceiverIOConfig': 'perceiver.config',
  'BaselineConfig': 'perceiver.config',
  'InputConfig': 'perceiver.config',
  'EncoderConfig': 'perceiver.config',
  'DecoderConfig': 'perceiver.config',
  'ModelConfigError': 'perceiver.config',
  'parse_model_config': 'perceiver.config',
  'register_model': 'perceiver.config',
  # Modules
  'PerceiverEncoder': 'perceiver.encoders',
  'ProjectionDecoder': 'perceiver.decoders',
  'BasicDecoder': 'perceiver.decoders',
  'ClassificationDecoder': 'perceiver.decoders',
  'MultimodalDecoder': 'perceiver.decoders',
  'FlowDecoder': 'perceiver.decoders',
  'ImagePreprocessor': 'perceiver.io_processors',
  'AudioPreprocessor': 'perceiver.io_processors',
  'PointCloudPreprocessor': 'perceiver.io_processors',
  'MultimodalPreprocessor': 'perceiver.io_processors',
  'EmbeddingDecoder': 'perceiver.io_processors',
  'TrainablePositionEncoding': 'perceiver.position_encoding',
  'FourierPositionEncoding': 'perceiver.position_encoding',
  'generate_fourier_features': 'perceiver.position_encoding',
  'CrossAttention': 'perceiver.attention',
  'SelfAttention': 'perceiver.attention',
}

__all__ = sorted(_EXPORTS) + ['__version__']


def __getattr__(name: str) -> Any:
  if name in _EXPORTS:
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return __all__
