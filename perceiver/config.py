"""The typed model schema: the one place model defaults and allowed values live.

`config.model` (an ml_collections ConfigDict in configs/, a plain dict, or
the JSON in an exported checkpoint) is parsed into frozen dataclasses:

- `PerceiverConfig` (`model.name='perceiver'`): the Perceiver (ICML 2021);
  its defaults are the paper's ImageNet model (PAPERS.md, "Perceiver
  architecture"), so a partial dict builds that model, never a smaller one.
- `PerceiverIOConfig` (`'perceiver_io'`): the same with Perceiver IO's
  defaults (one cross-attend at the start, a query decoder: config A).
- `BaselineConfig` (`'resnet'`, `'vit'`, `'transformer'`): the baselines of
  the Perceiver tables (perceiver/baselines.py).

`parse_model_config` rejects unknown keys, wrong types and impossible values
with one `ModelConfigError` line naming the field
(`model.encoder.num_latents must be >= 1, got 0`). New model kinds register
a dataclass and a builder with `register_model`; `perceiver.models.build_model`
dispatches on `model.name` through that registry. configs/common.py takes
its defaults from these dataclasses and docs/architecture.md's schema table
is `schema_markdown()` (a test fails when they disagree).

This module imports neither JAX nor Haiku, so validating a config is cheap.
"""

from __future__ import annotations

import dataclasses
import importlib
import numbers
import typing
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

COMPUTE_DTYPES = ('float32', 'bfloat16')
# 'auto': bfloat16 compute on GPU/TPU, float32 on CPU (perceiver.models.resolve_compute_dtype).
PERCEIVER_COMPUTE_DTYPES = COMPUTE_DTYPES + ('auto',)
# 'onednn_bf16': linear layers and attention multiply bf16 operands through oneDNN on the CPU (perceiver/onednn.py).
CPU_MATMULS = ('xla', 'onednn_bf16')


class ModelConfigError(ValueError):
  """A model config field is unknown, mistyped or impossible (one line)."""


def as_dict(cfg: Any) -> Dict[str, Any]:
  """A ConfigDict, mapping, dataclass or None as a plain dict."""
  if cfg is None:
    return {}
  if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
    return to_dict(cfg)
  if hasattr(cfg, 'to_dict'):
    return cfg.to_dict()
  if isinstance(cfg, Mapping):
    return dict(cfg)
  raise ModelConfigError(f'a model config section must be a mapping, got {type(cfg).__name__}')


def _field(
  default: Any = dataclasses.MISSING,
  doc: str = '',
  *,
  choices: Tuple = (),
  min: Optional[float] = None,
  below: Optional[float] = None,  # pylint: disable=redefined-builtin
  factory: Optional[Callable[[], Any]] = None,
  unset: bool = False,
) -> Any:
  """A schema field: its default, meaning and allowed values (read by the
  validator and by the generated docs table). `unset`: -1 means "not set"
  and any other value must be >= 1."""
  meta = dict(doc=doc, choices=tuple(choices), min=-1 if unset else min, below=below, unset=unset)
  if factory is not None:
    return dataclasses.field(default_factory=factory, metadata=meta)
  return dataclasses.field(default=default, metadata=meta)


_POSITIONS = ('fourier', 'trainable', 'none')
# Index dims of the position grid per modality (None: depends on prep_type).
_GRID_DIMS = {'image': 2, 'video': 3, 'audio': None, 'points': 3, 'audio_video': None}
_PREP_TYPES = {
  'image': ('pixels', 'conv1x1', 'conv', 'patches'),
  'video': ('pixels', 'patches', 'conv'),
  'audio': ('patches', 'mel'),
}


