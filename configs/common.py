"""Building blocks shared by the experiment configs.

Every section lists all of its fields, so any of them can be overridden from
the command line (``--config.optimizer.schedule.base_lr=1e-3``) and a typo is
rejected: ``finalize`` locks the config. Numbers that must stay floats are
written as floats (a locked ConfigDict refuses to put 0.5 into an int field).

Model sections follow the schema in docs/architecture.md; the defaults here
are the Perceiver ImageNet model of the paper (PAPERS.md, "Perceiver
architecture"), which the per-experiment files modify.
"""

from typing import Any

import ml_collections

ConfigDict = ml_collections.ConfigDict

# ImageNet-1k train split of the Perceiver IO reference: train[10000:]
# (train[:10000] is its validation set); the full split has 1,281,167.
IMAGENET_TRAIN_EXAMPLES = 1_281_167 - 10_000


def model_input(**overrides: Any) -> ConfigDict:
  """``model.input``: raw pixels + 2-D Fourier features (K=64, mu=224)."""
  fields = dict(
      modality='image',
      prep_type='pixels',
      spatial_downsample=1,
      temporal_downsample=1,
      num_channels=-1,
      position_encoding='fourier',
      num_bands=64,
      max_resolution=(224, 224),
      concat_pos=True,
      sine_only=False,
      # Trainable-encoding fields (unused with Fourier). Width 258 matches
      # the Fourier channel count, as in the reference.
      trainable_pos_channels=258,
      trainable_pos_init_scale=0.02,
      project_pos_dim=-1,
      concat_or_add_pos='concat',
      permute_seed=-1,
  )
  return _update(fields, overrides)


def model_encoder(**overrides: Any) -> ConfigDict:
  """``model.encoder``: the paper's ImageNet Perceiver.

  8 cross-attends interleaved with 8 latent Transformers of 6 self-attends,
  cross-attends 2..8 share weights, the latent Transformers share weights,
  512 x 1024 latents, 1 cross-attend head, 8 self-attend heads, widening 1,
  no dropout, latents initialised with std 0.02.
  """
  fields = dict(
      num_latents=512,
      latent_channels=1024,
      num_blocks=8,
      num_self_attends_per_block=6,
      num_cross_attends=8,
      cross_attend_placement='interleaved',
      share_cross_attends=True,
      share_latent_transformers=True,
      num_cross_attend_heads=1,
      num_self_attend_heads=8,
      cross_attend_widening_factor=1,
      self_attend_widening_factor=1,
      # -1: reference defaults (Q/K/V width = input channels for the
      # cross-attend, as the paper says; latent width for self-attends).
      qk_channels=-1,
      v_channels=-1,
      cross_attention_shape_for_attn='kv',
      use_query_residual=True,
      dropout_prob=0.0,
      latent_init_scale=0.02,
      attention_chunk_size=0,
      remat=False,
  )
  return _update(fields, overrides)


def model(name: str, num_classes: int, *, input: ConfigDict,  # pylint: disable=redefined-builtin
          encoder: ConfigDict, compute_dtype: str = 'float32') -> ConfigDict:
  """``config.model``. ``perceiver``: average the latents then project;
  ``perceiver_io``: a decoder query cross-attends into the latents."""
  decoder = 'average_project' if name == 'perceiver' else 'classification'
  return ConfigDict(dict(
      name=name, compute_dtype=compute_dtype, input=input, encoder=encoder,
      decoder=dict(name=decoder, num_classes=num_classes)))


def tiny_encoder(**overrides: Any) -> ConfigDict:
  """A few-thousand-parameter encoder for smoke presets (same structure)."""
  fields = dict(num_latents=8, latent_channels=16, num_blocks=2,
                num_self_attends_per_block=1, num_cross_attends=2,
                num_self_attend_heads=2)
  fields.update(overrides)
  return model_encoder(**fields)


