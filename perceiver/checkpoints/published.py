"""Full-size reference configs of the six checkpoints DeepMind released.

DeepMind's pickles carry no config, so converting one needs the config it was
trained with. These are the constructor arguments of the reference colabs
(deepmind-research/perceiver/colabs/*.ipynb, which load the released files),
in the schema of the goldens' ``__config__`` (../shared/golden/README.md):
``model`` picks the architecture, the other keys are the reference kwargs.

Where we are unsure (flagged ``# unsure`` below):
* optical_flow ``num_channels``: the colab leaves ImagePreprocessor's default
  (64) for the ``patches_linear`` width; we write it out as 64.
* video_autoencoding ``img_sz``: the colab's IMG_SZ (56), i.e. the patch grid
  of 224x224 frames with 4x4 patches, used as the image Fourier
  ``max_resolution`` (16, 56, 56); ``decoder_query_channels`` is the colab's
  ``num_z_channels``/label query width (1024), ``decoder_output_num_channels``
  its ``output_num_channels`` (512). These keys follow the scaled-down golden
  of the same model; the model builder owns their exact meaning.
"""

from __future__ import annotations

import copy
from typing import Any, Dict

_IMAGENET_ENCODER = {
  'cross_attend_widening_factor': 1,
  'cross_attention_shape_for_attn': 'kv',
  'dropout_prob': 0,
  'num_blocks': 8,
  'num_cross_attend_heads': 1,
  'num_self_attend_heads': 8,
  'num_self_attends_per_block': 6,
  'num_z_channels': 1024,
  'self_attend_widening_factor': 1,
  'use_query_residual': True,
  'z_index_dim': 512,
  'z_pos_enc_init_scale': 0.02,
}


def _imagenet_decoder(use_query_residual: bool) -> Dict[str, Any]:
  return {
    'num_z_channels': 1024,
    'position_encoding_type': 'trainable',
    'trainable_position_encoding_kwargs': {'init_scale': 0.02, 'num_channels': 1024},
    'use_query_residual': use_query_residual,
  }


def _imagenet(input_preprocessor: Dict[str, Any], use_query_residual: bool) -> Dict[str, Any]:
  return {
    'model': 'image_classifier',
    'num_classes': 1000,
    'image_shape': [224, 224, 3],
    'transform': 'transform_with_state',
    'input_preprocessor': input_preprocessor,
    'encoder': dict(_IMAGENET_ENCODER),
    'decoder': _imagenet_decoder(use_query_residual),
  }


def _fourier(max_resolution: int) -> Dict[str, Any]:
  return {'concat_pos': True, 'max_resolution': [max_resolution, max_resolution], 'num_bands': 64, 'sine_only': False}