@dataclasses.dataclass(frozen=True)
class InputConfig:
  """`model.input`: how the inputs become the byte array [B, M, C]."""

  modality: str = _field(
    'image', 'input key the model reads', choices=('image', 'video', 'audio', 'points', 'audio_video')
  )
  input_channels: int = _field(
    -1,
    'channels C of a channels-last image/video; checked, so a [B, C, H, W] array fails clearly (-1: not checked)',
    unset=True,
  )
  prep_type: str = _field(
    'pixels', 'image: pixels, conv1x1, conv, patches; video: pixels, patches, conv; audio: patches, mel'
  )
  spatial_downsample: int = _field(1, 'patch / conv1x1 stride', min=1)
  temporal_downsample: int = _field(1, 'video patch length in frames', min=1)
  num_channels: int = _field(-1, 'output channels of conv1x1 / conv stem / patch linear (-1: keep)', unset=True)
  position_encoding: str = _field('fourier', 'position features', choices=_POSITIONS)
  num_bands: int = _field(64, 'Fourier frequency bands K', min=1)
  max_resolution: Tuple[int, ...] = _field(
    (), 'Fourier max resolution mu per index dim (() = the input grid: mu=224 on 224 x 224 ImageNet images)'
  )
  concat_pos: bool = _field(True, 'Fourier: append the raw positions')
  sine_only: bool = _field(False, 'Fourier: sines only (no cosines)')
  trainable_pos_channels: int = _field(258, 'trainable position width (258 = the Fourier width)', min=1)
  trainable_pos_init_scale: float = _field(0.02, 'trainable position init std', min=0)
  project_pos_dim: int = _field(-1, 'project positions to this width (-1: no projection)', unset=True)
  concat_or_add_pos: str = _field('concat', 'how positions join the inputs', choices=('concat', 'add'))
  permute_seed: int = _field(
    -1, '>= 0: one fixed permutation of the M inputs after position features are attached (Perceiver Table 2)', min=-1
  )
  samples_per_patch: int = _field(128, 'audio patches: samples per input', min=1)
  mel_patch_shape: Tuple[int, ...] = _field((1, 1), 'audio mel: (frames, bins) per input')
  min_padding_size: int = _field(4, 'audio_video: modality padding channels', min=0)
  video_dropout_prob: float = _field(0.0, 'audio_video: drop the whole video stream', min=0, below=1)
  audio_dropout_prob: float = _field(0.0, 'audio_video: drop the whole audio stream', min=0, below=1)
  audio: Optional[InputConfig] = _field(None, 'audio_video: the audio section (an input section)')
  video: Optional[InputConfig] = _field(None, 'audio_video: the video section (an input section)')

  @staticmethod
  def default_section(name: str) -> 'InputConfig':
    """The base an audio_video `audio` / `video` section is parsed over."""
    return InputConfig(modality=name, prep_type='patches')

  def grid_dims(self) -> Optional[int]:
    if self.modality == 'audio':
      return 1 if self.prep_type == 'patches' else 2
    return _GRID_DIMS[self.modality]

  def validate(self, path: str) -> None:
    allowed = _PREP_TYPES.get(self.modality)
    if allowed is not None and self.prep_type not in allowed:
      raise ModelConfigError(
        f'{path}.prep_type for {self.modality} must be one of {list(allowed)}, got {_show(self.prep_type)}'
      )
    dims = self.grid_dims()
    if (
      self.position_encoding == 'fourier'
      and dims is not None
      and self.max_resolution
      and len(self.max_resolution) != dims
    ):
      raise ModelConfigError(
        f'{path}.max_resolution has {len(self.max_resolution)} dims, {self.modality} inputs have {dims} index dims'
      )
    if any(r < 1 for r in self.max_resolution):
      raise ModelConfigError(f'{path}.max_resolution entries must be >= 1')
    if self.modality == 'points' and self.position_encoding != 'fourier':
      raise ModelConfigError(f"{path}.position_encoding must be 'fourier' for points (the xyz are the positions)")
    if len(self.mel_patch_shape) != 2 or min(self.mel_patch_shape) < 1:
      raise ModelConfigError(f'{path}.mel_patch_shape must be two ints >= 1')
    if self.modality == 'audio_video':
      for sub in ('audio', 'video'):
        section = getattr(self, sub)
        if section is None:
          raise ModelConfigError(f'{path}.modality=audio_video needs a {path}.{sub} section')
        if section.modality != sub:
          raise ModelConfigError(f'{path}.{sub}.modality must be {sub!r}, got {_show(section.modality)}')


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """`model.encoder`: the latent array and the attention stack.

  Defaults: the Perceiver's ImageNet model (8 cross-attends interleaved with
  8 shared latent Transformers of 6 self-attends on 512 x 1024 latents).
  """

  num_latents: int = _field(512, 'N, latent array length', min=1)
  latent_channels: int = _field(1024, 'D, latent channels', min=1)
  num_blocks: int = _field(8, 'latent Transformer repeats (0: cross-attends only)', min=0)
  num_self_attends_per_block: int = _field(6, 'self-attends per latent Transformer', min=0)
  num_cross_attends: int = _field(8, 'cross-attends (8 Perceiver, 1 Perceiver IO)', min=1)
  cross_attend_placement: str = _field(
    'interleaved', 'cross-attends before every k-th block or all at the start', choices=('interleaved', 'start')
  )
  share_cross_attends: bool = _field(True, 'cross-attends 2..n share one set of weights')
  share_latent_transformers: bool = _field(True, 'all repeats share one latent Transformer')
  num_cross_attend_heads: int = _field(1, 'cross-attend heads', min=1)
  num_self_attend_heads: int = _field(8, 'self-attend heads', min=1)
  cross_attend_widening_factor: int = _field(1, 'cross-attend MLP widening', min=1)
  self_attend_widening_factor: int = _field(1, 'self-attend MLP widening', min=1)
  qk_channels: int = _field(
    -1,
    "Q/K width of every attention (-1: reference default: the inputs' width for cross-attends, D for self-attends)",
    unset=True,
  )
  v_channels: int = _field(-1, 'V width of every attention (-1: = its Q/K width)', unset=True)
  cross_attend_qk_channels: int = _field(
    -1, 'cross-attend Q/K width = heads x dim per head (-1: qk_channels)', unset=True
  )
  cross_attend_v_channels: int = _field(-1, 'cross-attend V width (-1: v_channels)', unset=True)
  self_attend_qk_channels: int = _field(-1, 'self-attend Q/K width (-1: qk_channels)', unset=True)
  self_attend_v_channels: int = _field(-1, 'self-attend V width (-1: v_channels)', unset=True)
  cross_attention_shape_for_attn: str = _field(
    'kv', "reference default width of the cross-attend Q/K: the inputs' (kv) or the latents' (q)", choices=('kv', 'q')
  )
  use_query_residual: bool = _field(True, 'residual around the cross-attend')
  dropout_prob: float = _field(0.0, 'dropout on attention outputs and MLPs (training)', min=0, below=1)
  attention_dropout_prob: float = _field(0.0, 'dropout on attention weights (training)', min=0, below=1)
  latent_init_scale: float = _field(0.02, 'latent array init std', min=0)
  attention_chunk_size: int = _field(
    0, '0: plain attention, else the memory-lean chunked cross-attend with this block size', min=0
  )
  remat: bool = _field(False, 'rematerialise latent blocks (memory for compute)')
  project_positions_once: bool = _field(
    True,
    'cross-attends multiply concatenated position features (the same for every example) by their key/value weights'
    ' once per batch, not per example: the same function, float round-off differs',
  )
  layer_norm_eps: float = _field(1e-5, "LayerNorm epsilon (the reference's)", min=0)

  def channels(self, which: str) -> Tuple[Optional[int], Optional[int]]:
    """(qk, v) widths of the 'cross' or 'self' attends; None: reference default."""
    qk = getattr(self, f'{which}_attend_qk_channels')
    v = getattr(self, f'{which}_attend_v_channels')
    qk = qk if qk > 0 else self.qk_channels
    v = v if v > 0 else self.v_channels
    return (qk if qk > 0 else None), (v if v > 0 else None)

  def validate(self, path: str) -> None:
    for which in ('cross', 'self'):
      heads = getattr(self, f'num_{which}_attend_heads')
      qk, v = self.channels(which)
      if which == 'self' and qk is None:
        qk, what = self.latent_channels, 'latent_channels'
      else:
        what = f'{which}_attend_qk_channels' if getattr(self, f'{which}_attend_qk_channels') > 0 else 'qk_channels'
      if qk is not None and qk % heads:
        raise ModelConfigError(f'{path}.{what}={qk} is not divisible by num_{which}_attend_heads={heads}')
      v = v if v is not None else qk
      if v is not None and v % heads:
        raise ModelConfigError(
          f'{path}.{which}_attend_v_channels (or v_channels)={v} is not divisible by num_{which}_attend_heads={heads}'
        )
    if self.cross_attend_placement == 'interleaved' and self.num_cross_attends > max(self.num_blocks, 1):
      raise ModelConfigError(
        f'{path}.num_cross_attends={self.num_cross_attends} cannot interleave with '
        f'num_blocks={self.num_blocks}; use cross_attend_placement=start'
      )


