"""Baselines of the Perceiver tables: ResNet-50, ViT-B and a plain Transformer.

  python -m experiments.main --config=configs/baselines.py:<preset> --workdir=DIR

Models are `perceiver/baselines.py`. Every preset can be run on permuted
inputs with `--config.model.input.permute_seed=0` (the `_permuted` presets
do exactly that); `config.table` names the table cell the run fills for
`scripts/make_tables.py` (empty: none).

ImageNet (Tables 1 and 2; data and recipe of configs/imagenet.py:paper,
only the model differs):
  resnet50, vit_b16                   no Fourier features (Table 1).
  resnet50_ff[_permuted]              ResNet-50 (FF): 73.5 / 39.4.
  vit_b16_ff[_permuted]               ViT-B-16 (FF): 76.7 / 61.7.
  vit_b8_ff[_permuted], vit_b4_ff[_permuted]  other patch sizes (no paper figure).
  transformer_64_ff[_permuted]        Transformer on 64x64 pixels (FF): 57.0 / 57.0.
ModelNet40 (Table 4; data and recipe of configs/modelnet40.py:paper):
  resnet50_ff_modelnet40              66.3.
  vit_b{2,4,8,16}_ff_modelnet40       78.9 / 73.4 / 65.3 / 59.6.
  transformer_44_ff_modelnet40        82.1.
MNIST (the CPU-scale Table 2, scripts/permutation_table.py; recipe in
`mnist_base`):
  resnet_ff_mnist[_permuted], vit_ff_mnist[_permuted],
  transformer_ff_mnist[_permuted].
  smoke, smoke_resnet, smoke_points    tiny models on synthetic data, 3 steps.

Where PAPERS.md is silent (the baselines' training recipes and the
Transformer's size) the comment says what we chose.
"""

from typing import Any

import ml_collections

from perceiver import config as schema
from perceiver_configs import common

ConfigDict = ml_collections.ConfigDict

# Same one fixed permutation as the Perceiver's permuted presets.
PERMUTE_SEED = 0


def model_input(**overrides: Any) -> ConfigDict:
  """``model.input`` of a baseline (all fields of perceiver.config.BaselineInputConfig)."""
  return _fields(schema.defaults(schema.BaselineInputConfig), overrides)


def resnet(**overrides: Any) -> ConfigDict:
  """``model.resnet``: ResNet-50 v1 unless overridden."""
  return _fields(schema.defaults(schema.ResNetConfig), overrides)


def vit(**overrides: Any) -> ConfigDict:
  """``model.vit``: ViT-B/16 unless overridden."""
  return _fields(schema.defaults(schema.ViTConfig), overrides)


def model(
  name: str,
  num_classes: int,
  *,
  input: ConfigDict,  # pylint: disable=redefined-builtin
  resnet_cfg: ConfigDict | None = None,
  vit_cfg: ConfigDict | None = None,
) -> ConfigDict:
  """``config.model`` of a baseline; both sections are present so either can be overridden."""
  return ConfigDict(
    dict(
      name=name,
      compute_dtype='float32',
      input=input,
      resnet=resnet_cfg or resnet(),
      vit=vit_cfg or vit(),
      decoder=dict(num_classes=num_classes),
    )
  )


def table_tag(table: str = '', row: str = '', column: str = '') -> ConfigDict:
  """``config.table``: the cell of perceiver_tools/paper_results.py this run fills."""
  if table:
    from perceiver_tools import paper_results  # pylint: disable=g-import-not-at-top

    paper_results.check_tag(paper_results.Tag(table, row, column))
  return ConfigDict(dict(table=table, row=row, column=column))


def _fields(defaults: dict[str, Any], overrides: dict[str, Any]) -> ConfigDict:
  unknown = sorted(set(overrides) - set(defaults))
  if unknown:
    raise KeyError(f'unknown field(s) {unknown}; known: {sorted(defaults)}')
  return ConfigDict({**defaults, **overrides})


def permuted_variant(preset):
  """The `_permuted` twin of a preset: same run, permuted column."""

  def make():
    config = preset()
    config.model.input.permute_seed = PERMUTE_SEED
    if config.table.column == 'raw':
      config.table.column = 'permuted'
    return config

  make.__doc__ = f'{preset.__name__} on permuted inputs.'
  return make


# ---------------------------------------------------------------- ImageNet


def _imagenet(model_cfg: ConfigDict, tag: ConfigDict) -> ConfigDict:
  """configs/imagenet.py:paper (data, recipe) with a baseline model.

  Silent in PAPERS.md: the baselines' training recipes. We train them with
  the Perceiver's (LAMB, 120 epochs, step decay, RandAugment, MixUp/CutMix).
  """
  from perceiver_configs import imagenet  # pylint: disable=g-import-not-at-top

  config = imagenet.paper()
  config.model = model_cfg
  config.table = tag
  return config


def _imagenet_ff_input(**overrides: Any) -> ConfigDict:
  """Pixels + 2-D Fourier features as the Perceiver's (K=64, mu=224)."""
  return model_input(**{'num_bands': 64, 'max_resolution': (224, 224), 'input_channels': 3, **overrides})


