"""The typed model schema (perceiver/config.py): one source for configs/,
build_model, the baselines and docs/architecture.md."""

import dataclasses
import glob
import importlib
import os

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perceiver import config as schema
from perceiver import models

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RNG = jax.random.PRNGKey(0)


def _presets():
  out = []
  for path in sorted(glob.glob(os.path.join(REPO, 'configs', '*.py'))):
    name = os.path.basename(path)[:-3]
    if name in ('__init__', 'common'):
      continue
    module = importlib.import_module(f'perceiver_configs.{name}')
    # Classifier presets; the other tasks (language, flow, autoencoding)
    # validate their own model sections (tests/{language,flow,multimodal}).
    out += [
      (name, preset)
      for preset in sorted(getattr(module, 'PRESETS', {}))
      if module.get_config(preset).get('task', 'classification') == 'classification'
    ]
  return out


@pytest.mark.parametrize('name,preset', _presets())
def test_every_preset_is_complete_in_the_schema_and_builds(name, preset):
  """Each preset's config.model parses, lists every schema field (so it can
  be overridden from the command line) with exactly the parsed values, and
  build_model accepts it."""
  model_cfg = importlib.import_module(f'perceiver_configs.{name}').get_config(preset).model
  parsed = schema.parse_model_config(model_cfg)
  assert schema.to_dict(parsed) == _lists(model_cfg.to_dict()), 'preset and schema disagree'
  assert isinstance(models.build_model(model_cfg), hk.TransformedWithState)


def _lists(tree):
  if isinstance(tree, dict):
    return {k: _lists(v) for k, v in tree.items()}
  return list(tree) if isinstance(tree, tuple) else tree


def test_configs_common_sections_are_the_schema_defaults():
  from perceiver_configs import common  # pylint: disable=import-outside-toplevel

  assert common.model_input().to_dict() == schema.defaults(schema.InputConfig)
  assert common.model_encoder().to_dict() == schema.defaults(schema.EncoderConfig)
  for name, decoder in (('perceiver', 'average_project'), ('perceiver_io', 'classification')):
    cfg = common.model(name, 7, input=common.model_input(), encoder=common.model_encoder())
    assert cfg.decoder.to_dict() == schema.to_dict(schema.DecoderConfig(num_classes=7, name=decoder))


def test_docs_schema_table_is_generated_from_the_dataclasses():
  with open(os.path.join(REPO, 'docs', 'architecture.md')) as f:
    text = f.read()
  begin, end = text.index(schema.DOC_BEGIN) + len(schema.DOC_BEGIN), text.index(schema.DOC_END)
  assert text[begin:end].strip() == schema.schema_markdown().strip(), (
    'docs/architecture.md is stale: run python -m perceiver.config docs/architecture.md'
  )
  for cls in (schema.InputConfig, schema.EncoderConfig, schema.DecoderConfig, schema.ViTConfig):
    for field in dataclasses.fields(cls):
      assert f'| `{field.name}` |' in text[begin:end]


def test_a_partial_perceiver_dict_is_the_papers_imagenet_model():
  """Missing fields take the schema's defaults (the paper's ImageNet
  Perceiver), never a smaller model: 8 cross-attends, 512 x 1024 latents."""
  from perceiver_configs import imagenet  # pylint: disable=import-outside-toplevel

  partial = schema.parse_model_config({'name': 'perceiver', 'decoder': {'num_classes': 1000}})
  paper = schema.parse_model_config(imagenet.get_config('paper').model)
  assert partial.encoder == paper.encoder and partial.encoder.num_cross_attends == 8
  # () = the input grid: mu = 224 on the paper's 224 x 224 images.
  assert dataclasses.replace(partial.input, input_channels=3, max_resolution=(224, 224)) == paper.input
  net = models.build_model({'name': 'perceiver', 'decoder': {'num_classes': 1000}})
  params, _ = jax.eval_shape(
    lambda x: net.init(RNG, x, is_training=True), {'image': jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)}
  )
  assert {
    'perceiver_encoder/~/cross_attention/attention/linear',
    'perceiver_encoder/~/cross_attention_1/attention/linear',
  } <= set(params)
  io = schema.parse_model_config({'name': 'perceiver_io', 'decoder': {'num_classes': 10}})
  assert io.encoder.num_cross_attends == 1 and io.decoder.name == 'classification'


