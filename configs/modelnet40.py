"""ModelNet40 point-cloud classification: Perceiver (ICML 2021), Table 4.

  python -m experiments.main --config=configs/modelnet40.py:<preset> --workdir=DIR

Presets:
  paper  Perceiver, 85.7 top-1 (PAPERS.md, "ModelNet40").
  smoke  A tiny model on synthetic point clouds, 3 steps.
"""

from perceiver_configs import common


def paper():
  config = common.base_config()
  config.model = common.model(
      'perceiver', 40,
      input=common.model_input(
          modality='points',
          # 3-D Fourier features, 64 bands, maximum frequency 1120 = 10x
          # ImageNet's (112 = 224 / 2). Frequencies run from 1 to
          # max_resolution / 2, so max_resolution = 2 * 1120.
          num_bands=64,
          max_resolution=(2240, 2240, 2240)),
      # 2 cross-attends, 6 self-attends per block, otherwise the ImageNet
      # settings: 512 x 1024 latents, cross-attend 2 and the latent
      # Transformers shared (with 2 cross-attends the sharing only concerns
      # the latent Transformers), interleaved: one cross-attend per block.
      encoder=common.model_encoder(num_cross_attends=2, num_blocks=2))
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
  config.optimizer = common.optimizer(
      schedule=dict(name='constant', base_lr=1e-3))
  config.eval.split = 'test'
  config.eval.batch_size = 512  # 2,468 test shapes: 5 batches, last padded.
  config.checkpoint.every_steps = 1000
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


PRESETS = dict(paper=paper, smoke=smoke)


def get_config(arg=None):
  return common.select(PRESETS, arg, 'paper')
