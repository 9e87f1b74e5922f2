"""Imports Hugging Face ``transformers`` Perceiver checkpoints.

``convert_hf_state_dict`` renames a ``PerceiverFor*`` state_dict to the
reference (DeepMind Haiku) module/parameter names and layouts, and
``hf_config_to_reference`` turns the ``PerceiverConfig`` dict into a
reference-style model config (the schema of the goldens' ``__config__``), so
the model builder can rebuild the network the weights belong to. Supported:
``PerceiverForImageClassificationLearned``, ``...Fourier``,
``...ConvProcessing`` and ``PerceiverForMaskedLM`` (the classes of the
``deepmind/vision-perceiver-*`` and ``deepmind/language-perceiver`` weights).

Layouts: torch ``Linear.weight`` is ``[out, in]`` (Haiku ``w`` is ``[in, out]``),
``Conv2d.weight`` is ``[out, in, kh, kw]`` (Haiku ``HWIO``), LayerNorm
``weight/bias`` are Haiku ``scale/offset``, BatchNorm running statistics become
Haiku state (see ``_batchnorm_state``).

HF-vs-reference conventions (read from transformers 5.23's
modeling_perceiver.py; those that change the numbers are written into the
produced config so a model can reproduce the HF outputs):

* LayerNorm eps: ``PerceiverConfig.layer_norm_eps`` (1e-12) is never used by
  the model code: every LayerNorm is ``nn.LayerNorm(dim)`` with torch's default
  eps 1e-5, the reference's value. So the produced ``layer_norm_eps`` is 1e-5
  (the eps the weights run with); using the declared 1e-12 moves the goldens'
  logits by ~3e-5 (tests/checkpoints/test_hf.py shows both).
* GELU: HF ``hidden_act='gelu'`` is the exact erf GELU; the reference MLP uses
  ``jax.nn.gelu``'s tanh approximation -> ``hf_compat.gelu_approximate``.
* Conv stem (ConvProcessing): HF's ``Conv2dSamePadding`` pads 3 on every side of
  the 7x7/stride-2 conv, where Haiku 'SAME' pads (2, 3) on even sizes (a
  one-pixel shift), and HF's ``MaxPool2d(3, 2)`` has no padding ('VALID',
  55x55 tokens at 224px) where the reference pools 'SAME' (56x56) ->
  ``hf_compat.conv_stem_padding`` / ``conv_stem_pool_padding``.
* Masked LM decoder: HF ignores the attention mask in the decoder (padded
  positions are decoded like the others); the reference passes
  ``query_mask=input_mask``, which zeroes attention for padded query rows ->
  ``hf_compat.decoder_query_mask = False``. Unpadded positions agree.
* Attention masks: HF adds ``finfo.min`` to masked logits, the reference
  replaces them with -1e30 and zeroes rows with every key masked; they differ
  only for an input that is entirely padding.
* Learned-position classifier: HF's decoder uses the query residual
  (``use_query_residual=True``); the reference colab config of the released
  checkpoint uses ``False``. We follow HF, so HF weights reproduce HF outputs.
* Constants HF hard-codes per class regardless of ``image_size``: Fourier
  ``max_resolution`` (224, 224) / (56, 56) with 64 bands, conv1x1 and
  position channels 256, MLM decoder ``qk_channels=256`` with 8 heads; these
  equal the published reference configs. HF builds the position projection
  as ``Linear(out_channels, project_pos_dim)``, i.e. from the conv width, not
  the position-encoding width (the same thing only because both are 256).
* Fourier features, positions (``linspace(-1, 1)``, 'ij' grid) and channel
  order are the same in both. Training-only: HF applies
  ``attention_probs_dropout_prob`` (0.1) to attention weights, the reference
  encoder has no attention dropout; torch BatchNorm tracks the unbiased batch
  variance, Haiku the biased one.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

import numpy as np

from perceiver.checkpoints import bounded_json
from perceiver.checkpoints.errors import CheckpointFormatError, existing_file
from perceiver.checkpoints.safe_pickle import Params, PathLike

LEARNED = 'PerceiverForImageClassificationLearned'
FOURIER = 'PerceiverForImageClassificationFourier'
CONV = 'PerceiverForImageClassificationConvProcessing'
MASKED_LM = 'PerceiverForMaskedLM'
SUPPORTED_HF_CLASSES = (LEARNED, FOURIER, CONV, MASKED_LM)

# Haiku's EMA divides by (1 - decay**counter) ("zero debiasing"). torch's running
# statistics are not debiased, so we store a counter large enough that this
# factor is exactly 1.0 in float32 for any decay <= 0.9999 (0.9999**1e6 ~ 4e-44).
# Then hidden == average == running stat, and further EMA updates continue the
# way torch's momentum update would.
EMA_SATURATED_COUNTER = 1_000_000

# What transformers' Perceiver LayerNorms actually use (nn.LayerNorm default);
# the config's layer_norm_eps is not passed to them.
TORCH_LAYER_NORM_EPS = 1e-5

# PerceiverConfig defaults (config.json files store only non-default values).
HF_CONFIG_DEFAULTS: Dict[str, Any] = {
  'num_latents': 256,
  'd_latents': 1280,
  'd_model': 768,
  'num_blocks': 1,
  'num_self_attends_per_block': 26,
  'num_self_attention_heads': 8,
  'num_cross_attention_heads': 8,
  'qk_channels': None,
  'v_channels': None,
  'cross_attention_shape_for_attention': 'kv',
  'self_attention_widening_factor': 1,
  'cross_attention_widening_factor': 1,
  'hidden_act': 'gelu',
  'attention_probs_dropout_prob': 0.1,
  'initializer_range': 0.02,
  'layer_norm_eps': 1e-12,
  'use_query_residual': True,
  'vocab_size': 262,
  'max_position_embeddings': 2048,
  'image_size': 56,
}
_GELU_APPROXIMATE = {'gelu': False, 'gelu_new': True, 'gelu_pytorch_tanh': True, 'gelu_fast': True}

# Type and range of every config.json field we use (checked before any use:
# a config.json is as untrusted as the weights beside it). Ranges are far
# beyond any released Perceiver but keep derived sizes sane.
_INT_FIELDS = {
  'num_latents': (1, 1 << 16),
  'd_latents': (1, 1 << 16),
  'd_model': (1, 1 << 16),
  'num_blocks': (1, 1024),
  'num_self_attends_per_block': (1, 1024),
  'num_self_attention_heads': (1, 1024),
  'num_cross_attention_heads': (1, 1024),
  'self_attention_widening_factor': (1, 64),
  'cross_attention_widening_factor': (1, 64),
  'vocab_size': (1, 1 << 24),
  'max_position_embeddings': (1, 1 << 20),
  'num_labels': (1, 1 << 20),
  'qk_channels': (1, 1 << 16),
  'v_channels': (1, 1 << 16),
}
_OPTIONAL_INT_FIELDS = frozenset({'qk_channels', 'v_channels', 'num_labels'})
_FLOAT_FIELDS = {
  'attention_probs_dropout_prob': (0.0, 1.0),
  'initializer_range': (0.0, 10.0),
  'layer_norm_eps': (0.0, 1.0),
}
_CHOICE_FIELDS = {'cross_attention_shape_for_attention': ('kv', 'q'), 'hidden_act': tuple(_GELU_APPROXIMATE)}
_MAX_IMAGE_SIDE = 1 << 13
_MAX_LABELS = 1 << 20


def validate_hf_config(hf_config: Any) -> None:
  """Type- and range-checks the config.json fields we read; names the field, never its value."""
  if not isinstance(hf_config, Mapping):
    raise CheckpointFormatError('Hugging Face config must be a JSON object')

  def bad(field: str, want: str) -> CheckpointFormatError:
    got = type(hf_config[field]).__name__
    return CheckpointFormatError(f'config field {field!r} must be {want} (got a {got})')

  for field, (low, high) in _INT_FIELDS.items():
    if field not in hf_config or (hf_config[field] is None and field in _OPTIONAL_INT_FIELDS):
      continue
    value = hf_config[field]
    if type(value) is not int or not low <= value <= high:  # pylint: disable=unidiomatic-typecheck
      raise bad(field, f'an integer in [{low}, {high}]')
  for field, (low, high) in _FLOAT_FIELDS.items():
    value = hf_config.get(field)
    if field in hf_config and (type(value) not in (int, float) or not low <= value <= high):  # pylint: disable=unidiomatic-typecheck
      raise bad(field, f'a number in [{low}, {high}]')
  for field, choices in _CHOICE_FIELDS.items():
    if field in hf_config and (not isinstance(hf_config[field], str) or hf_config[field] not in choices):
      raise bad(field, f'one of {", ".join(choices)}')
  if 'use_query_residual' in hf_config and not isinstance(hf_config['use_query_residual'], bool):
    raise bad('use_query_residual', 'true or false')
  if 'image_size' in hf_config:
    size = hf_config['image_size']
    sides = [size] if type(size) is int else size  # pylint: disable=unidiomatic-typecheck
    if (
      not isinstance(sides, list)
      or len(sides) not in (1, 2)
      or sides is size
      and len(sides) != 2
      or not all(type(d) is int and 1 <= d <= _MAX_IMAGE_SIDE for d in sides)
    ):  # pylint: disable=unidiomatic-typecheck
      raise bad('image_size', f'an integer or a list of 2 integers in [1, {_MAX_IMAGE_SIDE}]')
  if 'architectures' in hf_config and hf_config['architectures'] is not None:
    names = hf_config['architectures']
    if not isinstance(names, list) or not all(isinstance(n, str) and len(n) <= 200 for n in names):
      raise bad('architectures', 'a list of class names')
  for field in ('hf_class', 'transformers_version'):
    value = hf_config.get(field)
    if value is not None and (not isinstance(value, str) or len(value) > 200):
      raise bad(field, 'a string of at most 200 characters')
  if hf_config.get('id2label') is not None and (
    not isinstance(hf_config['id2label'], dict) or len(hf_config['id2label']) > _MAX_LABELS
  ):
    raise bad('id2label', f'a mapping of at most {_MAX_LABELS} labels')


# ---------------------------------------------------------------------------
# state_dict -> reference names.
# ---------------------------------------------------------------------------

Converter = Callable[[np.ndarray, str], Dict[str, np.ndarray]]


def _expect_ndim(array: np.ndarray, ndim: int, key: str) -> None:
  if array.ndim != ndim:
    raise CheckpointFormatError(f'{key}: expected a {ndim}-d tensor, got shape {array.shape}')


def _linear(array: np.ndarray, key: str) -> Dict[str, np.ndarray]:
  if key.endswith('.weight'):
    _expect_ndim(array, 2, key)
    return {'w': np.ascontiguousarray(array.T)}  # [out, in] -> [in, out]
  _expect_ndim(array, 1, key)
  return {'b': array}


def _conv(array: np.ndarray, key: str) -> Dict[str, np.ndarray]:
  if key.endswith('.weight'):
    _expect_ndim(array, 4, key)
    return {'w': np.ascontiguousarray(array.transpose(2, 3, 1, 0))}  # OIHW -> HWIO
  _expect_ndim(array, 1, key)
  return {'b': array}


def _layer_norm(array: np.ndarray, key: str) -> Dict[str, np.ndarray]:
  _expect_ndim(array, 1, key)
  return {'scale' if key.endswith('.weight') else 'offset': array}


def _batch_norm(array: np.ndarray, key: str) -> Dict[str, np.ndarray]:
  _expect_ndim(array, 1, key)
  # Haiku BatchNorm (NHWC) keeps scale/offset as [1, 1, 1, C].
  return {'scale' if key.endswith('.weight') else 'offset': array.reshape(1, 1, 1, -1)}


def _as_is(name: str) -> Converter:
  return lambda array, key: {name: array}


# Suffix inside a PerceiverLayer -> (converter, module under a cross-attention
# layer, module under a self-attention layer). The reference creates its
# LayerNorms in call order: cross-attention = q, kv, pre-MLP; self = pre-attn,
# pre-MLP; MultiHeadAttention's Linears = q, k, v, output.
_LAYER_PARTS: Dict[str, Tuple[Converter, str, Optional[str]]] = {
  'attention.self.layernorm1': (_layer_norm, 'layer_norm', 'layer_norm'),
  'attention.self.layernorm2': (_layer_norm, 'layer_norm_1', None),
  'layernorm': (_layer_norm, 'layer_norm_2', 'layer_norm_1'),
  'attention.self.query': (_linear, 'attention/linear', 'attention/linear'),
  'attention.self.key': (_linear, 'attention/linear_1', 'attention/linear_1'),
  'attention.self.value': (_linear, 'attention/linear_2', 'attention/linear_2'),
  'attention.output.dense': (_linear, 'attention/linear_3', 'attention/linear_3'),
  'mlp.dense1': (_linear, 'mlp/linear', 'mlp/linear'),
  'mlp.dense2': (_linear, 'mlp/linear_1', 'mlp/linear_1'),
}
_LAYER_RE = re.compile(
  r'^(?P<layer>perceiver\.encoder\.cross_attention'
  r'|perceiver\.encoder\.self_attends\.(?P<index>\d+)'
  r'|perceiver\.decoder\.decoder\.decoding_cross_attention'
  r'|perceiver\.decoder\.decoding_cross_attention)'
  r'\.(?P<part>.+)\.(?:weight|bias)$'
)
_CLS_DECODER = 'classification_decoder/~/basic_decoder'
_CONV_STEM = 'image_preprocessor/~/conv2_d_downsample/~'
_NETWORK_INPUTS = 'image_preprocessor/~_build_network_inputs'

# Keys outside the attention layers: prefix (before .weight/.bias or the leaf
# name) -> (reference module, converter).
_STATIC: Dict[str, Tuple[str, Converter]] = {
  'perceiver.embeddings.latents': ('perceiver_encoder/~/trainable_position_encoding', _as_is('pos_embs')),
  'perceiver.decoder.decoder.output_position_encodings.position_embeddings': (
    f'{_CLS_DECODER}/~/trainable_position_encoding',
    _as_is('pos_embs'),
  ),
  'perceiver.decoder.decoder.final_layer': (f'{_CLS_DECODER}/output', _linear),
  'perceiver.decoder.output_position_encodings.position_embeddings': (
    'basic_decoder/~/trainable_position_encoding',
    _as_is('pos_embs'),
  ),
  'perceiver.decoder.final_layer': ('basic_decoder/output', _linear),
  'perceiver.input_preprocessor.convnet_1x1': ('image_preprocessor/~/conv2_d', _conv),
  'perceiver.input_preprocessor.position_embeddings.position_embeddings': (
    f'{_NETWORK_INPUTS}/trainable_position_encoding',
    _as_is('pos_embs'),
  ),
  'perceiver.input_preprocessor.positions_projection': (
    f'{_NETWORK_INPUTS}/position_encoding_projector/linear',
    _linear,
  ),
  'perceiver.input_preprocessor.convnet.conv': (f'{_CONV_STEM}/conv', _conv),
  'perceiver.input_preprocessor.convnet.batchnorm': (f'{_CONV_STEM}/batchnorm', _batch_norm),
  'perceiver.input_preprocessor.embeddings.weight': ('embed', _as_is('embeddings')),
  'perceiver.input_preprocessor.position_embeddings.weight': ('trainable_position_encoding', _as_is('pos_embs')),
  'embedding_decoder.bias': ('embedding_decoder', _as_is('bias')),
}
_WEIGHT_AND_BIAS = (_linear, _conv, _batch_norm)
_BN_PREFIX = 'perceiver.input_preprocessor.convnet.batchnorm.'
_BN_STATS = {'running_mean': 'mean_ema', 'running_var': 'var_ema'}


def _layer_module(match: 're.Match[str]', key: str) -> Tuple[str, Converter]:
  layer, index, part = match.group('layer', 'index', 'part')
  if part not in _LAYER_PARTS:
    raise KeyError(key)
  converter, cross_name, self_name = _LAYER_PARTS[part]
  if index is not None:
    if self_name is None:
      raise KeyError(key)
    i = int(index)
    return f'perceiver_encoder/~/self_attention{"_" + str(i) if i else ""}/{self_name}', converter
  base = {
    'perceiver.encoder.cross_attention': 'perceiver_encoder/~/cross_attention',
    'perceiver.decoder.decoder.decoding_cross_attention': f'{_CLS_DECODER}/cross_attention',
    'perceiver.decoder.decoding_cross_attention': 'basic_decoder/cross_attention',
  }[layer]
  return f'{base}/{cross_name}', converter


def _static_module(key: str) -> Tuple[str, Converter]:
  if key in _STATIC:
    return _STATIC[key]
  prefix, _, leaf = key.rpartition('.')
  if leaf in ('weight', 'bias') and prefix in _STATIC and _STATIC[prefix][1] in _WEIGHT_AND_BIAS:
    return _STATIC[prefix]
  raise KeyError(key)


def _batchnorm_state(running: np.ndarray, num_batches_tracked: Optional[np.ndarray]) -> Dict[str, np.ndarray]:
  """torch running_mean/var -> Haiku ExponentialMovingAverage state.

  Haiku's BatchNorm reads ``average`` at inference; an update computes
  ``hidden = decay * hidden + (1 - decay) * value`` and
  ``average = hidden / (1 - decay**counter)``. With ``hidden = average =
  running`` and a saturated counter the debias factor is exactly 1, so
  inference reads the torch statistic bitwise and updates match torch's.
  """
  steps = EMA_SATURATED_COUNTER
  if num_batches_tracked is not None and num_batches_tracked.size == 1:
    steps = max(steps, int(num_batches_tracked.reshape(())))
  value = running.reshape(1, 1, 1, -1)
  return {'average': value, 'hidden': value.copy(), 'counter': np.asarray(steps, np.int32)}


def convert_hf_state_dict(state_dict: Mapping[str, np.ndarray]) -> Tuple[Params, Params]:
  """Renames a transformers ``PerceiverFor*`` state_dict to reference names.

  Returns ``(params, state)`` as ``{module: {name: np.ndarray}}``. Keys that
  have no reference counterpart are not dropped silently: they raise
  CheckpointFormatError listing all of them.
  """
  params: Params = {}
  state: Params = {}
  unknown = []
  nbt = state_dict.get(_BN_PREFIX + 'num_batches_tracked')
  for key in sorted(state_dict):
    array = np.asarray(state_dict[key])
    if key.startswith(_BN_PREFIX) and key[len(_BN_PREFIX) :] in _BN_STATS:
      _expect_ndim(array, 1, key)
      module = f'{_CONV_STEM}/batchnorm/~/{_BN_STATS[key[len(_BN_PREFIX) :]]}'
      state[module] = _batchnorm_state(array, None if nbt is None else np.asarray(nbt))
      continue
    if key == _BN_PREFIX + 'num_batches_tracked':
      continue
    try:
      match = _LAYER_RE.match(key)
      module, converter = _layer_module(match, key) if match else _static_module(key)
    except KeyError:
      unknown.append(key)
      continue
    for name, value in converter(array, key).items():
      if name in params.get(module, {}):
        raise CheckpointFormatError(f'{key}: maps onto {module}::{name} twice')
      params.setdefault(module, {})[name] = value
  if unknown:
    raise CheckpointFormatError(
      'state_dict keys with no reference counterpart (unsupported Perceiver class?): ' + ', '.join(unknown)
    )
  return params, state


def convert_state_dict(
  state_dict: Mapping[str, np.ndarray], hf_config: Optional[Mapping[str, Any]] = None
) -> Tuple[Params, Params]:
  """``convert_hf_state_dict``, checking the weights fit ``hf_config``'s class."""
  if hf_config is not None and hf_class_of(hf_config) is not None:
    expected, inferred = hf_class_of(hf_config), infer_hf_class(state_dict)
    if expected != inferred:
      raise CheckpointFormatError(f'config says {expected} but the weights are {inferred}')
  return convert_hf_state_dict(state_dict)


