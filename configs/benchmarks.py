"""Benchmark-only presets for scripts/benchmark.py (2-core CPU machine).

  python scripts/benchmark.py --config=configs/benchmarks.py:attn224 --compare_chunk_sizes=0,512

Presets:
  attn224  224x224 inputs (M = 50,176 pixels + Fourier features) into one
           cross-attend with a small latent stack: the setting where the
           [N, M] attention weights weigh most; compare --chunk_size=0/512.

The throughput preset is `configs/imagenet.py:cpu_bench`. Data are
synthetic, so `experiments.main` runs these presets too.
"""

from perceiver_configs import common
from perceiver_configs import imagenet


def attn224():
  """Perceiver IO config A inputs (224x224, 261 channels); 512 x 64 latents.

  512 latents as in the paper models, so the cross-attend's [B, 512, 50176]
  logits, weights and their gradients outweigh the [B, 50176, 261] inputs;
  one self-attend, so the latent stack costs little.
  """
  from perceiver.train import input_pipeline  # pylint: disable=g-import-not-at-top

  config = imagenet.io_fourier()
  config.model.encoder = common.model_encoder(
    num_latents=512,
    latent_channels=64,
    num_blocks=1,
    num_self_attends_per_block=1,
    num_cross_attends=1,
    cross_attend_placement='start',
  )
  config.data = input_pipeline.synthetic_config({'image': (224, 224, 3)}, 1000, num_train=4, num_eval=2)
  common.smoke_runner(config, batch_size=2, num_steps=4)
  config.eval.split = 'test'
  return config


PRESETS = dict(attn224=attn224)


def get_config(arg=None):
  return common.select(PRESETS, arg, 'attn224')
