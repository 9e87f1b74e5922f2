"""ImageNet classification: Perceiver (ICML 2021) and Perceiver IO (ICLR 2022).

  python -m experiments.main --config=configs/imagenet.py:<preset> --workdir=DIR

Presets:
  paper                 Perceiver (FF), Table 1: 78.0 top-1.
  learned_pos           Perceiver with a learned 128-d position encoding and a
                        single cross-attend, Table 2: 70.9.
  permuted              `paper` on permuted ImageNet, Table 2: 78.0.
  learned_pos_permuted  `learned_pos` on permuted ImageNet, Table 2: 70.9.
  io_fourier            Perceiver IO config A, 2-D Fourier features: 79.0.
  io_learned            Perceiver IO config A, learned positions: 72.7.
  io_conv               Perceiver IO config A, conv preprocessing: 82.1.
  small_data            A CPU-sized Perceiver and recipe for a few thousand
                        small images (docs/data.md); not a paper experiment.
  smoke                 A tiny model on synthetic 16x16 images, 3 steps.
  cpu_bench             Perceiver IO config A shrunk to ~1 s per train step on
                        2 CPU cores (scripts/benchmark.py), synthetic 64x64.

Numbers are from ../shared/reference/PAPERS.md; where a paper is silent the
comment says so and the value is the Perceiver IO reference code's.
"""

from perceiver_configs import common


def _data():
  """The imagenet2012 pipeline with its defaults (all fields overridable).

  Defaults (perceiver/data/config.py) are the reference's: Inception crop to
  224, flip, RandAugment N=4 M=5, MixUp alpha 0.2 + CutMix, train on
  train[10000:], validate on train[:10000], report on `validation`.
  """
  from perceiver.data import config as data_config  # pylint: disable=g-import-not-at-top

  data = data_config.default_config('imagenet2012')
  # Positions relative to the crop (paper) are the model's own grid of the
  # resized crop, so the pipeline need not send them: its `pos` would add
  # 2/3 to the host->device traffic and does not fit the conv stem's 56x56.
  data.pos = 'none'
  return data


def _perceiver_recipe(config):
  """Perceiver (ICML 2021) ImageNet training recipe."""
  config.train.num_epochs = 120.0
  # Silent in the Perceiver paper: batch size. The Perceiver IO reference
  # (and paper) use 1024.
  config.train.batch_size = 1024
  # Silent in the Perceiver paper: label smoothing, weight decay, clipping,
  # LAMB moments. Reference values: 0.1, 0.1 (weights only), 10, (0.9,
  # 0.999, 1e-6); see common.optimizer.
  config.train.label_smoothing = 0.1
  config.optimizer = common.optimizer(
    schedule=dict(name='step', base_lr=4e-3, decay_epochs=(84.0, 102.0, 114.0), decay_rate=0.1, warmup_epochs=0.0)
  )  # Paper mentions no warm-up; reference: none.
  config.eval.batch_size = 1024  # Splits over 2^k <= 1024 devices.
  config.checkpoint.every_steps = 1000


def paper():
  config = common.base_config()
  config.model = common.model(
    # 2-D Fourier features, 64 bands, mu = 224 (PAPERS.md).
    'perceiver',
    1000,
    input=common.model_input(input_channels=3, max_resolution=(224, 224)),
    encoder=common.model_encoder(),
  )
  # Silent in the Perceiver paper: the augmentation beyond "Inception-style
  # crops, RandAugment". The pipeline defaults are the reference's (RandAugment
  # N=4 M=5, MixUp 0.2 + CutMix), used here too.
  config.data = _data()
  _perceiver_recipe(config)
  return config


def learned_pos():
  """Table 2: learned 128-d positions (init scale 1.0), one cross-attend.

  With 8 cross-attends the learned-position model was unstable (paper), so
  the single cross-attend sits at the start; the 8 latent Transformers of
  6 self-attends stay, shared.
  """
  config = paper()
  config.model.input = common.model_input(
    input_channels=3, position_encoding='trainable', trainable_pos_channels=128, trainable_pos_init_scale=1.0
  )
  config.model.encoder = common.model_encoder(num_cross_attends=1, cross_attend_placement='start')
  return config


def permuted():
  """Table 2: one fixed pixel permutation, applied after position features."""
  config = paper()
  config.model.input.permute_seed = 0
  return config


def learned_pos_permuted():
  config = learned_pos()
  config.model.input.permute_seed = 0
  return config


def _io(model_input):
  """Perceiver IO config A and its recipe (PAPERS.md, Perceiver IO)."""
  config = common.base_config()
  config.model = common.model(
    'perceiver_io',
    1000,
    input=model_input,
    encoder=common.model_encoder(num_cross_attends=1, cross_attend_placement='start'),
  )
  config.data = _data()  # RandAugment N=4 M=5, CutMix + MixUp 0.2.
  config.train.batch_size = 1024
  config.train.num_epochs = 110.0
  config.train.label_smoothing = 0.1
  # LAMB 2e-3, constant for 55 epochs then cosine to 0 at epoch 110, no
  # warm-up, weight decay 0.1, clipping 10.
  config.optimizer = common.optimizer(
    weight_decay=0.1,
    max_norm=10.0,
    schedule=dict(name='constant_cosine', base_lr=2e-3, constant_epochs=55.0, end_value=0.0, warmup_epochs=0.0),
  )
  config.eval.batch_size = 1024
  config.checkpoint.every_steps = 1000
  return config