def convert_inputs(
  inputs: Mapping[str, np.ndarray], hf_config: Optional[Mapping[str, Any]] = None
) -> Dict[str, np.ndarray]:
  """HF model inputs -> the reference model's (``input::<name>`` of the goldens).

  ``pixel_values[_nchw]`` [B, C, H, W] -> ``images`` [B, H, W, C];
  ``inputs``/``input_ids`` -> ``inputs`` (int32); ``attention_mask`` ->
  ``input_mask`` (int32). Other entries pass through.
  """
  del hf_config  # the names are the same for every supported class
  out: Dict[str, np.ndarray] = {}
  for name, value in inputs.items():
    value = np.asarray(value)
    if name in ('pixel_values_nchw', 'pixel_values'):
      if value.ndim != 4:
        raise ValueError(f'{name}: expected [B, C, H, W], got shape {value.shape}')
      out['images'] = np.ascontiguousarray(value.transpose(0, 2, 3, 1))
    elif name in ('inputs', 'input_ids'):
      out['inputs'] = value.astype(np.int32)
    elif name == 'attention_mask':
      out['input_mask'] = value.astype(np.int32)
    else:
      out[name] = value
  return out


# ---------------------------------------------------------------------------
# PerceiverConfig -> reference config.
# ---------------------------------------------------------------------------