@dataclasses.dataclass(frozen=True)
class AlignedInitConfig:
  """`model.aligned_init` of the byte masked LM and its classifier (ours, off by default).

  A randomly initialised Perceiver starts with every latent a near-even
  average of the window, so no latent stands for a position and the decoder's
  position queries all read the same thing (docs/language.md, "Diagnosis").
  This init starts it with positional routing instead: one sinusoid table
  gives the input positions, the decoder queries and the latents (latent n
  at byte n x T / N); the Q/K projections of the cross-attends (and,
  optionally, the self-attends) are a gain times the identity on the table's
  channels, so latent n first reads the bytes around its own position and
  output query t the latents around t. Only the init changes; every
  parameter stays trainable and the shapes are those of the random init.
  """

  enabled: bool = _field(False, 'start from the position-aligned init (perceiver/language.py)')
  wavelength_base: float = _field(10000.0, 'sinusoid table: wavelengths from 2 pi to 2 pi x base positions', min=1)
  input_scale: float = _field(0.02, 'std of the input and decoder-query position tables', min=0)
  latent_scale: float = _field(3.0, "std of the latent array on the table's channels (0 elsewhere)", min=0)
  cross_attend_gain: float = _field(2.0, "cross-attend Q/K projections: gain x identity on the table's channels", min=0)
  self_attend_gain: float = _field(1.0, 'self-attend Q/K projections likewise (0: keep the random init)', min=0)