@pytest.mark.parametrize(
  'bad, message',
  [
    ({'encoder': {'num_latents': 0}}, r'^model.encoder.num_latents must be >= 1, got 0$'),
    ({'decoder': {'num_classes': 0}}, r'^model.decoder.num_classes must be >= 1, got 0$'),
    ({'decoder': {}}, r'^model.decoder.num_classes must be >= 1, got 0$'),
    (
      {'encoder': {'latent_channels': 100, 'num_self_attend_heads': 3}},
      r'^model.encoder.latent_channels=100 is not divisible by num_self_attend_heads=3$',
    ),
    (
      {'encoder': {'cross_attend_qk_channels': 10, 'num_cross_attend_heads': 4}},
      r'^model.encoder.cross_attend_qk_channels=10 is not divisible by num_cross_attend_heads=4$',
    ),
    ({'encoder': {'num_latent': 3}}, r"^model.encoder: unknown key\(s\) \['num_latent'\]; allowed"),
    ({'input': {'input_channels': 0}}, r'^model.input.input_channels must be -1 \(unset\) or >= 1, got 0$'),
    ({'encoder': {'qk_channels': 0}}, r'^model.encoder.qk_channels must be -1 \(unset\) or >= 1, got 0$'),
    ({'encoder': {'num_latents': '512'}}, r'^model.encoder.num_latents must be an int, got str$'),
    ({'encoder': {'remat': 1}}, r'^model.encoder.remat must be a bool, got int$'),
    ({'encoder': {'dropout_prob': 1.0}}, r'^model.encoder.dropout_prob must be < 1, got 1.0$'),
    ({'encoder': 3}, r'^model.encoder must be a section \(a mapping\), got int$'),
    ({'input': {'modality': 'smell'}}, r"^model.input.modality must be one of .*, got 'smell'$"),
    ({'input': {'max_resolution': [224, 'x']}}, r'^model.input.max_resolution must be a tuple'),
    ({'input': {'max_resolution': (4, 4, 4)}}, r'^model.input.max_resolution has 3 dims'),
    ({'input': {'modality': 'audio_video'}}, r'needs a model.input.audio section$'),
    ({'compute_dtype': 'float16'}, r"^model.compute_dtype must be one of \['float32', 'bfloat16', 'auto'\]"),
    ({'name': 'percevier'}, r"^model.name must be one of \[.*\], got 'percevier'$"),
    ({'name': 'resnet', 'compute_dtype': 'bfloat16'}, r'vit/transformer only$'),
    ({'name': 'transformer', 'vit': {'patch_size': 2}}, r'^model.vit.patch_size must be 1'),
  ],
)
def test_bad_configs_raise_one_line_naming_the_field(bad, message):
  cfg = {'decoder': {'num_classes': 10}, **bad}
  with pytest.raises(schema.ModelConfigError, match=message) as err:
    models.build_model(cfg)
  assert '\n' not in str(err.value)


def test_untrusted_values_are_not_echoed_at_length():
  with pytest.raises(schema.ModelConfigError) as err:
    schema.parse_model_config({'input': {'modality': 'x' * 1000}, 'decoder': {'num_classes': 2}})
  assert len(str(err.value)) < 200


def test_cross_and_self_attend_widths_are_separate():
  """lucidrains' cross_dim_head / latent_dim_head: 1 x 64 cross-attend
  channels and 8 x 16 self-attend channels under 32-wide latents."""
  net = models.build_model(
    dict(
      input=dict(num_bands=2, input_channels=3),
      encoder=dict(
        num_latents=4,
        latent_channels=32,
        num_blocks=1,
        num_cross_attends=1,
        num_self_attends_per_block=1,
        cross_attend_qk_channels=64,
        cross_attend_v_channels=64,
        num_self_attend_heads=8,
        self_attend_qk_channels=128,
        self_attend_v_channels=128,
      ),
      decoder=dict(num_classes=3),
    )
  )
  params, _ = jax.eval_shape(
    lambda x: net.init(RNG, x, is_training=True), {'image': jax.ShapeDtypeStruct((1, 4, 4, 3), jnp.float32)}
  )
  cross = 'perceiver_encoder/~/cross_attention/attention/'
  self_ = 'perceiver_encoder/~/self_attention/attention/'
  assert params[cross + 'linear']['w'].shape == (32, 64)  # q: latents -> 64
  assert params[cross + 'linear_2']['w'].shape[-1] == 64  # v
  assert params[self_ + 'linear']['w'].shape == (32, 128)
  assert params[self_ + 'linear_3']['w'].shape == (128, 32)  # back to the latent width