def resnet50():
  return _imagenet(
    model('resnet', 1000, input=model_input(position_encoding='none', input_channels=3)),
    table_tag('perceiver_t1', 'ResNet-50', 'top-1'),
  )


def resnet50_ff():
  return _imagenet(
    model('resnet', 1000, input=_imagenet_ff_input()), table_tag('perceiver_t2', 'ResNet-50 (FF)', 'raw')
  )


def vit_b16():
  """ViT-B/16 with a learned position encoding (per pixel, concatenated
  before the patch embedding: a learned additive per-patch embedding)."""
  return _imagenet(
    model(
      'vit',
      1000,
      input=model_input(position_encoding='trainable', trainable_pos_channels=3, trainable_pos_init_scale=0.02),
    ),
    table_tag('perceiver_t1', 'ViT-B-16', 'top-1'),
  )


def _vit_ff(patch: int):
  def make():
    tag = table_tag('perceiver_t2', 'ViT-B-16 (FF)', 'raw') if patch == 16 else table_tag()
    return _imagenet(model('vit', 1000, input=_imagenet_ff_input(), vit_cfg=vit(patch_size=patch)), tag)

  make.__name__ = f'vit_b{patch}_ff'
  make.__doc__ = f'ViT-B/{patch} on pixels + 2-D Fourier features.'
  return make


vit_b16_ff, vit_b8_ff, vit_b4_ff = _vit_ff(16), _vit_ff(8), _vit_ff(4)


def transformer_64_ff():
  """A Transformer over the 4,096 pixels of the image resized to 64x64.

  Silent in PAPERS.md: the Transformer's size. We use ViT-B's (12 layers,
  768 channels, 12 heads, MLP x4) with mean pooling; Fourier features at
  the 64x64 grid (K=64, mu=64).
  """
  return _imagenet(
    model(
      'transformer',
      1000,
      input=model_input(num_bands=64, max_resolution=(64, 64), resize=(64, 64), input_channels=3),
      vit_cfg=vit(patch_size=1, pool='mean'),
    ),
    table_tag('perceiver_t2', 'Transformer (64x64, FF)', 'raw'),
  )


# -------------------------------------------------------------- ModelNet40


def _modelnet(model_cfg: ConfigDict, row: str) -> ConfigDict:
  """configs/modelnet40.py:paper (data, recipe: LAMB 1e-3, batch 512,
  50,000 steps) with a baseline model; recipe silent in PAPERS.md."""
  from perceiver_configs import modelnet40  # pylint: disable=g-import-not-at-top

  config = modelnet40.paper()
  config.model = model_cfg
  config.table = table_tag('perceiver_t4', row, 'top-1')
  return config


def _points_input(grid_size: int) -> ConfigDict:
  """xyz + 3-D Fourier features (64 bands, max frequency 1120, as the
  Perceiver's) of each point, laid out on a grid_size^2 grid.

  The paper names only the Transformer's grid (44x44 = 1,936 of the ~2,000
  points). ViT patches must tile the grid: 48x48 (2,048 points + 256 zero
  cells) is our choice for the ViTs; 44x44 for ResNet-50.
  """
  return model_input(modality='points', num_bands=64, max_resolution=(2240, 2240, 2240), grid_size=grid_size)


def resnet50_ff_modelnet40():
  return _modelnet(model('resnet', 40, input=_points_input(44)), 'ResNet-50 (FF)')


def _vit_modelnet(patch: int):
  def make():
    return _modelnet(model('vit', 40, input=_points_input(48), vit_cfg=vit(patch_size=patch)), f'ViT-B-{patch} (FF)')

  make.__name__ = f'vit_b{patch}_ff_modelnet40'
  return make


def transformer_44_ff_modelnet40():
  """The ImageNet Transformer (ViT-B-sized, our choice) over 44x44 points."""
  return _modelnet(
    model('transformer', 40, input=_points_input(44), vit_cfg=vit(patch_size=1, pool='mean')), 'Transformer (44x44, FF)'
  )


# ------------------------------------------------------------------- MNIST


MNIST_EPOCHS = 5.0


def mnist_base(model_cfg: ConfigDict, row: str, *, num_epochs: float = MNIST_EPOCHS) -> ConfigDict:
  """The runner sections of every row of the MNIST permutation table.

  Not configs/mnist.py:quickstart's recipe (which is tuned for one long run):
  our choice for ~3-minute CPU runs, shared by the Perceivers and the
  baselines alike, so the table compares architectures. The 4,000 training
  digits with random shifts of up to 2 px, AdamW 3e-3 with a half-epoch
  warm-up and cosine decay, batch 32, weight decay 1e-4, clipping 10, no
  label smoothing; evaluated once, at the end, on the 1,000 held-out digits.
  """
  from perceiver.data import mnist  # pylint: disable=g-import-not-at-top

  config = common.base_config()
  config.data = mnist.default_config()
  config.model = model_cfg
  config.table = table_tag('mnist_permutation', row, 'raw')
  config.train.batch_size = 32
  config.train.num_epochs = float(num_epochs)
  config.train.log_every = 25
  config.optimizer = common.optimizer(
    name='adamw', weight_decay=1e-4, max_norm=10.0, schedule=dict(name='cosine', base_lr=3e-3, warmup_epochs=0.5)
  )
  config.eval.split = 'test'
  config.eval.batch_size = 200
  config.checkpoint.every_steps = 10_000  # Only the final state.
  return config