@dataclasses.dataclass(frozen=True)
class ByteConvConfig:
  """`model.byte_conv` of the byte masked LM and its classifier (ours, off by default).

  The input cross-attend reads each byte alone (its embedding plus its
  position), so a Perceiver trained from scratch on little text sees a
  weighted bag of bytes and has to find word-level features through
  attention patterns alone (docs/language.md, "Byte n-grams"). This turns
  the byte embeddings `e` into `e + W2 gelu(conv_k(e))` over the byte axis,
  before the position encoding is added: each byte's input then carries
  its `kernel_size`-byte neighbourhood. On the embeddings, not on
  embeddings plus positions: a convolution over the sum mixed the
  neighbours' positions into each byte's, and the masked LM, which needs
  those positions to route each byte to its output query, stayed on the
  unigram plateau with it. Padded
  bytes are zeroed before the convolution; `W2` starts at zero, so the
  layer starts as the identity and a classifier fine-tuned from a masked
  LM without it (`language.transfer_encoder` leaves it fresh) starts as
  that encoder. It counts as encoder-side for `classifier.freeze_encoder`
  and `encoder_lr_scale`. 0 keeps the released graph.
  """

  kernel_size: int = _field(0, 'bytes each position sees, centred (0: off, the released graph)', min=0)
  channels: int = _field(0, 'hidden width of the convolution (0: 4 x d_model)', min=0)


@dataclasses.dataclass(frozen=True)
class MaskedLMLossConfig:
  """`config.train.mlm_loss` of the `mlm` task (ours; the default is the plain masked LM).

  `copy_loss_weight` > 0 adds that weight times the mean cross-entropy of
  predicting every real byte that was *not* selected for masking (the model
  sees it, so this is a copy task). Copying needs the same position-to-latent
  -to-output routing as the masked LM and gives it a signal at ~85% of the
  positions instead of ~15%. Evaluation metrics stay on the masked bytes only.
  """

  copy_loss_weight: float = _field(0.0, 'weight of the copy loss on the unselected bytes (0: off)', min=0)


def parse_section(cls: type, given: Any, path: str) -> Any:
  """One schema section (e.g. `AlignedInitConfig`) from a mapping, over its
  defaults; raises ModelConfigError naming the field, like parse_model_config."""
  return _parse(cls, given, path, cls())


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """`model.decoder`: the classification head."""

  num_classes: int = _field(0, 'K, output classes (required)', min=1)
  name: str = _field(
    'average_project',
    'average the latents then project, or a query cross-attends into them',
    choices=('average_project', 'classification'),
  )
  num_heads: int = _field(1, 'classification: query cross-attend heads', min=1)
  use_query_residual: bool = _field(True, 'classification: residual around the query cross-attend')
  query_channels: int = _field(-1, 'classification: query width (-1: latent_channels)', unset=True)