def infer_hf_class(keys: Iterable[str]) -> str:
  """Which supported ``PerceiverFor*`` class a state_dict belongs to."""
  keys = set(keys)
  if 'embedding_decoder.bias' in keys:
    return MASKED_LM
  if any(k.startswith('perceiver.input_preprocessor.convnet_1x1.') for k in keys):
    return LEARNED
  if any(k.startswith('perceiver.input_preprocessor.convnet.') for k in keys):
    return CONV
  if any(k.startswith('perceiver.decoder.decoder.final_layer.') for k in keys):
    return FOURIER  # raw pixels: no preprocessor parameters at all
  raise CheckpointFormatError(
    f'cannot tell which PerceiverFor* class this state_dict belongs to (supported: {", ".join(SUPPORTED_HF_CLASSES)})'
  )


def hf_class_of(hf_config: Mapping[str, Any]) -> Optional[str]:
  """The class named by ``hf_class`` (goldens) or ``architectures`` (hub)."""
  validate_hf_config(hf_config)
  name = hf_config.get('hf_class')
  if name is None and hf_config.get('architectures'):
    name = hf_config['architectures'][0]
  return name


def _image_shape(image_size: Any) -> list:
  if isinstance(image_size, int):
    return [image_size, image_size, 3]
  if isinstance(image_size, (list, tuple)) and len(image_size) == 2:
    return [int(image_size[0]), int(image_size[1]), 3]
  raise CheckpointFormatError('unsupported image_size (an integer or 2 integers)')


