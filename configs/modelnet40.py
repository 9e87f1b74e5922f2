"""ModelNet40 point-cloud classification: Perceiver (ICML 2021), Table 4.

  python -m experiments.main --config=configs/modelnet40.py:<preset> --workdir=DIR

Presets:
  paper  Perceiver, 85.7 top-1 (PAPERS.md, "ModelNet40").
  small_data  A CPU-sized Perceiver and recipe for a few thousand point
              clouds (docs/data.md); not a paper experiment.
  smoke  A tiny model on synthetic point clouds, 3 steps.
"""

from perceiver_configs import common


def paper():
  config = common.base_config()
  config.model = common.model(
    'perceiver',
    40,
    input=common.model_input(
      modality='points',
      # 3-D Fourier features, 64 bands, maximum frequency 1120 = 10x
      # ImageNet's (112 = 224 / 2). Frequencies run from 1 to
      # max_resolution / 2, so max_resolution = 2 * 1120.
      num_bands=64,
      max_resolution=(2240, 2240, 2240),
    ),
    # 2 cross-attends, 6 self-attends per block, otherwise the ImageNet
    # settings: 512 x 1024 latents, cross-attend 2 and the latent
    # Transformers shared (with 2 cross-attends the sharing only concerns
    # the latent Transformers), interleaved: one cross-attend per block.
    encoder=common.model_encoder(num_cross_attends=2, num_blocks=2),
  )
  from perceiver.data import config as data_config  # pylint: disable=g-import-not-at-top

  # Pipeline defaults: zero-centre, train-time per-point scaling in
  # [0.99, 1.01], then zero-mean and unit-cube normalisation.
  # Silent in the paper: points per shape ("~2,000"); the pipeline's 2,048
  # is what the PointNet HDF5 files store.
  config.data = data_config.default_config('modelnet40')
  # LAMB, constant learning rate 1e-3, batch 512, ~50,000 steps.
  config.train.batch_size = 512
  config.train.num_steps = 50_000
  # Silent in the paper: weight decay, clipping, label smoothing, LAMB
  # moments. Reference values (0.1, 10, 0.1, (0.9, 0.999, 1e-6)).
  config.train.label_smoothing = 0.1
  config.optimizer = common.optimizer(schedule=dict(name='constant', base_lr=1e-3))
  config.eval.split = 'test'
  config.eval.batch_size = 512  # 2,468 test shapes: 5 batches, last padded.
  config.checkpoint.every_steps = 1000
  return config


def small_data():
  """A few thousand point clouds on a CPU (docs/data.md); not a paper recipe.

  One input per point (2,048) with 16-band 3-D Fourier features at a 64^3
  grid, the small encoder, the small_data_recipe (AdamW 1e-3, 600 steps of
  16) on PointNet-style HDF5 files; the class count of the sample set (10,
  from its shape_names.txt).
  """
  config = common.base_config()
  config.model = common.model(
    'perceiver',
    10,
    input=common.model_input(modality='points', num_bands=16, max_resolution=(64, 64, 64)),
    encoder=common.small_encoder(),
  )
  from perceiver.data import config as data_config  # pylint: disable=g-import-not-at-top

  config.data = data_config.default_config('modelnet40')
  config.data.source = 'hdf5'
  # The sample's 400 training clouds: 25 steps per epoch, warm-up 15 steps.
  common.small_data_recipe(config, num_steps=600, batch_size=16, base_lr=1e-3, warmup_epochs=0.6)
  config.eval.split = 'test'
  return config


def smoke():
  from perceiver.train import input_pipeline  # pylint: disable=g-import-not-at-top

  config = paper()
  config.model.input.num_bands = 4
  config.model.encoder = common.tiny_encoder()
  config.model.decoder.num_classes = 5
  config.data = input_pipeline.synthetic_config({'points': (64, 3)}, 5)
  common.smoke_runner(config)
  return config


PRESETS = dict(paper=paper, small_data=small_data, smoke=smoke)


def get_config(arg=None):
  return common.select(PRESETS, arg, 'paper')