def _default(cls, **kw):
  return lambda: cls(**kw)


@dataclasses.dataclass(frozen=True)
class PerceiverConfig:
  """`config.model` of the Perceiver (paper ImageNet defaults)."""

  name: str = _field('perceiver', 'the model kind (registry key)')
  compute_dtype: str = _field(
    'auto',
    'params stay float32; bfloat16 computes in bf16; auto: bfloat16 on GPU/TPU, float32 on CPU',
    choices=PERCEIVER_COMPUTE_DTYPES,
  )
  cpu_matmul: str = _field(
    'xla',
    'CPU backend only: onednn_bf16 runs the linear layers and attention einsums as oneDNN matmuls of bf16 operands'
    ' with float32 results (needs the cpu-bf16 extra)',
    choices=CPU_MATMULS,
  )
  input: InputConfig = _field(factory=InputConfig, doc='see model.input')
  encoder: EncoderConfig = _field(factory=EncoderConfig, doc='see model.encoder')
  decoder: DecoderConfig = _field(factory=DecoderConfig, doc='see model.decoder')


@dataclasses.dataclass(frozen=True)
class PerceiverIOConfig(PerceiverConfig):
  """`config.model` of a Perceiver IO classifier (config A defaults)."""

  name: str = _field('perceiver_io', 'the model kind (registry key)')
  encoder: EncoderConfig = _field(
    factory=_default(EncoderConfig, num_cross_attends=1, cross_attend_placement='start'), doc='see model.encoder'
  )
  decoder: DecoderConfig = _field(factory=_default(DecoderConfig, name='classification'), doc='see model.decoder')


@dataclasses.dataclass(frozen=True)
class BaselineInputConfig:
  """`model.input` of a baseline: the Perceiver's position features on a grid."""

  modality: str = _field('image', 'input key', choices=('image', 'points'))
  input_channels: int = _field(-1, 'channels C of a channels-last image (-1: not checked)', unset=True)
  position_encoding: str = _field('fourier', 'position features', choices=_POSITIONS)
  num_bands: int = _field(64, 'Fourier frequency bands K', min=1)
  max_resolution: Tuple[int, ...] = _field((), 'Fourier mu per index dim (() = the grid)')
  concat_pos: bool = _field(True, 'Fourier: append the raw positions')
  sine_only: bool = _field(False, 'Fourier: sines only')
  trainable_pos_channels: int = _field(128, 'trainable position width', min=1)
  trainable_pos_init_scale: float = _field(0.02, 'trainable position init std', min=0)
  permute_seed: int = _field(-1, ">= 0: the Perceiver's fixed input permutation", min=-1)
  resize: Tuple[int, ...] = _field((), '(H, W): resize images first (() = no resize)')
  grid_size: int = _field(0, 'points: side G of the G x G grid (0: floor(sqrt(N)))', min=0)

  def validate(self, path: str) -> None:
    if self.resize and (len(self.resize) != 2 or min(self.resize) < 1):
      raise ModelConfigError(f'{path}.resize must be () or (H, W) with H, W >= 1')
    if self.modality == 'points' and self.position_encoding != 'fourier':
      raise ModelConfigError(f"{path}.position_encoding must be 'fourier' for points (the xyz are the positions)")


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
  """`model.resnet`: ResNet-50 v1 (He et al. 2016) unless overridden."""

  blocks_per_group: Tuple[int, ...] = _field((3, 4, 6, 3), 'blocks per stage')
  channels_per_group: Tuple[int, ...] = _field((256, 512, 1024, 2048), 'channels per stage')
  bottleneck: bool = _field(True, 'bottleneck blocks')
  resnet_v2: bool = _field(False, 'pre-activation (v2) blocks')
  strides: Tuple[int, ...] = _field((1, 2, 2, 2), 'stride per stage')
  initial_conv_channels: int = _field(64, 'stem channels', min=1)
  initial_conv_kernel: int = _field(7, "stem kernel (Table 2's input RF of 49 px)", min=1)
  initial_conv_stride: int = _field(2, 'stem stride', min=1)

  def validate(self, path: str) -> None:
    if not len(self.blocks_per_group) == len(self.channels_per_group) == len(self.strides) == 4:
      raise ModelConfigError(
        f'{path}.blocks_per_group, channels_per_group and strides need 4 entries each (hk.nets.ResNet)'
      )