def optimizer(**overrides: Any) -> ConfigDict:
  """``config.optimizer``: the reference's LAMB + clipping + weight decay.

  Schedule fields of every schedule type are present so that switching
  ``schedule.name`` from the command line needs no new keys. Epoch values
  are converted to steps with the run's steps per epoch.
  """
  schedule = dict(
      name='step',  # 'step' | 'constant_cosine' | 'cosine' | 'constant'
      base_lr=4e-3,
      warmup_epochs=0.0,
      decay_epochs=(84.0, 102.0, 114.0),  # step: multiply by decay_rate at.
      decay_rate=0.1,
      constant_epochs=0.0,  # constant_cosine: constant for this long.
      end_value=0.0,  # cosine / constant_cosine: final learning rate.
  )
  schedule.update(overrides.pop('schedule', {}))
  fields = dict(
      name='lamb',  # 'lamb' | 'adamw' | 'adam'
      # Reference LAMB moments (the papers do not list them).
      b1=0.9,
      b2=0.999,
      eps=1e-6,
      weight_decay=0.1,
      decay_pos_embs=True,  # Reference: learned position embeddings decay.
      max_norm=10.0,  # Global-norm gradient clipping; <= 0 turns it off.
      schedule=schedule,
  )
  return _update(fields, overrides)


def base_config(*, seed: int = 0) -> ConfigDict:
  """Runner sections shared by all experiments (model/data added later)."""
  return ConfigDict(dict(
      seed=seed,
      # What is learned: a name in `perceiver.tasks` ('classification', ...).
      task='classification',
      # A checkpoint file (DeepMind .pystate/.pickle, this project's .npz,
      # Hugging Face weights) whose params and model state initialise the
      # run when the workdir has no checkpoint: --mode=eval evaluates it,
      # training fine-tunes it (fresh optimizer state). '' : random init.
      init_from='',
      train=dict(
          batch_size=1024,  # Global batch (all devices and micro-batches).
          num_epochs=1.0,
          num_steps=-1,  # > 0 overrides num_epochs.
          grad_accum_steps=1,  # Micro-batches per step (paper batch on few
                               # devices).
          loss='softmax',  # 'softmax' | 'sigmoid' (multi-label)
          label_smoothing=0.0,
          log_every=100,
      ),
      eval=dict(
          split='valid',
          batch_size=1024,
          every_steps=0,  # 0: evaluate only at the end.
          # True: eval inputs are [B, clips, ...]; scores averaged over clips.
          clip_axis=False,
      ),
      optimizer=optimizer(),
      parallel=dict(
          param_sharding='replicated',  # 'replicated' | 'fsdp'
          fsdp_min_size=2 ** 14,  # FSDP: smaller arrays stay replicated.
          multihost=False,  # True: jax.distributed.initialize().
          coordinator_address='',  # '' : auto-detect (TPU pods, SLURM).
          num_processes=-1,
          process_id=-1,
          initialization_timeout_s=300,
          # A process whose peer died fails after this long instead of
          # hanging in a collective.
          heartbeat_timeout_s=100,
      ),
      checkpoint=dict(
          every_steps=1000,
          max_to_keep=3,
          async_save=True,
          # True: at the end of training also write WORKDIR/params.npz (this
          # project's checkpoint format, loadable with init_from).
          export_npz=False,
      ),
  ))


def smoke_runner(config: ConfigDict, *, batch_size: int = 8,
                 num_steps: int = 3) -> None:
  """Shrinks the runner sections of ``config`` to a few CPU-second steps."""
  config.train.batch_size = batch_size
  config.train.num_steps = num_steps
  config.train.log_every = 1
  config.eval.batch_size = batch_size
  config.checkpoint.every_steps = 2
  config.checkpoint.max_to_keep = 2


def finalize(config: ConfigDict) -> ConfigDict:
  """Locks the config: unknown keys (typos) now raise."""
  config.lock()
  return config


def select(presets: dict[str, Any], arg: str | None, default: str
           ) -> ConfigDict:
  """Calls the preset named ``arg`` (``--config=file.py:arg``)."""
  name = arg or default
  if name not in presets:
    raise ValueError(f'unknown preset {name!r}; expected one of '
                     f'{sorted(presets)}')
  return finalize(presets[name]())


def _update(fields: dict[str, Any], overrides: dict[str, Any]) -> ConfigDict:
  unknown = sorted(set(overrides) - set(fields))
  if unknown:
    raise KeyError(f'unknown field(s) {unknown}; known: {sorted(fields)}')
  fields.update(overrides)
  return ConfigDict(fields)
