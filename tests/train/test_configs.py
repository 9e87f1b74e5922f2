"""Experiment configs: paper hyperparameters, locking, override errors."""

import importlib
import os

from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import pytest

from perceiver import models
from perceiver.train import config_checks
from . import helpers

CONFIG_FILES = ('imagenet', 'audioset', 'modelnet40', 'mnist')


def _presets():
  for name in CONFIG_FILES:
    module = importlib.import_module(f'perceiver_configs.{name}')
    for preset in module.PRESETS:
      yield name, preset


def _get(name, preset):
  return importlib.import_module(f'perceiver_configs.{name}').get_config(preset)


@pytest.mark.parametrize('name,preset', list(_presets()))
def test_every_preset_is_locked_valid_and_builds(name, preset):
  config = _get(name, preset)
  config_checks.check_config(config, 'train_and_eval')
  with pytest.raises(AttributeError, match='locked'):
    config.train.batchsize = 3  # A typo of batch_size.
  models.build_model(config.model)  # Rejects unknown model keys.


def test_imagenet_paper_matches_the_paper():
  c = _get('imagenet', 'paper')
  enc, inp = c.model.encoder, c.model.input
  assert (enc.num_cross_attends, enc.cross_attend_placement) == (8, 'interleaved')
  assert enc.share_cross_attends and enc.share_latent_transformers
  assert (enc.num_blocks, enc.num_self_attends_per_block) == (8, 6)
  assert (enc.num_latents, enc.latent_channels) == (512, 1024)
  assert (enc.num_cross_attend_heads, enc.num_self_attend_heads) == (1, 8)
  assert (enc.cross_attend_widening_factor, enc.self_attend_widening_factor) == (1, 1)
  assert enc.dropout_prob == 0.0 and enc.latent_init_scale == 0.02
  assert (inp.prep_type, inp.position_encoding, inp.num_bands, tuple(inp.max_resolution)) == (
    'pixels',
    'fourier',
    64,
    (224, 224),
  )
  assert inp.concat_or_add_pos == 'concat' and inp.permute_seed < 0
  assert c.model.decoder.name == 'average_project'
  o = c.optimizer
  assert o.name == 'lamb' and o.schedule.name == 'step'
  assert o.schedule.base_lr == 4e-3 and o.schedule.decay_rate == 0.1
  assert tuple(o.schedule.decay_epochs) == (84, 102, 114)
  assert c.train.num_epochs == 120 and c.train.loss == 'softmax'
  assert c.data.name == 'imagenet2012' and c.data.image_size == 224


def test_imagenet_paper_has_the_papers_parameter_count():
  c = _get('imagenet', 'paper')
  net = models.build_model(c.model)
  image = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  params, _ = jax.eval_shape(lambda x: net.init(jax.random.PRNGKey(0), {'image': x}, is_training=True), image)
  count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  assert count == pytest.approx(44.9e6, rel=2e-3)  # "~44.9M parameters".


def test_imagenet_table2_variants():
  paper = _get('imagenet', 'paper')
  learned = _get('imagenet', 'learned_pos')
  assert learned.model.input.position_encoding == 'trainable'
  assert learned.model.input.trainable_pos_channels == 128
  assert learned.model.input.trainable_pos_init_scale == 1.0
  assert learned.model.encoder.num_cross_attends == 1
  for name, base in (('permuted', paper), ('learned_pos_permuted', learned)):
    permuted = _get('imagenet', name)
    assert permuted.model.input.permute_seed >= 0
    # Nothing else changes.
    permuted.unlock()
    permuted.model.input.permute_seed = -1
    assert permuted.to_dict() == base.to_dict()


@pytest.mark.parametrize('preset', ['io_fourier', 'io_learned', 'io_conv'])
def test_imagenet_perceiver_io_config_a_recipe(preset):
  c = _get('imagenet', preset)
  assert c.model.name == 'perceiver_io'
  enc = c.model.encoder
  assert enc.num_cross_attends == 1 and enc.share_latent_transformers
  assert (enc.num_blocks, enc.num_self_attends_per_block) == (8, 6)
  assert (enc.num_latents, enc.latent_channels) == (512, 1024)
  assert c.train.batch_size == 1024 and c.train.num_epochs == 110
  assert c.train.label_smoothing == 0.1
  o = c.optimizer
  assert (o.name, o.schedule.name, o.schedule.base_lr) == ('lamb', 'constant_cosine', 2e-3)
  assert o.schedule.constant_epochs == 55 and o.schedule.end_value == 0.0
  assert o.schedule.warmup_epochs == 0 and o.weight_decay == 0.1
  assert o.max_norm == 10
  d = c.data
  assert (d.randaugment_num_layers, d.randaugment_magnitude) == (4, 5)
  assert d.mixup_alpha == 0.2 and d.cutmix_alpha > 0