@dataclasses.dataclass(frozen=True)
class ViTConfig:
  """`model.vit`: ViT-B/16 (Dosovitskiy et al. 2021) unless overridden."""

  patch_size: int = _field(16, 'patch side (1: single pixels, the plain Transformer)', min=1)
  hidden_size: int = _field(768, 'token width', min=1)
  num_layers: int = _field(12, 'Transformer layers', min=1)
  num_heads: int = _field(12, 'attention heads', min=1)
  widening_factor: int = _field(4, 'MLP widening', min=1)
  dropout_prob: float = _field(0.0, 'dropout (training)', min=0, below=1)
  pool: str = _field('cls', 'class token or mean over tokens', choices=('cls', 'mean'))

  def validate(self, path: str) -> None:
    if self.hidden_size % self.num_heads:
      raise ModelConfigError(f'{path}.hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}')


@dataclasses.dataclass(frozen=True)
class BaselineDecoderConfig:
  """`model.decoder` of a baseline."""

  num_classes: int = _field(0, 'K, output classes (required)', min=1)


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
  """`config.model` of a baseline (`resnet`, `vit`, `transformer`)."""

  name: str = _field('vit', 'the model kind (registry key)')
  compute_dtype: str = _field('float32', 'bfloat16: vit/transformer only', choices=COMPUTE_DTYPES)
  input: BaselineInputConfig = _field(factory=BaselineInputConfig, doc='see model.input')
  resnet: ResNetConfig = _field(factory=ResNetConfig, doc='see model.resnet')
  vit: ViTConfig = _field(factory=ViTConfig, doc='see model.vit')
  decoder: BaselineDecoderConfig = _field(factory=BaselineDecoderConfig, doc='see model.decoder')

  def validate(self, path: str) -> None:
    if self.name == 'transformer' and self.vit.patch_size != 1:
      raise ModelConfigError(f'{path}.vit.patch_size must be 1: model.name=transformer attends over single pixels')
    if self.name == 'resnet' and self.compute_dtype != 'float32':
      # BatchNorm statistics would be kept (and returned as state) in bf16.
      raise ModelConfigError(f'{path}.compute_dtype=bfloat16 is supported for vit/transformer only')


# ---------------------------------------------------------------------------
# Registry: model.name -> (config dataclass, builder).
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelKind:
  config_cls: type
  builder: Union[str, Callable[[Any], Any]]  # 'module:function' is imported when first used.


_REGISTRY: Dict[str, ModelKind] = {}


def register_model(name: str, config_cls: type, builder: Union[str, Callable[[Any], Any]]) -> None:
  """Adds a `model.name`: its schema dataclass (with a `name` field and a
  nested `decoder`, optional `validate(path)`) and a builder taking the
  parsed config and returning `hk.TransformedWithState`."""
  names = {f.name for f in dataclasses.fields(config_cls)} if dataclasses.is_dataclass(config_cls) else ()
  if 'name' not in names:
    raise TypeError(f'{config_cls!r} must be a dataclass with a `name` field')
  _REGISTRY[name] = ModelKind(config_cls, builder)


def registered_models() -> Tuple[str, ...]:
  return tuple(sorted(_REGISTRY))


def builder_for(name: str) -> Callable[[Any], Any]:
  kind = _REGISTRY[name]
  if isinstance(kind.builder, str):
    module, _, function = kind.builder.partition(':')
    return getattr(importlib.import_module(module), function)
  return kind.builder


register_model('perceiver', PerceiverConfig, 'perceiver.models:build_perceiver')
register_model('perceiver_io', PerceiverIOConfig, 'perceiver.models:build_perceiver')
for _name in ('resnet', 'vit', 'transformer'):
  register_model(_name, BaselineConfig, 'perceiver.baselines:baseline_net')


# ---------------------------------------------------------------------------
# Parsing and validation.
# ---------------------------------------------------------------------------


def _show(value: Any) -> str:
  """A short repr for messages (values may come from untrusted files)."""
  text = repr(value)
  return text if len(text) <= 40 else text[:37] + '...'


def _kind(tp: Any) -> str:
  return {bool: 'a bool', int: 'an int', float: 'a number', str: 'a string'}.get(tp, 'a tuple of ints')