def _mnist_ff_input(**overrides: Any) -> ConfigDict:
  """Pixels + 2-D Fourier features at the 28x28 grid (8 bands, as the quickstart Perceiver)."""
  return model_input(**{'num_bands': 8, 'max_resolution': (28, 28), 'input_channels': 1, **overrides})


def resnet_ff_mnist():
  """A small ResNet: 3x3 stem, one basic block per stage, 16..128 channels."""
  return mnist_base(
    model(
      'resnet',
      10,
      input=_mnist_ff_input(),
      resnet_cfg=resnet(
        blocks_per_group=(1, 1, 1, 1),
        channels_per_group=(16, 32, 64, 128),
        bottleneck=False,
        initial_conv_channels=16,
        initial_conv_kernel=3,
        initial_conv_stride=1,
      ),
    ),
    'ResNet (FF)',
  )


def vit_ff_mnist():
  """A small ViT: 4x4 patches (49 tokens), 4 layers of 64 channels, 4 heads."""
  return mnist_base(
    model(
      'vit',
      10,
      input=_mnist_ff_input(),
      vit_cfg=vit(patch_size=4, hidden_size=64, num_layers=4, num_heads=4, widening_factor=2),
    ),
    'ViT (FF)',
  )


def transformer_ff_mnist():
  """A one-layer Transformer over the 196 pixels of the digit resized to 14x14
  (64 channels, 4 heads, mean-pooled): the paper's Transformer row at CPU size."""
  return mnist_base(
    model(
      'transformer',
      10,
      input=_mnist_ff_input(max_resolution=(14, 14), resize=(14, 14)),
      vit_cfg=vit(patch_size=1, hidden_size=64, num_layers=1, num_heads=4, widening_factor=2, pool='mean'),
    ),
    'Transformer (14x14, FF)',
  )


# ------------------------------------------------------------------- smoke


def _smoke(model_cfg: ConfigDict, inputs: dict[str, tuple[int, ...]]) -> ConfigDict:
  from perceiver.train import input_pipeline  # pylint: disable=g-import-not-at-top

  config = common.base_config()
  config.model = model_cfg
  config.data = input_pipeline.synthetic_config(inputs, 10)
  config.table = table_tag()
  common.smoke_runner(config)
  config.eval.split = 'test'
  return config


def smoke():
  """A tiny ViT on synthetic 16x16 images, 3 steps."""
  return _smoke(
    model(
      'vit', 10, input=model_input(num_bands=2), vit_cfg=vit(patch_size=4, hidden_size=16, num_layers=1, num_heads=2)
    ),
    {'image': (16, 16, 3)},
  )


def smoke_resnet():
  return _smoke(
    model(
      'resnet',
      10,
      input=model_input(num_bands=2),
      resnet_cfg=resnet(
        blocks_per_group=(1, 1, 1, 1), channels_per_group=(4, 8, 8, 8), bottleneck=False, initial_conv_channels=4
      ),
    ),
    {'image': (16, 16, 3)},
  )


def smoke_points():
  return _smoke(
    model(
      'transformer',
      10,
      input=model_input(modality='points', num_bands=2, max_resolution=(16, 16, 16), grid_size=4),
      vit_cfg=vit(patch_size=1, hidden_size=16, num_layers=1, num_heads=2),
    ),
    {'points': (20, 3)},
  )


PRESETS = dict(
  resnet50=resnet50,
  resnet50_ff=resnet50_ff,
  vit_b16=vit_b16,
  vit_b16_ff=vit_b16_ff,
  vit_b8_ff=vit_b8_ff,
  vit_b4_ff=vit_b4_ff,
  transformer_64_ff=transformer_64_ff,
  resnet50_ff_modelnet40=resnet50_ff_modelnet40,
  transformer_44_ff_modelnet40=transformer_44_ff_modelnet40,
  resnet_ff_mnist=resnet_ff_mnist,
  vit_ff_mnist=vit_ff_mnist,
  transformer_ff_mnist=transformer_ff_mnist,
  smoke=smoke,
  smoke_resnet=smoke_resnet,
  smoke_points=smoke_points,
  **{f'vit_b{p}_ff_modelnet40': _vit_modelnet(p) for p in (2, 4, 8, 16)},
)
PRESETS.update(
  {
    f'{name}_permuted': permuted_variant(PRESETS[name])
    for name in (
      'resnet50_ff',
      'vit_b16_ff',
      'vit_b8_ff',
      'vit_b4_ff',
      'transformer_64_ff',
      'resnet_ff_mnist',
      'vit_ff_mnist',
      'transformer_ff_mnist',
    )
  }
)


def get_config(arg=None):
  return common.select(PRESETS, arg, 'resnet50_ff')