def _num_labels(c: Mapping[str, Any]) -> int:
  if c.get('num_labels') is not None:
    return int(c['num_labels'])
  return len(c.get('id2label') or {0: 0, 1: 1})  # PretrainedConfig default: 2


def _encoder(c: Mapping[str, Any]) -> Dict[str, Any]:
  encoder = {
    'num_self_attends_per_block': c['num_self_attends_per_block'],
    'num_blocks': c['num_blocks'],
    'z_index_dim': c['num_latents'],
    'num_z_channels': c['d_latents'],
    'qk_channels': c['qk_channels'],
    'v_channels': c['v_channels'],
    'num_cross_attend_heads': c['num_cross_attention_heads'],
    'num_self_attend_heads': c['num_self_attention_heads'],
    'cross_attend_widening_factor': c['cross_attention_widening_factor'],
    'self_attend_widening_factor': c['self_attention_widening_factor'],
    'dropout_prob': 0.0,
    'z_pos_enc_init_scale': c['initializer_range'],
    'cross_attention_shape_for_attn': c['cross_attention_shape_for_attention'],
    'use_query_residual': c['use_query_residual'],
  }
  return {k: v for k, v in encoder.items() if v is not None}


def _classification_decoder(c: Mapping[str, Any]) -> Dict[str, Any]:
  return {
    'num_z_channels': c['d_latents'],
    'position_encoding_type': 'trainable',
    'trainable_position_encoding_kwargs': {'init_scale': c['initializer_range'], 'num_channels': c['d_latents']},
    'use_query_residual': True,
  }