def io_fourier():
  """Raw pixels + 2-D Fourier features (64 bands, mu=224): 79.0."""
  return _io(common.model_input(input_channels=3, max_resolution=(224, 224)))


def io_learned():
  """Learned positions, no 2-D information: 72.7.

  Silent in the paper: the input stem. Reference (released checkpoint):
  conv1x1 to 256 channels, 256-d trainable positions (init 0.02) projected
  to 256 and concatenated: 512 input channels.
  """
  return _io(
    common.model_input(
      input_channels=3,
      prep_type='conv1x1',
      num_channels=256,
      position_encoding='trainable',
      trainable_pos_channels=256,
      trainable_pos_init_scale=0.02,
      project_pos_dim=256,
    )
  )


def io_conv():
  """Conv preprocessing: 82.1.

  Silent in the paper: the stem. Reference (released checkpoint): 7x7/2 conv
  to 64 channels + BatchNorm + 3x3/2 max-pool (224 -> 56), then 2-D Fourier
  features with 64 bands at the 56x56 resolution.
  """
  return _io(
    common.model_input(
      input_channels=3, prep_type='conv', spatial_downsample=4, num_channels=64, max_resolution=(56, 56)
    )
  )


def smoke():
  """Seconds on a CPU: the `paper` structure, tiny, on synthetic images."""
  from perceiver.train import input_pipeline  # pylint: disable=g-import-not-at-top

  config = paper()
  config.model.input = common.model_input(input_channels=3, num_bands=4, max_resolution=(16, 16))
  config.model.encoder = common.tiny_encoder()
  config.model.decoder.num_classes = 10
  config.data = input_pipeline.synthetic_config({'image': (16, 16, 3)}, 10)
  common.smoke_runner(config)
  config.eval.split = 'test'
  return config


def small_data():
  """A few thousand small images on a CPU: the 5,000-digit sample set.

  Not a paper recipe (our choice, docs/data.md): 28x28 inputs grouped 2x2
  (196 inputs of 12 values + 2-D Fourier features, 8 bands), a gentle crop
  (85-100% of the area) and flips only (RandAugment, MixUp and CutMix off:
  they slow learning on small data), the small_data_recipe (AdamW 3e-3,
  3,000 steps of 32). The class list is the set's own `classes.txt` (10
  classes); hold out 10% of train for validation, report on `validation`.

    python scripts/make_sample_data.py --out /tmp/sample --what imagenet
    python -m experiments.main --config=configs/imagenet.py:small_data \\
        --config.data.manual_dir=/tmp/sample/imagenet --workdir=/tmp/run
  """
  config = common.base_config()
  config.model = common.model(
    'perceiver',
    10,
    input=common.model_input(prep_type='patches', spatial_downsample=2, num_bands=8, max_resolution=(14, 14)),
    encoder=common.small_encoder(),
  )
  config.data = _data()
  config.data.update(
    dict(
      class_list='classes.txt',
      train_split='train[10%:]',
      valid_split='train[:10%]',
      test_split='validation',
      image_size=28,
      eval_crop_padding=0,
      crop_area_range=(0.85, 1.0),
      randaugment_num_layers=0,
      mixup_alpha=0.0,
      cutmix_alpha=0.0,
    )
  )
  # 4,050 training images: ~127 steps per epoch, warm-up 150 steps.
  common.small_data_recipe(config, num_steps=3000, batch_size=32, base_lr=3e-3, warmup_epochs=1.2)
  config.eval.split = 'test'
  return config


def cpu_bench():
  """Perceiver IO config A, shrunk for `scripts/benchmark.py` on 2 CPU cores.

  Kept: pixels + 64-band Fourier features (261 input channels), one 1-head
  cross-attend, a latent Transformer of 6 self-attends (8 heads, widening 1)
  shared across blocks, the classification decoder, LAMB. Shrunk: 64x64
  inputs (M = 4096), 128 x 512 latents, 3 blocks (block 0, then the shared
  block as a 2-step loop), batch 2: ~59 GFLOP, about a second per train step.
  The latent matmuls ([256, 512] x [512, 512]) are the size that sets the
  step's MFU ceiling on 2 cores (about 0.6, see the README's Performance).
  """
  from perceiver.train import input_pipeline  # pylint: disable=g-import-not-at-top

  config = io_fourier()
  config.model.input.max_resolution = (64, 64)
  encoder = config.model.encoder
  encoder.num_latents, encoder.latent_channels, encoder.num_blocks = 128, 512, 3
  config.data = input_pipeline.synthetic_config({'image': (64, 64, 3)}, 1000, num_train=8, num_eval=2)
  common.smoke_runner(config, batch_size=2, num_steps=10)
  config.eval.split = 'test'
  return config


PRESETS = dict(
  paper=paper,
  learned_pos=learned_pos,
  permuted=permuted,
  learned_pos_permuted=learned_pos_permuted,
  io_fourier=io_fourier,
  io_learned=io_learned,
  io_conv=io_conv,
  small_data=small_data,
  smoke=smoke,
  cpu_bench=cpu_bench,
)


def get_config(arg=None):
  return common.select(PRESETS, arg, 'paper')
