"""Building blocks shared by the experiment configs.

Every section lists all of its fields, so any of them can be overridden from
the command line (``--config.optimizer.schedule.base_lr=1e-3``) and a typo is
rejected: ``finalize`` locks the config. Numbers that must stay floats are
written as floats (a locked ConfigDict refuses to put 0.5 into an int field).

Model sections are built from the typed schema (perceiver/config.py, whose
defaults are the Perceiver ImageNet model of the paper: PAPERS.md,
"Perceiver architecture"), which the per-experiment files modify; the
presets and the schema cannot disagree.
"""

from typing import Any

import ml_collections

from perceiver import config as schema

ConfigDict = ml_collections.ConfigDict

# ImageNet-1k train split of the Perceiver IO reference: train[10000:]
# (train[:10000] is its validation set); the full split has 1,281,167.
IMAGENET_TRAIN_EXAMPLES = 1_281_167 - 10_000


def model_input(**overrides: Any) -> ConfigDict:
  """``model.input``: every field of perceiver.config.InputConfig at its
  default (raw pixels + 2-D Fourier features, K=64, mu=224), overridden."""
  return _update(schema.defaults(schema.InputConfig), overrides)


def model_encoder(**overrides: Any) -> ConfigDict:
  """``model.encoder``: every field of perceiver.config.EncoderConfig at its
  default (the paper's ImageNet Perceiver: 8 cross-attends interleaved with
  8 shared latent Transformers of 6 self-attends, 512 x 1024 latents),
  overridden."""
  return _update(schema.defaults(schema.EncoderConfig), overrides)


def model(
  name: str,
  num_classes: int,
  *,
  input: ConfigDict,  # pylint: disable=redefined-builtin
  encoder: ConfigDict,
  compute_dtype: str = 'auto',
  cpu_matmul: str = 'xla',
) -> ConfigDict:
  """``config.model``. ``perceiver``: average the latents then project;
  ``perceiver_io``: a decoder query cross-attends into the latents. The
  decoder section is the schema's for that model name, all fields present."""
  decoder = schema.parse_model_config(dict(name=name, decoder=dict(num_classes=num_classes))).decoder
  return ConfigDict(
    dict(
      name=name,
      compute_dtype=compute_dtype,
      cpu_matmul=cpu_matmul,
      input=input,
      encoder=encoder,
      decoder=schema.defaults(type(decoder), **schema.to_dict(decoder)),
    )
  )


def tiny_encoder(**overrides: Any) -> ConfigDict:
  """A few-thousand-parameter encoder for smoke presets (same structure)."""
  fields = dict(
    num_latents=8,
    latent_channels=16,
    num_blocks=2,
    num_self_attends_per_block=1,
    num_cross_attends=2,
    num_self_attend_heads=2,
  )
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
  return ConfigDict(
    dict(
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
        # NaN/Inf scores always count as wrong and are logged as the
        # `nonfinite` fraction; True also stops the run (FloatingPointError).
        stop_on_nonfinite=False,
      ),
      optimizer=optimizer(),
      parallel=dict(
        param_sharding='replicated',  # 'replicated' | 'fsdp'
        fsdp_min_size=2**14,  # FSDP: smaller arrays stay replicated.
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
    )
  )


def smoke_runner(config: ConfigDict, *, batch_size: int = 8, num_steps: int = 3) -> None:
  """Shrinks the runner sections of ``config`` to a few CPU-second steps."""
  config.train.batch_size = batch_size
  config.train.num_steps = num_steps
  config.train.log_every = 1
  config.eval.batch_size = batch_size
  config.checkpoint.every_steps = 2
  config.checkpoint.max_to_keep = 2


def small_data_recipe(
  config: ConfigDict, *, num_steps: int, batch_size: int, base_lr: float, warmup_epochs: float
) -> None:
  """The runner sections of the ``small_data`` presets (our choice).

  For a few thousand examples on a CPU: small batches (more updates per
  second), AdamW with a linear warm-up and cosine decay to 0, weight decay
  1e-2, clipping 10, no label smoothing; evaluated once, at the end.
  """
  config.train.batch_size = batch_size
  config.train.num_steps = num_steps
  config.train.label_smoothing = 0.0
  config.train.log_every = 100
  config.optimizer = optimizer(
    name='adamw',
    weight_decay=1e-2,
    max_norm=10.0,
    schedule=dict(name='cosine', base_lr=base_lr, warmup_epochs=warmup_epochs),
  )
  config.eval.batch_size = batch_size
  config.eval.every_steps = 0
  config.checkpoint.every_steps = 1000


def small_encoder() -> ConfigDict:
  """``model.encoder`` of the ``small_data`` presets: the paper's structure
  (cross-attends interleaved with shared latent Transformers) at CPU size,
  2 x (cross-attend + 2 self-attends) on 32 x 64 latents, as
  configs/mnist.py:quickstart."""
  return model_encoder(
    num_latents=32,
    latent_channels=64,
    num_blocks=2,
    num_self_attends_per_block=2,
    num_cross_attends=2,
    num_self_attend_heads=4,
  )


def finalize(config: ConfigDict) -> ConfigDict:
  """Locks the config: unknown keys (typos) now raise."""
  config.lock()
  return config


def select(presets: dict[str, Any], arg: str | None, default: str) -> ConfigDict:
  """Calls the preset named ``arg`` (``--config=file.py:arg``)."""
  name = arg or default
  if name not in presets:
    raise ValueError(f'unknown preset {name!r}; expected one of {sorted(presets)}')
  return finalize(presets[name]())


def _update(fields: dict[str, Any], overrides: dict[str, Any]) -> ConfigDict:
  unknown = sorted(set(overrides) - set(fields))
  if unknown:
    raise KeyError(f'unknown field(s) {unknown}; known: {sorted(fields)}')
  fields.update(overrides)
  return ConfigDict(fields)