def _fourier(max_resolution: int) -> Dict[str, Any]:
  return {'concat_pos': True, 'max_resolution': [max_resolution, max_resolution], 'num_bands': 64, 'sine_only': False}


def _input_preprocessor(hf_class: str, c: Mapping[str, Any]) -> Dict[str, Any]:
  if hf_class == LEARNED:
    return {
      'prep_type': 'conv1x1',
      'spatial_downsample': 1,
      'num_channels': 256,
      'position_encoding_type': 'trainable',
      'concat_or_add_pos': 'concat',
      'project_pos_dim': 256,
      'trainable_position_encoding_kwargs': {'init_scale': c['initializer_range'], 'num_channels': 256},
    }
  if hf_class == FOURIER:
    return {
      'prep_type': 'pixels',
      'spatial_downsample': 1,
      'position_encoding_type': 'fourier',
      'fourier_position_encoding_kwargs': _fourier(224),
    }
  # ConvProcessing: HF passes spatial_downsample=1 but its Conv2DDownsample
  # always applies one conv+pool layer, i.e. the reference's spatial_downsample=4.
  return {
    'prep_type': 'conv',
    'spatial_downsample': 4,
    'num_channels': 64,
    'position_encoding_type': 'fourier',
    'fourier_position_encoding_kwargs': _fourier(56),
  }


