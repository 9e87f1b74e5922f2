"""A float64 numpy forward pass of the four HF Perceiver classes, for tests.

It reads parameters in the *reference* naming (the output of
``convert_hf_state_dict``) and takes every convention where HF and the
reference differ as an explicit switch. Reproducing the HF goldens with it
checks the renaming/transposes and shows which switches HF needs, without
torch and independently of the model library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

Params = Dict[str, Dict[str, np.ndarray]]
_ERF = np.vectorize(math.erf)


@dataclass(frozen=True)
class Conventions:
  layer_norm_eps: float = 1e-5
  gelu_approximate: bool = True
  conv_padding: object = 'SAME'  # or ((3, 3), (3, 3)) like torch
  pool_padding: str = 'SAME'  # or 'VALID' like torch
  decoder_query_mask: bool = True

  @classmethod
  def from_config(cls, config: dict) -> 'Conventions':
    compat = config.get('hf_compat', {})
    conv_padding = compat.get('conv_stem_padding', 'SAME')
    return cls(
      layer_norm_eps=config.get('layer_norm_eps', 1e-5),
      gelu_approximate=compat.get('gelu_approximate', True),
      conv_padding=conv_padding if isinstance(conv_padding, str) else tuple(map(tuple, conv_padding)),
      pool_padding=compat.get('conv_stem_pool_padding', 'SAME'),
      decoder_query_mask=compat.get('decoder_query_mask', True),
    )


def _ln(x, p, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * p['scale'] + p['offset']


def _linear(x, p):
  return x @ p['w'] + p['b']


def _gelu(x, approximate):
  if approximate:
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
  return 0.5 * x * (1 + _ERF(x / np.sqrt(2)))


def _attention(q_in, kv_in, params, mod, heads, mask):
  """mask: [B, Nq, Nk] booleans (True = attend) or None."""
  q, k, v = (
    _linear(x, params[f'{mod}/attention/{n}']) for x, n in ((q_in, 'linear'), (kv_in, 'linear_1'), (kv_in, 'linear_2'))
  )
  b, nq, _ = q.shape
  q = q.reshape(b, nq, heads, -1)
  k = k.reshape(b, k.shape[1], heads, -1)
  v = v.reshape(b, v.shape[1], heads, -1)
  logits = np.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(q.shape[-1])
  if mask is not None:
    logits = np.where(mask[:, None], logits, -1e30)
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  if mask is not None:  # reference: rows with every key masked attend to nothing
    w = np.where(mask[:, None].any(-1, keepdims=True), w, 0.0)
  out = np.einsum('bhqk,bkhd->bqhd', w, v).reshape(b, nq, -1)
  return _linear(out, params[f'{mod}/attention/linear_3'])


def _mlp(x, params, mod, conv):
  return _linear(_gelu(_linear(x, params[f'{mod}/mlp/linear']), conv.gelu_approximate), params[f'{mod}/mlp/linear_1'])


def _cross(q_in, kv_in, params, mod, heads, residual, conv, mask=None):
  eps = conv.layer_norm_eps
  x = _attention(
    _ln(q_in, params[f'{mod}/layer_norm'], eps),
    _ln(kv_in, params[f'{mod}/layer_norm_1'], eps),
    params,
    mod,
    heads,
    mask,
  )
  if residual:
    x = x + q_in
  return x + _mlp(_ln(x, params[f'{mod}/layer_norm_2'], eps), params, mod, conv)


def _self(x, params, mod, heads, conv):
  eps = conv.layer_norm_eps
  normed = _ln(x, params[f'{mod}/layer_norm'], eps)
  x = x + _attention(normed, normed, params, mod, heads, None)
  return x + _mlp(_ln(x, params[f'{mod}/layer_norm_1'], eps), params, mod, conv)


def _encode(inputs, params, enc, conv, input_mask=None):
  latents = params['perceiver_encoder/~/trainable_position_encoding']['pos_embs']
  z = np.broadcast_to(latents, (inputs.shape[0],) + latents.shape)
  mask = (
    None
    if input_mask is None
    else np.broadcast_to(input_mask[:, None, :].astype(bool), (inputs.shape[0], z.shape[1], inputs.shape[1]))
  )
  z = _cross(
    z,
    inputs,
    params,
    'perceiver_encoder/~/cross_attention',
    enc['num_cross_attend_heads'],
    enc.get('use_query_residual', True),
    conv,
    mask,
  )
  for _ in range(enc['num_blocks']):
    for i in range(enc['num_self_attends_per_block']):
      mod = 'perceiver_encoder/~/self_attention' + (f'_{i}' if i else '')
      z = _self(z, params, mod, enc['num_self_attend_heads'], conv)
  return z


def fourier_features(index_dims, max_resolution, num_bands):
  grids = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in index_dims], indexing='ij')
  pos = np.stack(grids, -1).reshape(-1, len(index_dims))  # [N, d]
  freqs = np.stack([np.linspace(1.0, r / 2, num_bands) for r in max_resolution])  # [d, K]
  feats = (pos[:, :, None] * freqs[None]).reshape(pos.shape[0], -1)  # [N, d*K]
  return np.concatenate([pos, np.sin(np.pi * feats), np.cos(np.pi * feats)], -1)


def _pads(n, k, s, padding):
  if padding == 'VALID':
    return (0, 0)
  if padding == 'SAME':
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return (total // 2, total - total // 2)
  return tuple(padding)


def _windows(x, k, s, pads_hw, fill):
  """x [B, H, W, C] -> [B, Ho, Wo, k, k, C] windows after padding with ``fill``."""
  x = np.pad(x, ((0, 0), pads_hw[0], pads_hw[1], (0, 0)), constant_values=fill)
  ho = (x.shape[1] - k) // s + 1
  wo = (x.shape[2] - k) // s + 1
  idx_h = (np.arange(ho) * s)[:, None] + np.arange(k)[None]
  idx_w = (np.arange(wo) * s)[:, None] + np.arange(k)[None]
  return x[:, idx_h[:, None, :, None], idx_w[None, :, None, :]]


def _conv_stem(x, params, state, conv):
  """7x7/2 conv (no bias) -> BatchNorm (running stats) -> relu -> 3x3/2 max-pool."""
  stem = 'image_preprocessor/~/conv2_d_downsample/~'
  w = params[f'{stem}/conv']['w']  # [7, 7, Cin, Cout]
  pad = lambda i: conv.conv_padding if isinstance(conv.conv_padding, str) else conv.conv_padding[i]
  pads = [_pads(n, 7, 2, pad(i)) for i, n in enumerate(x.shape[1:3])]
  y = np.einsum('bhwijc,ijcd->bhwd', _windows(x, 7, 2, pads, 0.0), w)
  bn = params[f'{stem}/batchnorm']
  mean = state[f'{stem}/batchnorm/~/mean_ema']['average']
  var = state[f'{stem}/batchnorm/~/var_ema']['average']
  y = np.maximum((y - mean) / np.sqrt(var + 1e-5) * bn['scale'] + bn['offset'], 0.0)
  pads = [_pads(n, 3, 2, conv.pool_padding) for n in y.shape[1:3]]
  return _windows(y, 3, 2, pads, -np.inf).max(axis=(3, 4))


def image_classifier(images, params, state, config):
  """images [B, H, W, 3] float -> logits [B, num_classes]."""
  conv = Conventions.from_config(config)
  prep = config['input_preprocessor']
  x = np.asarray(images, np.float64)
  b = x.shape[0]
  if prep['prep_type'] == 'conv1x1':
    c = params['image_preprocessor/~/conv2_d']
    x = (x @ c['w'][0, 0] + c['b']).reshape(b, -1, c['w'].shape[-1])
    pos = params['image_preprocessor/~_build_network_inputs/trainable_position_encoding']['pos_embs']
    pos = _linear(pos, params['image_preprocessor/~_build_network_inputs/position_encoding_projector/linear'])
  else:
    if prep['prep_type'] == 'conv':
      x = _conv_stem(x, params, state, conv)
    kw = prep['fourier_position_encoding_kwargs']
    pos = fourier_features(x.shape[1:3], kw['max_resolution'], kw['num_bands'])
    x = x.reshape(b, -1, x.shape[-1])
  inputs = np.concatenate([x, np.broadcast_to(pos, (b,) + pos.shape)], -1)
  z = _encode(inputs, params, config['encoder'], conv)
  dec = 'classification_decoder/~/basic_decoder'
  query = np.broadcast_to(params[f'{dec}/~/trainable_position_encoding']['pos_embs'], (b, 1, z.shape[-1]))
  out = _cross(query, z, params, f'{dec}/cross_attention', 1, config['decoder'].get('use_query_residual', True), conv)
  return _linear(out, params[f'{dec}/output'])[:, 0]


def masked_lm(tokens, input_mask, params, config):
  """tokens [B, T] int, input_mask [B, T] -> logits [B, T, vocab]."""
  conv = Conventions.from_config(config)
  emb = params['embed']['embeddings']
  x = emb[tokens] + params['trainable_position_encoding']['pos_embs'][None, : tokens.shape[1]]
  z = _encode(x, params, config['encoder'], conv, input_mask)
  dec = config['decoder']
  query = np.broadcast_to(
    params['basic_decoder/~/trainable_position_encoding']['pos_embs'],
    (tokens.shape[0],) + (dec['output_index_dims'], emb.shape[1]),
  )
  mask: Optional[np.ndarray] = None
  if conv.decoder_query_mask:
    mask = np.broadcast_to(input_mask[:, :, None].astype(bool), query.shape[:2] + (z.shape[1],))
  out = _cross(
    query, z, params, 'basic_decoder/cross_attention', dec['num_heads'], dec['use_query_residual'], conv, mask
  )
  return out @ emb.T + params['embedding_decoder']['bias']