def _coerce(tp: Any, value: Any, path: str, base: Any) -> Any:
  """`value` as type `tp` (a dataclass section is parsed over `base`)."""
  origin = typing.get_origin(tp)
  if origin is Union:  # Optional[X]
    (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
    if value is None:
      return None
    return _coerce(inner, value, path, base)
  if dataclasses.is_dataclass(tp):
    return _parse(tp, value, path, base if base is not None else tp())
  if tp is bool:
    if type(value).__name__ in ('bool', 'bool_'):
      return bool(value)
  elif tp is int:
    if isinstance(value, numbers.Integral) and not type(value).__name__.startswith('bool'):
      return int(value)
  elif tp is float:
    if isinstance(value, numbers.Real) and not type(value).__name__.startswith('bool'):
      return float(value)
  elif tp is str:
    if isinstance(value, str):
      return value
  elif origin is tuple:
    if isinstance(value, (list, tuple)) and all(
      isinstance(v, numbers.Integral) and not type(v).__name__.startswith('bool') for v in value
    ):
      return tuple(int(v) for v in value)
  else:  # pragma: no cover - a schema field of an unsupported type.
    raise TypeError(f'{path}: unsupported schema type {tp!r}')
  raise ModelConfigError(f'{path} must be {_kind(tp if origin is not tuple else tuple)}, got {type(value).__name__}')


def _check_field(f: dataclasses.Field, value: Any, path: str) -> None:
  meta = f.metadata
  if meta.get('choices') and value not in meta['choices']:
    raise ModelConfigError(f'{path} must be one of {list(meta["choices"])}, got {_show(value)}')
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    if meta.get('unset') and value == 0:
      raise ModelConfigError(f'{path} must be -1 (unset) or >= 1, got 0')
    if meta.get('min') is not None and value < meta['min']:
      raise ModelConfigError(f'{path} must be >= {meta["min"]:g}, got {_show(value)}')
    if meta.get('below') is not None and not value < meta['below']:
      raise ModelConfigError(f'{path} must be < {meta["below"]:g}, got {_show(value)}')
    if isinstance(value, float) and value != value:
      raise ModelConfigError(f'{path} must not be NaN')


def _parse(cls: type, given: Any, path: str, base: Any) -> Any:
  given = _section(given, path)
  names = [f.name for f in dataclasses.fields(cls)]
  unknown = sorted(set(given) - set(names))
  if unknown:
    shown = [str(k)[:40] for k in unknown]
    raise ModelConfigError(f'{path}: unknown key(s) {shown}; allowed: {names}')
  hints = typing.get_type_hints(cls)
  values = {}
  for f in dataclasses.fields(cls):
    sub = f'{path}.{f.name}'
    if f.name in given:
      sub_base = getattr(base, f.name)
      if sub_base is None and hasattr(cls, 'default_section'):
        sub_base = cls.default_section(f.name)
      values[f.name] = _coerce(hints[f.name], given[f.name], sub, sub_base)
  out = dataclasses.replace(base, **values)
  for f in dataclasses.fields(cls):
    _check_field(f, getattr(out, f.name), f'{path}.{f.name}')
  if hasattr(out, 'validate'):
    out.validate(path)
  return out


def _section(cfg: Any, path: str) -> Dict[str, Any]:
  if isinstance(cfg, (str, bytes, numbers.Number)) or not (
    cfg is None or hasattr(cfg, 'to_dict') or isinstance(cfg, Mapping) or dataclasses.is_dataclass(cfg)
  ):
    raise ModelConfigError(f'{path} must be a section (a mapping), got {type(cfg).__name__}')
  return as_dict(cfg)


def parse_model_config(model_config: Any, *, path: str = 'model') -> Any:
  """`config.model` (ConfigDict, dict or a schema dataclass) -> the typed,
  validated schema dataclass of its `model.name`; missing fields take the
  schema defaults. Raises ModelConfigError naming the offending field."""
  if dataclasses.is_dataclass(model_config) and not isinstance(model_config, type):
    model_config = to_dict(model_config)
  cfg = _section(model_config, path)
  name = cfg.get('name', 'perceiver')
  if not isinstance(name, str) or name not in _REGISTRY:
    raise ModelConfigError(f'{path}.name must be one of {list(registered_models())}, got {_show(name)}')
  cls = _REGISTRY[name].config_cls
  return _parse(cls, dict(cfg, name=name), path, cls(name=name))


def to_dict(cfg: Any) -> Dict[str, Any]:
  """A schema dataclass as a plain JSON-able dict (tuples as lists, nested
  sections as dicts, absent optional sections left out)."""
  out = {}
  for f in dataclasses.fields(cfg):
    value = getattr(cfg, f.name)
    if value is None:
      continue
    if dataclasses.is_dataclass(value):
      value = to_dict(value)
    elif isinstance(value, tuple):
      value = list(value)
    out[f.name] = value
  return out


def defaults(cls: type, **kwargs: Any) -> Dict[str, Any]:
  """Default field values of a section (tuples kept), for configs/common.py."""
  inst = cls(**kwargs)
  return {
    f.name: getattr(inst, f.name)
    for f in dataclasses.fields(cls)
    if getattr(inst, f.name) is not None and not dataclasses.is_dataclass(getattr(inst, f.name))
  }


# ---------------------------------------------------------------------------
# The docs table (docs/architecture.md, between the schema markers).
# ---------------------------------------------------------------------------

DOC_BEGIN = '<!-- schema table: generated by `python -m perceiver.config docs/architecture.md` -->'
DOC_END = '<!-- end of schema table -->'


def _type_name(tp: Any) -> str:
  origin = typing.get_origin(tp)
  if origin is Union:
    return 'section or absent'
  if dataclasses.is_dataclass(tp):
    return 'section'
  if origin is tuple:
    return 'tuple[int]'
  return tp.__name__


def _allowed(f: dataclasses.Field) -> str:
  meta = f.metadata
  if meta.get('choices'):
    return ' \\| '.join(f'`{c}`' for c in meta['choices'])
  parts = []
  if meta.get('unset'):
    parts.append('-1 or >= 1')
  elif meta.get('min') is not None:
    parts.append(f'>= {meta["min"]:g}')
  if meta.get('below') is not None:
    parts.append(f'< {meta["below"]:g}')
  return ', '.join(parts)


def _table(cls: type, path: str, base: Any, seen: list) -> list:
  hints = typing.get_type_hints(cls)
  lines = [
    f'`{path}` ({cls.__name__}: {cls.__doc__.splitlines()[0]})',
    '',
    '| field | type | default | allowed | meaning |',
    '|---|---|---|---|---|',
  ]
  nested = []
  for f in dataclasses.fields(cls):
    value = getattr(base, f.name)
    if dataclasses.is_dataclass(hints[f.name]):
      nested.append((hints[f.name], f'{path}.{f.name}', value))
      default = '(section)'
    else:
      default = f'`{value!r}`'
    lines.append(
      f'| `{f.name}` | {_type_name(hints[f.name])} | {default} | {_allowed(f)} | {f.metadata.get("doc", "")} |'
    )
  lines.append('')
  for sub_cls, sub_path, sub_base in nested:
    key = (sub_cls, repr(sub_base))
    if key in seen:
      continue
    seen.append(key)
    lines += _table(sub_cls, sub_path, sub_base, seen)
  return lines


def schema_markdown() -> str:
  """The schema tables of every registered model kind, as Markdown."""
  lines, seen, done = [], [], []
  for name in registered_models():
    cls = _REGISTRY[name].config_cls
    if cls in done:
      continue
    done.append(cls)
    names = [n for n in registered_models() if _REGISTRY[n].config_cls is cls]
    lines += [f'#### `model.name`: {", ".join(f"`{n}`" for n in names)}', '']
    lines += _table(cls, 'model', cls(name=name), seen)
  return '\n'.join(lines).rstrip() + '\n'


def update_doc(path: str) -> bool:
  """Rewrites the table between the markers of `path`; True if it changed."""
  with open(path) as f:
    text = f.read()
  start, end = text.index(DOC_BEGIN) + len(DOC_BEGIN), text.index(DOC_END)
  new = text[:start] + '\n\n' + schema_markdown() + '\n' + text[end:]
  if new != text:
    with open(path, 'w') as f:
      f.write(new)
  return new != text


if __name__ == '__main__':
  import sys  # pylint: disable=g-import-not-at-top

  if len(sys.argv) != 2:
    sys.exit('usage: python -m perceiver.config docs/architecture.md')
  print('updated' if update_doc(sys.argv[1]) else 'up to date', sys.argv[1])
