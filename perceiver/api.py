"""The notebook-facing API: `Model`, named constructors and `load_pretrained`.

`Model` wraps a Haiku `TransformedWithState` so that it works under plain
`jax.jit(model.apply)`: `is_training` is a keyword with a Python default
(eval); passed a traced value (jit makes keyword arguments traced), the
training and eval forward passes are both compiled and `lax.cond` picks
one. Inputs are channels-last; an obviously channels-first image
([B, 3, H, W] for a 3-channel model) fails with an error that says so.

  model = perceiver.image_classifier(num_classes=10, input_channels=3, ...)
  params, state = model.init(rng, images)           # images [B, H, W, C]
  logits = model(params, state, images)             # eval, [B, K]
  logits, state = jax.jit(model.apply)(params, state, rng, images, is_training=True)

Constructors take the paper's hyperparameters by name; every one builds a
`config.model` dict through the typed schema (perceiver/config.py), so
`model.config` is what `--config.model` would be for the experiment runner.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np

from perceiver import config as config_lib


class Model:
  """A built model: `init`, `apply` (jit-friendly), `apply_train`,
  `apply_eval` and `__call__` (eval logits).

  Attributes:
    net: the underlying `hk.TransformedWithState` (`is_training` static).
    config: the parsed schema dataclass (schema models) or the reference
      config dict (reference models, e.g. `load_pretrained` of a released
      DeepMind checkpoint).
    input_names: the positional inputs `apply` takes after `rng`.
  """

  def __init__(
    self,
    net,
    config: Any,
    input_names: Sequence[str],
    *,
    input_key: Optional[str] = None,
    image_channels: Optional[int] = None,
    image_arg: Optional[int] = None,
  ):
    self.net = net
    self.config = config
    self.input_names = tuple(input_names)
    self._input_key = input_key  # schema models: a bare array is inputs[input_key].
    self._image_channels = image_channels
    self._image_arg = image_arg

  def _inputs(self, inputs: Tuple[Any, ...]) -> Tuple[Any, ...]:
    if len(inputs) != len(self.input_names):
      raise TypeError(f'the model takes {len(self.input_names)} input(s) {list(self.input_names)}, got {len(inputs)}')
    if self._input_key is not None and not isinstance(inputs[0], Mapping):
      inputs = ({self._input_key: inputs[0]},)
    if self._image_arg is not None:
      from perceiver import io_processors  # pylint: disable=g-import-not-at-top

      io_processors.check_channels_last(
        inputs[self._image_arg], self._image_channels or 0, what=f'input {self.input_names[self._image_arg]!r}'
      )
    return inputs

  def init(self, rng: jax.Array, *inputs: Any, is_training: bool = True):
    """(params, state) for `inputs` (a batch; one example is enough)."""
    return self.net.init(rng, *self._inputs(inputs), is_training=bool(is_training))

  def apply(self, params, state, rng: Optional[jax.Array], *inputs: Any, is_training: Any = False):
    """(outputs, new state). Safe under `jax.jit(model.apply)`: a traced
    `is_training` selects between the two compiled branches."""
    inputs = self._inputs(inputs)
    if isinstance(is_training, (bool, np.bool_)):
      return self.net.apply(params, state, rng, *inputs, is_training=bool(is_training))
    train = lambda ops: self.net.apply(*ops, is_training=True)
    evaluate = lambda ops: self.net.apply(*ops, is_training=False)
    return jax.lax.cond(is_training, train, evaluate, (params, state, rng, *inputs))

  def apply_train(self, params, state, rng: jax.Array, *inputs: Any):
    return self.apply(params, state, rng, *inputs, is_training=True)

  def apply_eval(self, params, state, *inputs: Any):
    return self.apply(params, state, None, *inputs, is_training=False)

  def __call__(self, params, state, *inputs: Any):
    """Eval-mode outputs only (logits for classifiers)."""
    return self.apply_eval(params, state, *inputs)[0]

  def __repr__(self) -> str:
    name = getattr(self.config, 'name', None) or self.config.get('model')
    return f'perceiver.Model({name}, inputs={list(self.input_names)})'


def from_config(model_config: Any) -> Model:
  """A `Model` from a `config.model` (dict, ConfigDict or schema dataclass)."""
  from perceiver import models  # pylint: disable=g-import-not-at-top

  cfg = config_lib.parse_model_config(model_config)
  key = cfg.input.modality
  return Model(models.build_model(cfg), cfg, (key,), input_key=None if key == 'audio_video' else key)


def from_reference_config(reference_config: Mapping[str, Any]) -> Model:
  """A `Model` from a reference-style config (golden files, released
  checkpoints, converted Hugging Face weights)."""
  from perceiver import models  # pylint: disable=g-import-not-at-top

  ref = models.build_from_reference_config(reference_config)
  image = reference_config.get('model') == 'image_classifier'
  channels = int((reference_config.get('image_shape') or (0, 0, 3))[-1]) if image else None
  return Model(
    ref.net, dict(reference_config), ref.input_names, image_channels=channels, image_arg=0 if image else None
  )


# ---------------------------------------------------------------------------
# Named constructors (paper hyperparameters by name).
# ---------------------------------------------------------------------------


def _heads(heads: int, head_channels: int) -> int:
  return heads * head_channels if head_channels > 0 else -1


def _encoder(
  *,
  num_latents,
  latent_channels,
  num_blocks,
  num_self_attends_per_block,
  num_cross_attends,
  cross_attend_heads,
  self_attend_heads,
  cross_attend_head_channels,
  self_attend_head_channels,
  widening_factor,
  dropout_prob,
  attention_dropout_prob,
  share_weights,
  placement,
) -> dict:
  return dict(
    num_latents=num_latents,
    latent_channels=latent_channels,
    num_blocks=num_blocks,
    num_self_attends_per_block=num_self_attends_per_block,
    num_cross_attends=num_cross_attends,
    cross_attend_placement=placement,
    share_cross_attends=share_weights,
    share_latent_transformers=share_weights,
    num_cross_attend_heads=cross_attend_heads,
    num_self_attend_heads=self_attend_heads,
    cross_attend_qk_channels=_heads(cross_attend_heads, cross_attend_head_channels),
    cross_attend_v_channels=_heads(cross_attend_heads, cross_attend_head_channels),
    self_attend_qk_channels=_heads(self_attend_heads, self_attend_head_channels),
    self_attend_v_channels=_heads(self_attend_heads, self_attend_head_channels),
    cross_attend_widening_factor=widening_factor,
    self_attend_widening_factor=widening_factor,
    dropout_prob=dropout_prob,
    attention_dropout_prob=attention_dropout_prob,
  )


def image_classifier(
  *,
  num_classes: int,
  input_channels: int = 3,
  num_bands: int = 64,
  max_resolution: Sequence[int] = (),
  position_encoding: str = 'fourier',
  num_latents: int = 512,
  latent_channels: int = 1024,
  num_blocks: int = 8,
  num_self_attends_per_block: int = 6,
  num_cross_attends: int = 8,
  cross_attend_heads: int = 1,
  self_attend_heads: int = 8,
  cross_attend_head_channels: int = -1,
  self_attend_head_channels: int = -1,
  widening_factor: int = 1,
  dropout_prob: float = 0.0,
  attention_dropout_prob: float = 0.0,
  share_weights: bool = True,
  permute_seed: int = -1,
  compute_dtype: str = 'auto',
) -> Model:
  """The Perceiver image classifier (defaults: the paper's ImageNet model).

  `num_blocks` latent Transformers of `num_self_attends_per_block`
  self-attends, `num_cross_attends` cross-attends interleaved with them;
  `*_head_channels` (-1: the reference's widths) are per head, so
  lucidrains' `cross_dim_head` / `latent_dim_head` map onto them.
  `max_resolution`: Fourier mu per image axis (() = the image size);
  lucidrains' `max_freq=f` is `max_resolution=(f, f)`. `share_weights`:
  cross-attends 2..n and the latent Transformers share weights.
  Input: images [B, H, W, input_channels].
  """
  return from_config(
    dict(
      name='perceiver',
      compute_dtype=compute_dtype,
      input=dict(
        modality='image',
        input_channels=input_channels,
        num_bands=num_bands,
        max_resolution=tuple(max_resolution),
        position_encoding=position_encoding,
        permute_seed=permute_seed,
      ),
      encoder=_encoder(
        num_latents=num_latents,
        latent_channels=latent_channels,
        num_blocks=num_blocks,
        num_self_attends_per_block=num_self_attends_per_block,
        num_cross_attends=num_cross_attends,
        cross_attend_heads=cross_attend_heads,
        self_attend_heads=self_attend_heads,
        cross_attend_head_channels=cross_attend_head_channels,
        self_attend_head_channels=self_attend_head_channels,
        widening_factor=widening_factor,
        dropout_prob=dropout_prob,
        attention_dropout_prob=attention_dropout_prob,
        share_weights=share_weights,
        placement='interleaved',
      ),
      decoder=dict(name='average_project', num_classes=num_classes),
    )
  )


def point_cloud_classifier(
  *,
  num_classes: int = 40,
  num_bands: int = 64,
  max_resolution: Sequence[int] = (2240, 2240, 2240),
  num_latents: int = 512,
  latent_channels: int = 1024,
  num_blocks: int = 2,
  num_self_attends_per_block: int = 6,
  num_cross_attends: int = 2,
  cross_attend_heads: int = 1,
  self_attend_heads: int = 8,
  dropout_prob: float = 0.0,
  share_weights: bool = True,
) -> Model:
  """The Perceiver point-cloud classifier (defaults: the paper's ModelNet40
  model, configs/modelnet40.py:paper). Input: points [B, N, 3]."""
  return from_config(
    dict(
      name='perceiver',
      input=dict(modality='points', num_bands=num_bands, max_resolution=tuple(max_resolution)),
      encoder=_encoder(
        num_latents=num_latents,
        latent_channels=latent_channels,
        num_blocks=num_blocks,
        num_self_attends_per_block=num_self_attends_per_block,
        num_cross_attends=num_cross_attends,
        cross_attend_heads=cross_attend_heads,
        self_attend_heads=self_attend_heads,
        cross_attend_head_channels=-1,
        self_attend_head_channels=-1,
        widening_factor=1,
        dropout_prob=dropout_prob,
        attention_dropout_prob=0.0,
        share_weights=share_weights,
        placement='interleaved',
      ),
      decoder=dict(name='average_project', num_classes=num_classes),
    )
  )


def io_classifier(
  *,
  num_classes: int = 1000,
  input_channels: int = 3,
  num_bands: int = 64,
  max_resolution: Sequence[int] = (),
  num_latents: int = 512,
  latent_channels: int = 1024,
  num_blocks: int = 8,
  num_self_attends_per_block: int = 6,
  cross_attend_heads: int = 1,
  self_attend_heads: int = 8,
  decoder_heads: int = 1,
  dropout_prob: float = 0.0,
  compute_dtype: str = 'auto',
) -> Model:
  """The Perceiver IO image classifier (defaults: config A of the Perceiver
  IO paper, pixels + 2-D Fourier features; configs/imagenet.py:io_fourier).
  Input: images [B, H, W, input_channels]."""
  return from_config(
    dict(
      name='perceiver_io',
      compute_dtype=compute_dtype,
      input=dict(
        modality='image', input_channels=input_channels, num_bands=num_bands, max_resolution=tuple(max_resolution)
      ),
      encoder=_encoder(
        num_latents=num_latents,
        latent_channels=latent_channels,
        num_blocks=num_blocks,
        num_self_attends_per_block=num_self_attends_per_block,
        num_cross_attends=1,
        cross_attend_heads=cross_attend_heads,
        self_attend_heads=self_attend_heads,
        cross_attend_head_channels=-1,
        self_attend_head_channels=-1,
        widening_factor=1,
        dropout_prob=dropout_prob,
        attention_dropout_prob=0.0,
        share_weights=True,
        placement='start',
      ),
      decoder=dict(name='classification', num_classes=num_classes, num_heads=decoder_heads),
    )
  )


def _published(name: str, **overrides: Any) -> Model:
  from perceiver.checkpoints import published  # pylint: disable=g-import-not-at-top

  cfg = published.published_config(name)
  for key, value in overrides.items():
    section, _, field = key.partition('__')
    if field:
      cfg[section][field] = value
    else:
      cfg[key] = value
  return from_reference_config(cfg)


def masked_lm(
  *, max_seq_len: int = 2048, num_latents: int = 256, latent_channels: int = 1280, num_self_attends: int = 26
) -> Model:
  """Perceiver IO masked language model on UTF-8 bytes (the released
  `language_perceiver_io_bytes` architecture). Inputs: token ids [B, T]
  int32 and an input mask [B, T]; output logits [B, T, 262]."""
  return _published(
    'language_masked_lm',
    max_seq_len=max_seq_len,
    encoder__z_index_dim=num_latents,
    encoder__num_z_channels=latent_channels,
    encoder__v_channels=latent_channels,
    encoder__num_self_attends_per_block=num_self_attends,
  )


def optical_flow(
  *,
  train_size: Sequence[int] = (368, 496),
  num_latents: int = 2048,
  latent_channels: int = 512,
  num_self_attends: int = 24,
) -> Model:
  """Perceiver IO optical flow (the released `optical_flow_checkpoint`
  architecture). Input: a frame pair [B, 2, H, W, 3] at `train_size`;
  output flow [B, H, W, 2]."""
  return _published(
    'optical_flow',
    train_size=list(train_size),
    encoder__z_index_dim=num_latents,
    encoder__num_z_channels=latent_channels,
    encoder__num_self_attends_per_block=num_self_attends,
  )


# ---------------------------------------------------------------------------
# load_pretrained
# ---------------------------------------------------------------------------

RUNNER_CONFIG_KEY = 'config.model'  # perceiver/train/trainer.py export_params.


def is_runner_export(config: Optional[Mapping[str, Any]]) -> bool:
  """True for the `__config__` of a training run's params.npz."""
  return isinstance(config, Mapping) and RUNNER_CONFIG_KEY in config


def _example_inputs(model: Model, state: Mapping[str, Any]) -> Optional[Tuple[Any, ...]]:
  """One-example inputs the checkpoint was made for (None if unknown)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  if isinstance(model.config, Mapping):
    cfg = model.config
    if cfg.get('model') == 'image_classifier' and cfg.get('image_shape'):
      return (jax.ShapeDtypeStruct((1, *cfg['image_shape']), jnp.float32),)
    if cfg.get('model') == 'masked_lm':
      t = int(cfg['max_seq_len'])
      return (jax.ShapeDtypeStruct((1, t), jnp.int32), jax.ShapeDtypeStruct((1, t), jnp.int32))
    return None
  spec = state.get('input_spec', {})  # Zero-size [0, *example shape] arrays (models.py).
  if not spec:
    return None
  return ({k: jax.ShapeDtypeStruct((1, *np.shape(v)[1:]), np.asarray(v).dtype) for k, v in spec.items()},)


def load_pretrained(
  path: str, *, config: Optional[Mapping[str, Any]] = None, hf_config: Optional[Mapping[str, Any]] = None
) -> Tuple[Model, Any, Any]:
  """`(model, params, state)` from any checkpoint this project reads.

  DeepMind `.pystate`/`.pickle` (read without executing code; the config of
  a released file is known from its name, else pass `config`), this
  project's `.npz` (a reference `__config__`, or a training run's
  `params.npz`), Hugging Face safetensors / torch `.bin` with `config.json`
  beside it (or `hf_config`). The parameters are checked against the model
  (every missing, unexpected or mis-shaped one listed) where the file says
  what inputs the model was built for.
  """
  from perceiver import checkpoints  # pylint: disable=g-import-not-at-top
  from perceiver.checkpoints import published  # pylint: disable=g-import-not-at-top

  params, state, cfg = checkpoints.load_checkpoint(path, config=config, hf_config=hf_config)
  if cfg is None:
    preset = published.RELEASED_FILES.get(os.path.basename(os.fspath(path)))
    if preset is None:
      raise checkpoints.CheckpointFormatError(
        f'{path}: the file carries no model config and is not a released DeepMind file; '
        'pass config= (a reference-style config dict)'
      )
    cfg = published.published_config(preset)
  if is_runner_export(cfg):
    model = from_config(cfg[RUNNER_CONFIG_KEY])
  elif cfg.get('model') is not None:
    model = from_reference_config(cfg)
  else:
    raise checkpoints.CheckpointFormatError(
      f'{path}: __config__ is neither a reference config (a `model` name) nor a training '
      f'run export ({RUNNER_CONFIG_KEY!r})'
    )
  example = _example_inputs(model, state)
  if example is not None:
    want_params, want_state = jax.eval_shape(
      lambda *x: model.net.init(jax.random.PRNGKey(0), *x, is_training=True), *example
    )
    checkpoints.check_compatible(want_params, params, what='params')
    checkpoints.check_compatible(want_state, state, what='state')
  return model, params, state