def hf_config_to_reference(hf_config: Mapping[str, Any]) -> Dict[str, Any]:
  """A ``PerceiverConfig`` dict (+ ``hf_class`` or ``architectures``) -> reference config.

  The result has the schema of the goldens' ``__config__`` (``model``,
  ``input_preprocessor``/``encoder``/``decoder`` constructor kwargs, ...), plus
  ``layer_norm_eps`` and ``hf_compat`` (conventions where HF differs from the
  reference, see the module docstring) and ``source``.
  """
  hf_class = hf_class_of(hf_config)  # (validates every field we use)
  if hf_class not in SUPPORTED_HF_CLASSES:
    raise CheckpointFormatError(
      f'unsupported Hugging Face class (architectures/hf_class); supported: {", ".join(SUPPORTED_HF_CLASSES)}'
    )
  c = dict(HF_CONFIG_DEFAULTS)
  c.update({k: v for k, v in hf_config.items() if k in HF_CONFIG_DEFAULTS})
  hf_compat: Dict[str, Any] = {
    'gelu_approximate': _GELU_APPROXIMATE[c['hidden_act']],
    'attention_probs_dropout_prob': c['attention_probs_dropout_prob'],  # training only
  }
  source = {
    'format': 'huggingface',
    'hf_class': hf_class,
    'transformers_version': hf_config.get('transformers_version'),
  }
  if hf_class == MASKED_LM:
    config: Dict[str, Any] = {
      'model': 'masked_lm',
      'vocab_size': c['vocab_size'],
      'max_seq_len': c['max_position_embeddings'],
      'd_model': c['d_model'],
      'encoder': _encoder(c),
      'decoder': {
        'output_num_channels': c['d_latents'],
        'position_encoding_type': 'trainable',
        'output_index_dims': c['max_position_embeddings'],
        'num_z_channels': c['d_latents'],
        'qk_channels': 8 * 32,
        'v_channels': c['d_model'],
        'num_heads': 8,
        'final_project': False,
        'use_query_residual': False,
        'trainable_position_encoding_kwargs': {'num_channels': c['d_model']},
      },
      'tokenizer': 'UTF-8 bytes + 6 special tokens (pad=0, bos=1, eos=2, mask=3, cls=4, sep=5)',
      'transform': 'transform',
    }
    hf_compat['decoder_query_mask'] = False
  else:
    config = {
      'model': 'image_classifier',
      'num_classes': _num_labels(hf_config),
      'image_shape': _image_shape(c['image_size']),
      'input_preprocessor': _input_preprocessor(hf_class, c),
      'encoder': _encoder(c),
      'decoder': _classification_decoder(c),
      'transform': 'transform_with_state',
    }
    if hf_class == CONV:
      hf_compat['conv_stem_padding'] = [[3, 3], [3, 3]]
      hf_compat['conv_stem_pool_padding'] = 'VALID'
  config['layer_norm_eps'] = TORCH_LAYER_NORM_EPS
  config['hf_compat'] = hf_compat
  source['declared_layer_norm_eps_unused'] = c['layer_norm_eps']
  config['source'] = source
  return config


# ---------------------------------------------------------------------------
# Files.
# ---------------------------------------------------------------------------


def read_json_object(path: PathLike) -> Dict[str, Any]:
  """Reads a JSON object file (HF ``config.json``, a reference config)."""
  with open(existing_file(path), 'rb') as f:
    config = bounded_json.loads(f.read(), source=os.fspath(path), what='JSON file')
  if not isinstance(config, dict):
    raise CheckpointFormatError(f'{os.fspath(path)}: expected a JSON object')
  return config


def find_hf_config(weights_path: PathLike) -> Optional[Dict[str, Any]]:
  """The ``config.json`` next to a hub snapshot's weights file, if any."""
  candidate = os.path.join(os.path.dirname(os.path.abspath(weights_path)), 'config.json')
  return read_json_object(candidate) if os.path.exists(candidate) else None