def test_channels_first_images_are_refused_with_a_hint():
  net = models.build_model(
    dict(
      input=dict(num_bands=2, input_channels=3),
      encoder=dict(num_latents=4, latent_channels=8, num_blocks=1, num_cross_attends=1, num_self_attend_heads=2),
      decoder=dict(num_classes=3),
    )
  )
  with pytest.raises(ValueError, match=r'channels-last.*looks channels-first.*transpose\(0, 2, 3, 1\)'):
    net.init(RNG, {'image': jnp.zeros((1, 3, 32, 32))}, is_training=True)


def test_a_new_model_kind_registers_without_editing_build_model():
  @dataclasses.dataclass(frozen=True)
  class ToyDecoder:
    num_classes: int = 2

  @dataclasses.dataclass(frozen=True)
  class Toy:
    name: str = 'toy'
    compute_dtype: str = 'float32'
    width: int = schema._field(4, 'hidden width', min=1)  # pylint: disable=protected-access
    decoder: ToyDecoder = dataclasses.field(default_factory=ToyDecoder)

  def build(cfg):
    return hk.transform_with_state(
      lambda inputs, *, is_training: hk.nets.MLP([cfg.width, cfg.decoder.num_classes])(inputs['x'])
    )

  schema.register_model('toy', Toy, build)
  try:
    net = models.build_model({'name': 'toy', 'width': 3})
    params, _ = net.init(RNG, {'x': jnp.ones((1, 5))}, is_training=True)
    assert params['mlp/~/linear_0']['w'].shape == (5, 3)
    with pytest.raises(schema.ModelConfigError, match='^model.width must be >= 1, got 0$'):
      models.build_model({'name': 'toy', 'width': 0})
  finally:
    schema._REGISTRY.pop('toy')  # pylint: disable=protected-access


def test_hf_attention_dropout_is_applied_in_training_only(golden_dir):
  """`hf_compat.attention_probs_dropout_prob` (HF's dropout on attention
  weights) acts in training and not in evaluation."""
  from perceiver import checkpoints  # pylint: disable=import-outside-toplevel

  path = os.path.join(golden_dir, 'hf', 'vision_perceiver_fourier.npz')
  params, state, cfg = checkpoints.load_checkpoint(path)
  assert cfg['hf_compat']['attention_probs_dropout_prob'] > 0
  x = jax.random.normal(RNG, (1, *cfg['image_shape']))

  def run(config, is_training, seed):
    net = models.build_from_reference_config(config).net
    return net.apply(params, state, jax.random.PRNGKey(seed), x, is_training=is_training)[0]

  no_dropout = dict(cfg, hf_compat=dict(cfg['hf_compat'], attention_probs_dropout_prob=0.0))
  np.testing.assert_array_equal(run(cfg, False, 0), run(no_dropout, False, 0))
  assert not np.allclose(run(cfg, True, 0), run(cfg, True, 1))
  np.testing.assert_allclose(run(no_dropout, True, 0), run(no_dropout, True, 1))


def test_one_input_permutation():
  """The data, baselines and model share io_processors.fixed_permutation
  (RandomState; data/imagenet.py's default_rng copy is gone)."""
  from perceiver import baselines, io_processors  # pylint: disable=import-outside-toplevel
  from perceiver.data import imagenet  # pylint: disable=import-outside-toplevel

  assert not hasattr(imagenet, 'fixed_permutation') and not hasattr(baselines, 'fixed_permutation')
  np.testing.assert_array_equal(io_processors.fixed_permutation(50, 3), np.random.RandomState(3).permutation(50))