_PUBLISHED: Dict[str, Dict[str, Any]] = {
  # Published ImageNet top-1: 72.7 (learned) / 79.0 (fourier) / 82.1 (conv).
  'imagenet_learned_position_encoding': _imagenet(
    {
      'position_encoding_type': 'trainable',
      'trainable_position_encoding_kwargs': {'init_scale': 0.02, 'num_channels': 256},
      'prep_type': 'conv1x1',
      'project_pos_dim': 256,
      'num_channels': 256,
      'spatial_downsample': 1,
      'concat_or_add_pos': 'concat',
    },
    use_query_residual=False,
  ),
  'imagenet_fourier_position_encoding': _imagenet(
    {
      'position_encoding_type': 'fourier',
      'fourier_position_encoding_kwargs': _fourier(224),
      'prep_type': 'pixels',
      'spatial_downsample': 1,
    },
    use_query_residual=True,
  ),
  'imagenet_conv_preprocessing': _imagenet(
    {
      'position_encoding_type': 'fourier',
      'fourier_position_encoding_kwargs': _fourier(56),
      'prep_type': 'conv',
      'num_channels': 64,
    },
    use_query_residual=True,
  ),
  'language_masked_lm': {
    'model': 'masked_lm',
    'vocab_size': 262,
    'max_seq_len': 2048,
    'd_model': 768,
    'encoder': {
      'num_self_attends_per_block': 26,
      'num_blocks': 1,
      'z_index_dim': 256,
      'num_z_channels': 1280,
      'num_self_attend_heads': 8,
      'num_cross_attend_heads': 8,
      'qk_channels': 8 * 32,
      'v_channels': 1280,
      'use_query_residual': True,
      'cross_attend_widening_factor': 1,
      'self_attend_widening_factor': 1,
    },
    'decoder': {
      'output_num_channels': 1280,
      'position_encoding_type': 'trainable',
      'output_index_dims': 2048,
      'num_z_channels': 1280,
      'qk_channels': 8 * 32,
      'v_channels': 768,
      'num_heads': 8,
      'final_project': False,
      'use_query_residual': False,
      'trainable_position_encoding_kwargs': {'num_channels': 768},
    },
    'tokenizer': 'UTF-8 bytes + 6 special tokens (pad=0, bos=1, eos=2, mask=3, cls=4, sep=5)',
    'transform': 'transform',
  },
  'optical_flow': {
    'model': 'optical_flow',
    'train_size': [368, 496],
    'flow_scale_factor': 20,
    'rescale_factor': 100.0,
    'num_bands': 64,
    'num_channels': 64,  # unsure: ImagePreprocessor default, not set by the colab
    'encoder': {
      'num_self_attends_per_block': 24,
      'num_blocks': 1,
      'z_index_dim': 2048,
      'num_cross_attend_heads': 1,
      'num_z_channels': 512,
      'num_self_attend_heads': 16,
      'cross_attend_widening_factor': 1,
      'self_attend_widening_factor': 1,
      'dropout_prob': 0.0,
      'z_pos_enc_init_scale': 0.02,
      'cross_attention_shape_for_attn': 'kv',
    },
    'transform': 'transform',
  },
  'video_autoencoding': {
    'model': 'video_autoencoder',
    'num_frames': 16,
    'audio_samples_per_frame': 1920,
    'samples_per_patch': 16,
    'num_classes': 700,
    'img_sz': 56,  # unsure: see module docstring
    'image_num_bands': 32,
    'audio_num_bands': 192,
    'min_padding_size': 4,
    'mask_probs': {'image': 0.0, 'audio': 0.0, 'label': 1.0},
    'decoder_query_channels': 1024,
    'decoder_output_num_channels': 512,  # unsure: names
    'encoder': {
      'num_self_attends_per_block': 8,
      'num_blocks': 1,
      'z_index_dim': 28 * 28 * 1,
      'num_z_channels': 512,
      'num_cross_attend_heads': 1,
      'num_self_attend_heads': 8,
      'cross_attend_widening_factor': 1,
      'self_attend_widening_factor': 1,
      'dropout_prob': 0.0,
      'z_pos_enc_init_scale': 0.02,
      'cross_attention_shape_for_attn': 'kv',
    },
    'transform': 'transform_with_state',
  },
}

# Released file stem -> preset (the files are on storage.googleapis.com/perceiver_io/).
RELEASED_FILES = {
  'imagenet_learned_position_encoding.pystate': 'imagenet_learned_position_encoding',
  'imagenet_fourier_position_encoding.pystate': 'imagenet_fourier_position_encoding',
  'imagenet_conv_preprocessing.pystate': 'imagenet_conv_preprocessing',
  'language_perceiver_io_bytes.pickle': 'language_masked_lm',
  'optical_flow_checkpoint.pystate': 'optical_flow',
  'video_autoencoding_checkpoint.pystate': 'video_autoencoding',
}
PRESETS = tuple(_PUBLISHED)


def published_config(name: str) -> Dict[str, Any]:
  """A fresh copy of a released model's full-size reference config."""
  if name not in _PUBLISHED:
    raise KeyError(f'unknown preset {name!r}; choose one of: {", ".join(PRESETS)}')
  return copy.deepcopy(_PUBLISHED[name])