def test_audioset_and_modelnet_match_the_paper():
  for preset in ('audio_raw', 'audio_mel', 'video', 'audio_video'):
    c = _get('audioset', preset)
    enc = c.model.encoder
    assert (enc.num_cross_attends, enc.num_self_attends_per_block) == (2, 8)
    assert not enc.share_cross_attends and not enc.share_latent_transformers
    assert c.train.loss == 'sigmoid' and c.train.num_epochs == 100
    assert c.model.decoder.num_classes == 527 and c.eval.clip_axis
  av = _get('audioset', 'audio_video')
  assert av.model.input.video_dropout_prob == 0.3
  assert av.data.video_dropout == 0.0  # Applied once, in the model.
  tuned = _get('audioset', 'audio_video_mel_tuned')
  assert not tuned.data.specaugment
  assert tuned.model.input.audio_dropout_prob == 0.1
  m = _get('modelnet40', 'paper')
  assert (m.model.encoder.num_cross_attends, m.model.encoder.num_self_attends_per_block) == (2, 6)
  assert m.model.input.num_bands == 64
  # Maximum frequency max_resolution / 2 = 1120.
  assert tuple(m.model.input.max_resolution) == (2240,) * 3
  assert (m.optimizer.name, m.optimizer.schedule.name, m.optimizer.schedule.base_lr) == ('lamb', 'constant', 1e-3)
  assert m.train.batch_size == 512 and m.train.num_steps == 50_000


def _parse(*argv):
  fv = flags.FlagValues()
  argv = ['prog', *argv]
  # Override flags are registered from the argv given here, as in main.
  config_flags.DEFINE_config_file('config', flag_values=fv, lock_config=True, sys_argv=argv)
  fv(argv)
  return fv.config


def test_overrides_apply_and_typos_fail():
  path = os.path.join(helpers.REPO, 'configs', 'mnist.py')
  config = _parse(f'--config={path}:smoke', '--config.train.batch_size=16', '--config.optimizer.schedule.base_lr=0.5')
  assert config.train.batch_size == 16
  assert config.optimizer.schedule.base_lr == 0.5
  with pytest.raises(AttributeError, match='Did you mean "batch_size"'):
    _parse(f'--config={path}:smoke', '--config.train.batchsize=16')
  with pytest.raises(flags.IllegalFlagValueError, match='batch_size'):
    _parse(f'--config={path}:smoke', '--config.train.batch_size=big')
  with pytest.raises(Exception, match='unknown preset'):
    _parse(f'--config={path}:nope')


@pytest.mark.parametrize(
  'field,value,match',
  [
    ('optimizer.name', 'sgd', 'optimizer.name'),
    ('optimizer.schedule.name', 'linear', 'schedule.name'),
    ('train.loss', 'hinge', 'train.loss'),
    ('train.label_smoothing', 1.0, 'label_smoothing'),
    ('train.grad_accum_steps', 3, 'grad_accum_steps'),
    ('parallel.param_sharding', 'tp', 'param_sharding'),
    ('model.decoder.num_classes', 11, 'num_classes'),
  ],
)
def test_bad_values_are_rejected_by_name(field, value, match):
  config = _get('mnist', 'smoke')
  section, key = field.rsplit('.', 1)
  target = config
  for part in section.split('.'):
    target = target[part]
  target[key] = value
  with pytest.raises(config_checks.ConfigError, match=match):
    config_checks.check_config(config, 'train')


def test_cli_rejects_an_unknown_key_before_doing_anything(tmp_path):
  workdir = str(tmp_path / 'run')
  proc = helpers.run_main('configs/mnist.py:smoke', workdir, '--config.optimizer.lr=0.1', timeout=240)
  assert proc.returncode != 0
  assert "unknown config key 'lr'" in proc.stderr, proc.stderr[-2000:]
  assert not os.path.exists(workdir)  # Nothing was built, nothing compiled.
  proc = helpers.run_main('configs/mnist.py:smoke', workdir, '--config.optimizer.name=sgd', timeout=240)
  assert proc.returncode != 0
  assert 'optimizer.name' in proc.stderr, proc.stderr[-2000:]
  assert not os.path.exists(workdir)


@pytest.mark.parametrize(
  'preset,released',
  [
    ('io_fourier', 'imagenet_fourier_position_encoding'),
    ('io_learned', 'imagenet_learned_position_encoding'),
    ('io_conv', 'imagenet_conv_preprocessing'),
  ],
)
def test_io_presets_fit_the_released_checkpoints(preset, released):
  """`--config.init_from=<released .pystate>` needs the preset's params and
  state to have the released model's names and shapes (no file needed: the
  released model is rebuilt from its reference constructor arguments)."""
  from perceiver_configs import imagenet  # pylint: disable=g-import-not-at-top
  from perceiver import checkpoints  # pylint: disable=g-import-not-at-top

  image = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  net = models.build_model(imagenet.get_config(preset).model)
  params, state = jax.eval_shape(lambda x: net.init(jax.random.PRNGKey(0), {'image': x}, is_training=True), image)
  ref = models.build_from_reference_config(checkpoints.published_config(released)).net
  ref_params, ref_state = jax.eval_shape(lambda x: ref.init(jax.random.PRNGKey(0), x, is_training=True), image)
  checkpoints.check_compatible(params, ref_params)
  checkpoints.check_compatible({m: v for m, v in state.items() if m != 'input_spec'}, ref_state, what='state')
