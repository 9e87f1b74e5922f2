"""Decoders: the Perceiver's average-then-project head and the Perceiver IO
query decoders (basic, classification, projection, multimodal, optical flow,
video autoencoding).

A Perceiver IO decoder has two parts: `decoder_query(...)` builds one query
per output element (position encodings and/or preprocessed inputs), and
`__call__(query, z)` cross-attends from those queries into the latents.
Output queries can be subsampled (`subsampled_points`: flat indices into the
output grid) to decode only part of a large output during training.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from perceiver import attention as attn_lib
from perceiver import position_encoding
from perceiver.io_processors import restructure


class ProjectionDecoder(hk.Module):
  """Linear head on the latents.

  `final_avg_before_project=True` is the Perceiver paper's (v2) head: average
  the latents, then one linear layer. The default False (project every latent,
  then average) is the reference code's default and the paper's v1 order.
  """

  def __init__(
    self,
    num_classes: int,
    *,
    final_avg_before_project: bool = False,
    num_z_channels: int = 1024,
    use_query_residual: bool = False,
    w_init_zeros: bool = True,
    name: str = 'projection_decoder',
  ):
    super().__init__(name=name)
    del num_z_channels, use_query_residual  # Accepted for reference-config compatibility.
    self._final_avg_before_project = final_avg_before_project
    self._num_classes = num_classes
    self._w_init = jnp.zeros if w_init_zeros else None

  def decoder_query(self, inputs, modality_sizes=None, inputs_without_pos=None, subsampled_points=None):
    return None

  def output_shape(self, inputs):
    return (inputs.shape[0], self._num_classes), None

  def __call__(self, query, z: jax.Array, *, is_training: bool, query_mask: Optional[jax.Array] = None) -> jax.Array:
    """z [B, N, D] -> logits [B, num_classes]."""
    del query, is_training, query_mask
    final = hk.Linear(self._num_classes, w_init=self._w_init, name='logits')
    if self._final_avg_before_project:
      return final(jnp.mean(z, axis=1))
    return jnp.mean(final(z), axis=1)


class BasicDecoder(hk.Module):
  """Cross-attends from output queries into the latents, then projects."""

  def __init__(
    self,
    output_num_channels: int,
    *,
    position_encoding_type: str = 'trainable',
    output_index_dims: Optional[Sequence[int]] = None,
    subsampled_index_dims: Optional[Sequence[int]] = None,
    num_z_channels: int = 1024,
    qk_channels: Optional[int] = None,
    v_channels: Optional[int] = None,
    use_query_residual: bool = False,
    output_w_init=None,
    concat_preprocessed_input: bool = False,
    num_heads: int = 1,
    final_project: bool = True,
    layer_norm_eps: float = attn_lib.DEFAULT_LAYER_NORM_EPS,
    chunk_size: int = 0,
    gelu_approximate: bool = True,
    dropout_attn_prob: float = 0.0,
    name: str = 'basic_decoder',
    **position_encoding_kwargs,
  ):
    super().__init__(name=name)
    del num_z_channels  # The latents' width is read from z.
    self._position_encoding_type = position_encoding_type
    self._output_index_dims = tuple(output_index_dims) if output_index_dims is not None else None
    if subsampled_index_dims is None:
      subsampled_index_dims = self._output_index_dims
    self._subsampled_index_dims = subsampled_index_dims
    self._output_num_channels = output_num_channels
    self._output_w_init = output_w_init
    self._qk_channels = qk_channels
    self._v_channels = v_channels
    self._use_query_residual = use_query_residual
    self._concat_preprocessed_input = concat_preprocessed_input
    self._num_heads = num_heads
    self._final_project = final_project
    self._eps = layer_norm_eps
    self._chunk_size = chunk_size
    self._gelu_approximate = gelu_approximate
    self._dropout_attn_prob = dropout_attn_prob
    # Decoders whose queries come from elsewhere (flow) may leave out the
    # output grid; queries are then refused in `decoder_query`.
    self.output_pos_enc = None
    if position_encoding_type != 'none' and self._output_index_dims is not None:
      self.output_pos_enc = position_encoding.build_position_encoding(
        position_encoding_type, index_dims=self._output_index_dims, **position_encoding_kwargs
      )

  def output_shape(self, inputs):
    return (inputs.shape[0], self._subsampled_index_dims, self._output_num_channels), None

  def decoder_query(
    self, inputs: jax.Array, modality_sizes=None, inputs_without_pos=None, subsampled_points: Optional[jax.Array] = None
  ) -> jax.Array:
    """Queries [B, O, Cq] for all outputs, or for `subsampled_points` [O'] only."""
    if self.output_pos_enc is None:
      raise ValueError(
        f'{self.module_name}: no output queries: position_encoding_type='
        f'{self._position_encoding_type!r}, output_index_dims={self._output_index_dims}'
      )
    batch = inputs.shape[0]
    if subsampled_points is not None:
      # Coordinates of the chosen outputs on the reference's grid -1 + 2 i / n
      # (not linspace(-1, 1, n): that is what the released models saw).
      idx = jnp.stack(jnp.unravel_index(subsampled_points, self._output_index_dims), axis=1)
      pos = -1 + 2 * idx / jnp.asarray(self._output_index_dims)[None, :]
      pos = jnp.broadcast_to(pos[None], (batch,) + pos.shape)
      pos_emb = self.output_pos_enc(batch_size=batch, pos=pos)
      pos_emb = pos_emb.reshape(batch, -1, pos_emb.shape[-1])
    else:
      pos_emb = self.output_pos_enc(batch_size=batch)
    if self._concat_preprocessed_input:
      if inputs_without_pos is None:
        raise ValueError(f'{self.module_name}: concat_preprocessed_input needs inputs_without_pos')
      pos_emb = jnp.concatenate([inputs_without_pos, pos_emb], axis=-1)
    return pos_emb

  def __call__(
    self, query: jax.Array, z: jax.Array, *, is_training: bool, query_mask: Optional[jax.Array] = None
  ) -> jax.Array:
    """query [B, O, Cq], z [B, N, D] -> [B, O, output_num_channels]."""
    attention_mask = None
    if query_mask is not None:
      attention_mask = attn_lib.make_cross_attention_mask(query_mask, jnp.ones(z.shape[:2], jnp.int32))
    cross = attn_lib.CrossAttention(
      dropout_prob=0.0,
      num_heads=self._num_heads,
      widening_factor=1,
      shape_for_attn='kv',
      qk_channels=self._qk_channels,
      v_channels=self._v_channels,
      use_query_residual=self._use_query_residual,
      layer_norm_eps=self._eps,
      chunk_size=self._chunk_size,
      gelu_approximate=self._gelu_approximate,
      dropout_attn_prob=self._dropout_attn_prob,
    )
    final = hk.Linear(self._output_num_channels, w_init=self._output_w_init, name='output')
    out = cross(query, z, is_training=is_training, attention_mask=attention_mask)
    if self._final_project:
      out = final(out)
    return out


class ClassificationDecoder(hk.Module):
  """One learned query -> [B, num_classes] logits (Perceiver IO ImageNet head)."""

  def __init__(self, num_classes: int, name: str = 'classification_decoder', **decoder_kwargs):
    super().__init__(name=name)
    self._num_classes = num_classes
    self.decoder = BasicDecoder(output_index_dims=(1,), output_num_channels=num_classes, **decoder_kwargs)

  def decoder_query(self, inputs, modality_sizes=None, inputs_without_pos=None, subsampled_points=None):
    return self.decoder.decoder_query(inputs, modality_sizes, inputs_without_pos, subsampled_points=subsampled_points)

  def output_shape(self, inputs):
    return (inputs.shape[0], self._num_classes), None

  def __call__(self, query, z, *, is_training, query_mask=None) -> jax.Array:
    logits = self.decoder(query, z, is_training=is_training)
    return logits[:, 0, :]  # [B, num_classes]


class MultimodalDecoder(hk.Module):
  """Decodes several modalities with one cross-attend.

  Each modality's decoder only builds queries; they are padded with learned
  per-modality channels to a common width, concatenated in sorted modality
  order and decoded together.
  """

  def __init__(
    self,
    modalities: Mapping[str, hk.Module],
    num_outputs: Optional[int],
    output_num_channels: int,
    min_padding_size: int = 2,
    subsampled_index_dims: Optional[Mapping[str, int]] = None,
    name: str = 'multimodal_decoder',
    **decoder_kwargs,
  ):
    super().__init__(name=name)
    self._modalities = dict(modalities)
    self._subsampled_index_dims = subsampled_index_dims
    self._min_padding_size = min_padding_size
    self._output_num_channels = output_num_channels
    self._num_outputs = num_outputs
    self._decoder = BasicDecoder(
      output_index_dims=(num_outputs,),
      output_num_channels=output_num_channels,
      position_encoding_type='none',
      **decoder_kwargs,
    )

  def decoder_query(self, inputs, modality_sizes, inputs_without_pos=None, subsampled_points=None):
    inputs = restructure(modality_sizes, inputs)
    subsampled_points = subsampled_points or {}
    queries = {}
    for modality, decoder in self._modalities.items():
      without_pos = None if inputs_without_pos is None else inputs_without_pos.get(modality)
      queries[modality] = decoder.decoder_query(
        inputs=inputs[modality],
        modality_sizes=None,
        inputs_without_pos=without_pos,
        subsampled_points=subsampled_points.get(modality),
      )
    width = max(q.shape[-1] for q in queries.values()) + self._min_padding_size

    def pad(modality: str, x: jax.Array) -> jax.Array:
      x = x.reshape(x.shape[0], int(np.prod(x.shape[1:-1])), x.shape[-1])
      padding = position_encoding.TrainablePositionEncoding(
        1, num_channels=width - x.shape[-1], init_scale=0.02, name=f'{modality}_padding'
      )(x.shape[0])
      padding = jnp.broadcast_to(padding, x.shape[:2] + (width - x.shape[-1],))
      return jnp.concatenate([x, padding], axis=-1)

    return jnp.concatenate([pad(m, queries[m]) for m in sorted(self._modalities)], axis=1)

  def output_shape(self, inputs):
    if self._subsampled_index_dims is not None:
      n = sum(self._subsampled_index_dims.values())
    else:
      n = int(np.prod(inputs.shape[1:-1]))
    return (inputs.shape[0], n, self._output_num_channels), self._subsampled_index_dims

  def __call__(self, query, z, *, is_training, query_mask=None) -> jax.Array:
    return self._decoder(query, z, is_training=is_training)


class BasicVideoAutoencodingDecoder(hk.Module):
  """Queries for every (t, y, x) of a video (used inside a multimodal decoder)."""

  def __init__(
    self,
    output_shape: Sequence[int],
    position_encoding_type: str,
    name: str = 'basic_video_autoencoding_decoder',
    **decoder_kwargs,
  ):
    super().__init__(name=name)
    if len(output_shape) != 4:  # B, T, H, W
      raise ValueError(f'output_shape must be [B, T, H, W], got {tuple(output_shape)}')
    self._output_shape = tuple(output_shape)
    self._output_num_channels = decoder_kwargs['output_num_channels']
    self.decoder = BasicDecoder(
      output_index_dims=self._output_shape[1:4], position_encoding_type=position_encoding_type, **decoder_kwargs
    )

  def decoder_query(self, inputs, modality_sizes=None, inputs_without_pos=None, subsampled_points=None):
    return self.decoder.decoder_query(inputs, modality_sizes=modality_sizes, subsampled_points=subsampled_points)

  def output_shape(self, inputs):
    return (inputs.shape[0],) + self._output_shape[1:] + (self._output_num_channels,), None

  def __call__(self, query, z, *, is_training, query_mask=None) -> jax.Array:
    out = self.decoder(query, z, is_training=is_training)
    return out.reshape(self._output_shape + out.shape[-1:])


class FlowDecoder(hk.Module):
  """Optical flow: the queries are the preprocessed first-frame features."""

  def __init__(
    self,
    output_image_shape: Sequence[int],
    output_num_channels: int = 2,
    rescale_factor: float = 100.0,
    name: str = 'flow_decoder',
    **decoder_kwargs,
  ):
    super().__init__(name=name)
    self._output_image_shape = tuple(output_image_shape)
    self._output_num_channels = output_num_channels
    self._rescale_factor = rescale_factor
    self.decoder = BasicDecoder(output_num_channels=output_num_channels, **decoder_kwargs)

  def output_shape(self, inputs):
    return (inputs.shape[0],) + self._output_image_shape + (self._output_num_channels,), None

  def decoder_query(self, inputs, modality_sizes=None, inputs_without_pos=None, subsampled_points=None):
    if subsampled_points is not None:
      raise ValueError('FlowDecoder does not support subsampled output queries')
    return inputs

  def __call__(self, query, z, *, is_training, query_mask=None) -> jax.Array:
    preds = self.decoder(query, z, is_training=is_training) / self._rescale_factor
    return preds.reshape((preds.shape[0],) + self._output_image_shape + preds.shape[-1:])


DECODERS: Dict[str, type] = {
  'projection': ProjectionDecoder,
  'basic': BasicDecoder,
  'classification': ClassificationDecoder,
  'multimodal': MultimodalDecoder,
  'video_autoencoding': BasicVideoAutoencodingDecoder,
  'flow': FlowDecoder,
}
