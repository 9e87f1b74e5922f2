"""Whole models and the builders that make them from configs.

- `Perceiver`: pre-processor -> encoder -> decoder -> post-processor (the
  reference's composition, so any published configuration can be rebuilt).
- `build_from_reference_config(config)`: rebuilds a model from the reference
  code's constructor arguments (the `__config__` of a golden / checkpoint
  file): `image_classifier`, `masked_lm`, `optical_flow`, `video_autoencoder`.
- `build_model(model_config)`: the experiment runner's entry point, from this
  project's `config.model` schema (perceiver/config.py, docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import haiku as hk
import jax
import jax.numpy as jnp
import jmp

from perceiver import attention as attn_lib
from perceiver import config as config_lib
from perceiver import decoders as dec_lib
from perceiver import io_processors as io
from perceiver import onednn
from perceiver.encoders import PerceiverEncoder
from perceiver.position_encoding import TrainablePositionEncoding


class Perceiver(hk.Module):
  """Composes pre-processor, encoder, decoder and post-processor."""

  def __init__(
    self,
    encoder: PerceiverEncoder,
    decoder: hk.Module,
    input_preprocessor: Optional[hk.Module] = None,
    output_postprocessor: Optional[hk.Module] = None,
    name: str = 'perceiver',
  ):
    super().__init__(name=name)
    self._encoder = encoder
    self._decoder = decoder
    self._input_preprocessor = input_preprocessor
    self._output_postprocessor = output_postprocessor

  def __call__(
    self,
    inputs,
    *,
    is_training: bool,
    subsampled_output_points=None,
    pos: Optional[jax.Array] = None,
    input_mask: Optional[jax.Array] = None,
    query_mask: Optional[jax.Array] = None,
  ):
    modality_sizes, inputs_without_pos = None, None
    encoder_inputs = inputs
    if self._input_preprocessor is not None:
      # Shared position features kept apart, so that the cross-attends
      # project them once per batch (attn_lib.InputsWithPos says why).
      split = self._encoder.project_positions_once and getattr(self._input_preprocessor, 'can_keep_pos_apart', False)
      encoder_inputs, modality_sizes, inputs_without_pos = self._input_preprocessor(
        inputs,
        is_training=is_training,
        pos=pos,
        network_input_is_1d=True,
        **({'keep_pos_apart': True} if split else {}),
      )
      inputs = encoder_inputs
      if isinstance(inputs, attn_lib.InputsWithPos):
        inputs = inputs.concat()  # For the decoder: flow's queries; the others read only its shape.
    encoder_query = self._encoder.latents(inputs)
    decoder_query = self._decoder.decoder_query(
      inputs, modality_sizes, inputs_without_pos, subsampled_points=subsampled_output_points
    )
    z = self._encoder(encoder_inputs, encoder_query, is_training=is_training, input_mask=input_mask)
    _, output_modality_sizes = self._decoder.output_shape(inputs)
    output_modality_sizes = output_modality_sizes or modality_sizes
    outputs = self._decoder(decoder_query, z, is_training=is_training, query_mask=query_mask)
    if self._output_postprocessor is not None:
      outputs = self._output_postprocessor(outputs, is_training=is_training, modality_sizes=output_modality_sizes)
    return outputs


# ---------------------------------------------------------------------------
# Reference configurations (golden files, released checkpoints).
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ReferenceModel:
  """A model rebuilt from a reference config.

  `net.apply(params, state, rng, *args, is_training=False)`; `input_names`
  lists the positional arguments in the golden files' `input::<name>` terms
  and `output_names` the outputs (`None`: a single array).
  """

  net: hk.TransformedWithState
  input_names: tuple
  output_names: Optional[tuple]


# Conventions where Hugging Face's port differs from the reference; a
# converted HF config names them under `hf_compat` (perceiver/checkpoints/hf.py).
HF_COMPAT_KEYS = frozenset(
  {
    'gelu_approximate',
    'attention_probs_dropout_prob',
    'decoder_query_mask',
    'conv_stem_padding',
    'conv_stem_pool_padding',
  }
)


def _hf_compat(cfg: Mapping[str, Any]) -> Dict[str, Any]:
  compat = dict(cfg.get('hf_compat') or {})
  unknown = sorted(set(compat) - HF_COMPAT_KEYS)
  if unknown:
    raise ValueError(f'unknown hf_compat key(s) {unknown}; known: {sorted(HF_COMPAT_KEYS)}')
  return compat


def _with_eps(kwargs: Mapping[str, Any], eps: Optional[float], cfg: Mapping[str, Any] = None) -> Dict[str, Any]:
  """Block kwargs plus the config-wide numerics (LayerNorm eps, GELU form)."""
  kwargs = dict(kwargs)
  if eps is not None:
    kwargs['layer_norm_eps'] = eps
  compat = _hf_compat(cfg) if cfg is not None else {}
  if 'gelu_approximate' in compat:
    kwargs['gelu_approximate'] = bool(compat['gelu_approximate'])
  if compat.get('attention_probs_dropout_prob'):
    # HF's dropout on attention weights (training only; the reference has none).
    kwargs['dropout_attn_prob'] = float(compat['attention_probs_dropout_prob'])
  return kwargs


def _strip(kwargs: Mapping[str, Any], *names: str) -> Dict[str, Any]:
  return {k: v for k, v in kwargs.items() if k not in names}


def _listify(x):
  return tuple(x) if isinstance(x, (list, tuple)) else x


def _ref_image_classifier(cfg: Mapping[str, Any]) -> ReferenceModel:
  eps = cfg.get('layer_norm_eps')
  prep_kwargs = dict(cfg.get('input_preprocessor', {}))
  fourier = prep_kwargs.get('fourier_position_encoding_kwargs')
  if fourier and fourier.get('max_resolution') is not None:
    prep_kwargs['fourier_position_encoding_kwargs'] = dict(fourier, max_resolution=_listify(fourier['max_resolution']))
  num_classes = int(cfg.get('num_classes', 1000))
  compat = _hf_compat(cfg)
  for key in ('conv_stem_padding', 'conv_stem_pool_padding'):
    if key in compat:
      prep_kwargs[key] = compat[key]

  def forward(images, *, is_training):
    model = Perceiver(
      input_preprocessor=io.ImagePreprocessor(**prep_kwargs),
      encoder=PerceiverEncoder(**_with_eps(cfg.get('encoder', {}), eps, cfg)),
      decoder=dec_lib.ClassificationDecoder(num_classes, **_with_eps(cfg.get('decoder', {}), eps, cfg)),
    )
    return model(images, is_training=is_training)

  return ReferenceModel(hk.transform_with_state(forward), ('images',), None)


def byte_inputs(tokens: jax.Array, input_mask: jax.Array, cfg: Mapping[str, Any]) -> Tuple[jax.Array, hk.Embed]:
  """Token ids [B, T] -> the encoder's inputs [B, T, C] and the byte embedding
  (the masked LM ties its output to it). The masked LM and its classifier both
  build their inputs here, so their module names and creation order match.

  `cfg['byte_conv']` (ByteConvConfig; absent or kernel 0: the released graph)
  adds the n-gram layer on the embeddings, before the positions (see
  ByteConvConfig for why)."""
  vocab_size, d_model, max_seq_len = int(cfg['vocab_size']), int(cfg['d_model']), int(cfg['max_seq_len'])
  embed = hk.Embed(vocab_size=vocab_size, embed_dim=d_model)
  x = embed(tokens)  # [B, T, C]
  conv = config_lib.parse_section(config_lib.ByteConvConfig, cfg.get('byte_conv'), 'config.model.byte_conv')
  if conv.kernel_size:
    x = io.ByteNgrams(conv.kernel_size, conv.channels)(x, input_mask)
  pos = TrainablePositionEncoding(index_dim=max_seq_len, num_channels=d_model)(batch_size=tokens.shape[0])
  return x + pos[:, : tokens.shape[1]], embed  # [B, T, C]


def _ref_masked_lm(cfg: Mapping[str, Any]) -> ReferenceModel:
  eps = cfg.get('layer_norm_eps')
  max_seq_len = int(cfg['max_seq_len'])
  decoder_kwargs = dict(cfg['decoder'])
  decoder_kwargs.setdefault('output_index_dims', max_seq_len)
  decoder_kwargs['output_index_dims'] = _listify(decoder_kwargs['output_index_dims'])
  if isinstance(decoder_kwargs['output_index_dims'], int):
    decoder_kwargs['output_index_dims'] = (decoder_kwargs['output_index_dims'],)

  def forward(tokens, input_mask, *, is_training):
    if tokens.ndim != 2:
      raise ValueError(f'masked LM inputs must be [B, T] token ids, got {tokens.shape}')
    if tokens.shape[1] > max_seq_len:
      raise ValueError(f'sequence length {tokens.shape[1]} exceeds max_seq_len={max_seq_len}')
    x, embed = byte_inputs(tokens, input_mask, cfg)  # [B, T, C]
    model = Perceiver(
      encoder=PerceiverEncoder(**_with_eps(cfg['encoder'], eps, cfg)),
      decoder=dec_lib.BasicDecoder(**_with_eps(decoder_kwargs, eps, cfg)),
    )
    # The reference masks padded query rows in the decoder; HF does not.
    query_mask = input_mask if _hf_compat(cfg).get('decoder_query_mask', True) else None
    out = model(x, is_training=is_training, input_mask=input_mask, query_mask=query_mask)
    return io.EmbeddingDecoder(embedding_matrix=embed.embeddings)(out)  # [B, T, V]

  return ReferenceModel(hk.transform_with_state(forward), ('inputs', 'input_mask'), None)


def _ref_optical_flow(cfg: Mapping[str, Any]) -> ReferenceModel:
  eps = cfg.get('layer_norm_eps')
  train_size = tuple(cfg.get('train_size', (368, 496)))
  num_bands = int(cfg.get('num_bands', 64))
  fourier = dict(num_bands=num_bands, max_resolution=train_size, sine_only=False, concat_pos=True)
  flow_scale = float(cfg.get('flow_scale_factor', 20.0))

  def forward(images, *, is_training):
    model = Perceiver(
      input_preprocessor=io.ImagePreprocessor(
        position_encoding_type='fourier',
        fourier_position_encoding_kwargs=fourier,
        n_extra_pos_mlp=0,
        prep_type='patches',
        spatial_downsample=1,
        conv_after_patching=True,
        temporal_downsample=2,
        num_channels=int(cfg.get('num_channels', 64)),
        patch_mlp_hidden=int(cfg.get('patch_mlp_hidden', 0)),
      ),
      encoder=PerceiverEncoder(**_with_eps(cfg['encoder'], eps, cfg)),
      decoder=dec_lib.FlowDecoder(
        train_size,
        rescale_factor=float(cfg.get('rescale_factor', 100.0)),
        use_query_residual=bool(cfg.get('decoder_query_residual', False)),
        output_num_channels=2,
        position_encoding_type='fourier',
        fourier_position_encoding_kwargs=fourier,
        layer_norm_eps=eps or attn_lib.DEFAULT_LAYER_NORM_EPS,
      ),
    )
    if images.shape[2:4] != train_size:
      raise ValueError(f'optical flow model expects frames of {train_size}, got {images.shape[2:4]}')
    return model(io.patches_for_flow(images), is_training=is_training) * flow_scale

  return ReferenceModel(hk.transform_with_state(forward), ('images',), None)


def _ref_video_autoencoder(cfg: Mapping[str, Any]) -> ReferenceModel:
  eps = cfg.get('layer_norm_eps')
  num_frames = int(cfg.get('num_frames', 16))
  img_sz = int(cfg.get('img_sz', 56))  # The released model's 16 x 56 x 56 video.
  samples_per_patch = int(cfg.get('samples_per_patch', 16))
  n_audio = num_frames * int(cfg.get('audio_samples_per_frame', 1920))
  num_classes = int(cfg.get('num_classes', 700))
  out_channels = int(cfg.get('decoder_output_num_channels', 512))
  query_channels = int(cfg.get('decoder_query_channels', 1024))
  audio_fourier = dict(
    num_bands=int(cfg.get('audio_num_bands', 192)), max_resolution=(n_audio,), sine_only=False, concat_pos=True
  )
  image_fourier = dict(
    num_bands=int(cfg.get('image_num_bands', 32)),
    max_resolution=(num_frames, img_sz, img_sz),
    sine_only=False,
    concat_pos=True,
  )
  mask_probs = dict(cfg.get('mask_probs', {'image': 0.0, 'audio': 0.0, 'label': 1.0}))
  common = dict(
    use_query_residual=False, concat_preprocessed_input=False, layer_norm_eps=eps or attn_lib.DEFAULT_LAYER_NORM_EPS
  )

  def forward(images, audio, subsample_image, subsample_audio, labels=None, *, is_training):
    """`labels` [B, num_classes] (one-hot; zeros when None: the label input is then
    masked anyway with the released mask_probs)."""
    if images.ndim != 5:
      raise ValueError(f'video must be [B, T, H, W, C], got {images.shape}')
    preprocessor = io.MultimodalPreprocessor(
      min_padding_size=int(cfg.get('min_padding_size', 4)),
      modalities={
        'audio': io.AudioPreprocessor(
          position_encoding_type='fourier',
          prep_type='patches',
          fourier_position_encoding_kwargs=audio_fourier,
          samples_per_patch=samples_per_patch,
        ),
        'image': io.ImagePreprocessor(
          position_encoding_type='fourier',
          prep_type='patches',
          fourier_position_encoding_kwargs=image_fourier,
          spatial_downsample=4,
          temporal_downsample=1,
        ),
        'label': io.OneHotPreprocessor(),
      },
      mask_probs=mask_probs,
    )
    postprocessor = io.MultimodalPostprocessor(
      modalities={
        'audio': io.AudioPostprocessor(
          samples_per_patch=samples_per_patch, zero_init=bool(cfg.get('audio_output_zero_init', False))
        ),
        'image': io.ProjectionPostprocessor(num_outputs=3),
        'label': io.ClassificationPostprocessor(num_classes=num_classes),
      }
    )
    encoder = PerceiverEncoder(**_with_eps(_strip(cfg['encoder'], 'name'), eps, cfg), name='encoder')
    decoder = dec_lib.MultimodalDecoder(
      subsampled_index_dims={'audio': subsample_audio.shape[0], 'image': subsample_image.shape[0], 'label': 1},
      modalities={
        'audio': dec_lib.BasicDecoder(
          subsampled_index_dims=subsample_audio,
          output_index_dims=(n_audio // samples_per_patch,),
          output_num_channels=out_channels,
          position_encoding_type='fourier',
          fourier_position_encoding_kwargs=audio_fourier,
          **common,
        ),
        'image': dec_lib.BasicVideoAutoencodingDecoder(
          subsampled_index_dims=subsample_image,
          output_shape=images.shape[:4],
          output_num_channels=out_channels,
          position_encoding_type='fourier',
          fourier_position_encoding_kwargs=image_fourier,
          **common,
        ),
        'label': dec_lib.ClassificationDecoder(
          num_classes=num_classes,
          position_encoding_type='trainable',
          trainable_position_encoding_kwargs=dict(num_channels=query_channels, init_scale=0.02),
          **common,
        ),
      },
      num_outputs=None,
      output_num_channels=out_channels,
      **common,
    )
    model = Perceiver(
      input_preprocessor=preprocessor, encoder=encoder, decoder=decoder, output_postprocessor=postprocessor
    )
    if labels is None:
      labels = jnp.zeros((images.shape[0], num_classes), images.dtype)
    return model(
      {'image': images, 'audio': audio, 'label': labels},
      is_training=is_training,
      subsampled_output_points={'image': subsample_image, 'audio': subsample_audio},
    )

  return ReferenceModel(
    hk.transform_with_state(forward),
    ('images', 'audio', 'subsample_image', 'subsample_audio'),
    ('audio', 'image', 'label'),
  )


REFERENCE_BUILDERS: Dict[str, Callable[[Mapping[str, Any]], ReferenceModel]] = {
  'image_classifier': _ref_image_classifier,
  'masked_lm': _ref_masked_lm,
  'optical_flow': _ref_optical_flow,
  'video_autoencoder': _ref_video_autoencoder,
}


def build_from_reference_config(config: Mapping[str, Any]) -> ReferenceModel:
  """Rebuilds the model a reference-style `__config__` dict describes."""
  name = config.get('model')
  if name not in REFERENCE_BUILDERS:
    raise ValueError(f'unknown reference model {name!r}; known: {sorted(REFERENCE_BUILDERS)}')
  return REFERENCE_BUILDERS[name](config)


# ---------------------------------------------------------------------------
# This project's model configs (config.model: perceiver/config.py's schema).
# ---------------------------------------------------------------------------


def _positional_kwargs(inp: config_lib.InputConfig, num_dims: Optional[int]) -> Dict[str, Any]:
  """Position-encoding kwargs of a pre-processor from a parsed input section."""
  kwargs: Dict[str, Any] = dict(
    position_encoding_type=inp.position_encoding,
    project_pos_dim=inp.project_pos_dim,
    concat_or_add_pos=inp.concat_or_add_pos,
  )
  if inp.position_encoding == 'fourier':
    kwargs['fourier_position_encoding_kwargs'] = dict(
      num_bands=inp.num_bands,
      max_resolution=inp.max_resolution or None,
      concat_pos=inp.concat_pos,
      sine_only=inp.sine_only,
    )
  elif inp.position_encoding == 'trainable':
    kwargs['trainable_position_encoding_kwargs'] = dict(
      num_channels=inp.trainable_pos_channels, init_scale=inp.trainable_pos_init_scale
    )
  del num_dims  # Checked by the schema (InputConfig.validate).
  return kwargs


def _image_preprocessor(inp: config_lib.InputConfig, name: str = 'image_preprocessor'):
  return io.ImagePreprocessor(
    prep_type=inp.prep_type,
    spatial_downsample=inp.spatial_downsample,
    temporal_downsample=inp.temporal_downsample,
    # -1 keeps the pixels' channels; conv stems need a width (the reference's 64).
    num_channels=inp.num_channels if inp.num_channels > 0 else 64,
    conv_after_patching=inp.num_channels > 0 and inp.prep_type == 'patches',
    permute_seed=inp.permute_seed,
    name=name,
    **_positional_kwargs(inp, inp.grid_dims()),
  )


def _audio_preprocessor(inp: config_lib.InputConfig):
  return io.AudioPreprocessor(
    prep_type=inp.prep_type,
    samples_per_patch=inp.samples_per_patch,
    mel_patch_shape=inp.mel_patch_shape,
    **_positional_kwargs(inp, inp.grid_dims()),
  )


class _StreamDropout(hk.Module):
  """Zeroes a whole modality stream per example (AudioSet video dropout)."""

  def __init__(self, rate: float, name: Optional[str] = None):
    super().__init__(name=name)
    self._rate = rate

  def __call__(self, x: jax.Array, *, is_training: bool) -> jax.Array:
    if not is_training or self._rate <= 0:
      return x
    keep = jax.random.bernoulli(hk.next_rng_key(), 1.0 - self._rate, (x.shape[0],))
    return x * keep.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)


def _check_input_spec(key: str, x: jax.Array) -> None:
  """Refuses inputs whose per-example shape or dtype differ from those at init.

  The spec lives in Haiku state as a zero-size array of shape [0, *x.shape[1:]],
  so the check is static (free under jit) and a model applied to, say,
  4-channel images after being initialised on 3-channel ones gets a clear
  error instead of a parameter-shape error deep inside a layer.
  """
  if not hasattr(x, 'shape') or x.ndim < 2:
    raise ValueError(
      f'input {key!r} must be a batch-first array with per-example dims, got {getattr(x, "shape", type(x).__name__)}'
    )
  with hk.experimental.name_scope('input_spec'):
    spec = hk.get_state(key, shape=(0,) + tuple(x.shape[1:]), dtype=x.dtype, init=jnp.zeros)
  if tuple(spec.shape[1:]) != tuple(x.shape[1:]):
    raise ValueError(
      f'input {key!r} has per-example shape {tuple(x.shape[1:])} but the model was '
      f'initialised for {tuple(spec.shape[1:])} (batch dim excluded)'
    )
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f'input {key!r} must be floating point, got {x.dtype}')


def _input_preprocessor(inp: config_lib.InputConfig):
  """(pre-processor, the input keys it reads) for the configured modality."""
  if inp.modality in ('image', 'video'):
    return _image_preprocessor(inp), (inp.modality,)
  if inp.modality == 'audio':
    return _audio_preprocessor(inp), ('audio',)
  if inp.modality == 'points':
    return io.PointCloudPreprocessor(
      num_bands=inp.num_bands,
      max_resolution=inp.max_resolution or (1120, 1120, 1120),
      concat_pos=inp.concat_pos,
      sine_only=inp.sine_only,
    ), ('points',)
  # audio_video (the schema admits nothing else).
  return io.MultimodalPreprocessor(
    modalities={'audio': _audio_preprocessor(inp.audio), 'video': _image_preprocessor(inp.video)},
    min_padding_size=inp.min_padding_size,
  ), ('audio', 'video')


def _input_channels(inp: config_lib.InputConfig) -> Dict[str, int]:
  """Declared channels-last widths per input key (checked by io.check_channels_last)."""
  sections = {'audio': inp.audio, 'video': inp.video} if inp.modality == 'audio_video' else {inp.modality: inp}
  return {k: s.input_channels for k, s in sections.items() if k in ('image', 'video') and s.input_channels > 0}


def make_encoder(enc: config_lib.EncoderConfig, **kwargs: Any) -> PerceiverEncoder:
  """The `PerceiverEncoder` a parsed `model.encoder` section describes."""
  cross_qk, cross_v = enc.channels('cross')
  self_qk, self_v = enc.channels('self')
  return PerceiverEncoder(
    num_self_attends_per_block=enc.num_self_attends_per_block,
    num_blocks=enc.num_blocks,
    z_index_dim=enc.num_latents,
    num_z_channels=enc.latent_channels,
    cross_attend_qk_channels=cross_qk,
    cross_attend_v_channels=cross_v,
    self_attend_qk_channels=self_qk,
    self_attend_v_channels=self_v,
    num_cross_attend_heads=enc.num_cross_attend_heads,
    num_self_attend_heads=enc.num_self_attend_heads,
    cross_attend_widening_factor=enc.cross_attend_widening_factor,
    self_attend_widening_factor=enc.self_attend_widening_factor,
    dropout_prob=enc.dropout_prob,
    dropout_attn_prob=enc.attention_dropout_prob,
    z_pos_enc_init_scale=enc.latent_init_scale,
    cross_attention_shape_for_attn=enc.cross_attention_shape_for_attn,
    use_query_residual=enc.use_query_residual,
    num_cross_attends=enc.num_cross_attends,
    cross_attend_placement=enc.cross_attend_placement,
    share_cross_attends=enc.share_cross_attends,
    share_latent_transformers=enc.share_latent_transformers,
    layer_norm_eps=enc.layer_norm_eps,
    cross_attend_chunk_size=enc.attention_chunk_size,
    remat=enc.remat,
    project_positions_once=enc.project_positions_once,
    **kwargs,
  )


def build_perceiver(cfg: config_lib.PerceiverConfig) -> hk.TransformedWithState:
  """The registered builder of `perceiver` / `perceiver_io` (float32)."""
  inp, enc, dec = cfg.input, cfg.encoder, cfg.decoder
  stream_dropout = {'video': inp.video_dropout_prob, 'audio': inp.audio_dropout_prob}
  channels = _input_channels(inp)

  def forward(inputs: Mapping[str, jax.Array], *, is_training: bool) -> jax.Array:
    if not isinstance(inputs, Mapping):
      raise TypeError(f'model inputs must be a dict keyed by modality, got {type(inputs).__name__}')
    preprocessor, keys = _input_preprocessor(inp)
    missing = [k for k in keys if k not in inputs]
    if missing:
      raise KeyError(
        f'model.input.modality={inp.modality!r} needs inputs {list(keys)}; missing {missing} (got {sorted(inputs)})'
      )
    for k in keys:
      if k in channels:
        io.check_channels_last(inputs[k], channels[k], what=f'input {k!r}')
      _check_input_spec(k, inputs[k])
    x = {
      k: _StreamDropout(stream_dropout[k], name=f'{k}_dropout')(inputs[k], is_training=is_training)
      if stream_dropout.get(k, 0) > 0
      else inputs[k]
      for k in keys
    }
    x = x if len(keys) > 1 else x[keys[0]]
    if dec.name == 'average_project':
      decoder = dec_lib.ProjectionDecoder(dec.num_classes, final_avg_before_project=True)
    else:
      query_channels = dec.query_channels if dec.query_channels > 0 else enc.latent_channels
      decoder = dec_lib.ClassificationDecoder(
        dec.num_classes,
        num_z_channels=enc.latent_channels,
        use_query_residual=dec.use_query_residual,
        num_heads=dec.num_heads,
        position_encoding_type='trainable',
        trainable_position_encoding_kwargs=dict(num_channels=query_channels, init_scale=0.02),
        layer_norm_eps=enc.layer_norm_eps,
      )
    model = Perceiver(encoder=make_encoder(enc), decoder=decoder, input_preprocessor=preprocessor)
    logits = model(x, is_training=is_training, pos=inputs.get('pos'))
    return logits.astype(jnp.float32)

  return hk.transform_with_state(forward)


_BF16_BACKENDS = ('gpu', 'cuda', 'rocm', 'tpu')


def resolve_compute_dtype(compute_dtype: str, backend: Optional[str] = None) -> str:
  """`model.compute_dtype` as a dtype name: 'auto' is bfloat16 on GPU/TPU
  (their matrix units run bf16 several times faster than float32) and float32
  on CPU (XLA's CPU bf16 matmul is no faster there: README, Performance).
  `backend` defaults to jax.default_backend(); tests pass 'gpu' on a CPU."""
  if compute_dtype != 'auto':
    return compute_dtype
  backend = backend or jax.default_backend()
  return 'bfloat16' if backend in _BF16_BACKENDS else 'float32'


def with_compute_dtype(
  net: hk.TransformedWithState, compute_dtype: str, *, backend: Optional[str] = None
) -> hk.TransformedWithState:
  """Mixed precision, the one policy of every built model: float32 master
  parameters (init is unchanged), parameters and floating-point inputs cast
  to `compute_dtype` inside apply, outputs back to float32. 'auto' is
  resolved here, when the model is built (`resolve_compute_dtype`)."""
  compute_dtype = resolve_compute_dtype(compute_dtype, backend)
  if compute_dtype == 'float32':
    return net
  policy = jmp.get_policy(f'params=float32,compute={compute_dtype},output=float32')

  def cast_inputs(inputs):
    return jax.tree.map(
      lambda v: policy.cast_to_compute(v) if jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating) else v, inputs
    )

  def apply(params, state, rng, inputs, *, is_training):
    out, new_state = net.apply(policy.cast_to_compute(params), state, rng, cast_inputs(inputs), is_training=is_training)
    return policy.cast_to_output(out), new_state

  return hk.TransformedWithState(init=net.init, apply=apply)


def with_cpu_matmul(
  net: hk.TransformedWithState, cpu_matmul: str, *, backend: Optional[str] = None
) -> hk.TransformedWithState:
  """`model.cpu_matmul='onednn_bf16'`: on the CPU backend, every linear
  layer's matmul (`attention.linear`) and the attention einsums of the
  unchunked path run in oneDNN on bf16 operands with float32 results (or
  bf16 under bf16 compute), through a method interceptor around apply;
  parameters, names and init are unchanged. (The key/value projections of
  a cross-attend over attn_lib.InputsWithPos, folded with its LayerNorm,
  are not linear-layer calls and stay in XLA.) Other backends
  ignore it (their matrix units are reached by compute_dtype). Raises
  `onednn.OneDNNUnavailable` (the reason in one line) when oneDNN is missing."""
  if cpu_matmul == 'xla' or (backend or jax.default_backend()) != 'cpu':
    return net
  onednn.check_available()

  def interceptor(next_f, args, kwargs, context):
    if isinstance(context.module, attn_lib.Linear) and context.method_name == '__call__':
      return context.module.onednn_bf16(*args)
    if isinstance(context.module, attn_lib.MultiHeadAttention) and context.method_name == 'attend':
      return attn_lib.attend(*args, implementation='onednn_bf16', **kwargs)
    return next_f(*args, **kwargs)

  def apply(params, state, rng, inputs, *, is_training):
    with hk.intercept_methods(interceptor):
      return net.apply(params, state, rng, inputs, is_training=is_training)

  return hk.TransformedWithState(init=net.init, apply=apply)


def build_model(model_config, *, backend: Optional[str] = None) -> hk.TransformedWithState:
  """Builds the model `config.model` describes (any registered `model.name`).

  `model_config` (ConfigDict, dict or a perceiver.config dataclass) is parsed
  by the typed schema first: unknown keys, wrong types and impossible values
  raise `perceiver.config.ModelConfigError` naming the field; missing fields
  take the schema's defaults. Returns `hk.TransformedWithState` whose
  `init(rng, inputs, is_training=...)` and `apply(params, state, rng, inputs,
  is_training=...)` take a dict of batch-first, channels-last arrays keyed by
  modality (`image`, `video`, `audio`, `points`, optional `pos`) and return
  logits [B, num_classes] in float32 (`is_training` is a Python bool: static
  under jit; `perceiver.api.Model` wraps this for plain `jax.jit`).
  `backend` resolves `compute_dtype='auto'` (default: JAX's default backend).
  """
  cfg = config_lib.parse_model_config(model_config)
  net = with_compute_dtype(config_lib.builder_for(cfg.name)(cfg), cfg.compute_dtype, backend=backend)
  return with_cpu_matmul(net, getattr(cfg, 'cpu_matmul', 'xla'), backend=backend)
