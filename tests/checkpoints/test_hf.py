"""Hugging Face import: names, layouts, BatchNorm state, configs, conventions."""

import json

import haiku as hk
import jax
import numpy as np
import pytest

import _hf_numpy_oracle as oracle
from perceiver.checkpoints import (
  CheckpointFormatError,
  hf_config_to_reference,
  infer_hf_class,
  load_checkpoint,
  save_safetensors,
)
from perceiver.checkpoints import hf

CASES = {  # HF golden -> official golden of the same architecture
  'vision_perceiver_learned': 'imagenet_learned_position_encoding',
  'vision_perceiver_fourier': 'imagenet_fourier_position_encoding',
  'vision_perceiver_conv': 'imagenet_conv_preprocessing',
  'language_perceiver': 'language_masked_lm',
}
BN = 'image_preprocessor/~/conv2_d_downsample/~/batchnorm'


def _hf_golden(golden_dir, name):
  data = np.load(golden_dir / 'hf' / f'{name}.npz')
  state_dict = {k[len('state_dict::') :]: data[k] for k in data.files if k.startswith('state_dict::')}
  return data, state_dict, json.loads(str(data['__config__']))


@pytest.mark.parametrize('name', CASES)
def test_mapped_names_equal_the_reference_names(golden_dir, name):
  _, state_dict, hf_config = _hf_golden(golden_dir, name)
  params, state = hf.convert_state_dict(state_dict, hf_config)
  got = {f'params::{m}::{n}' for m in params for n in params[m]}
  got |= {f'state::{m}::{n}' for m in state for n in state[m]}
  ref = np.load(golden_dir / 'official' / f'{CASES[name]}.npz')
  assert got == {k for k in ref.files if k.startswith(('params::', 'state::'))}
  assert infer_hf_class(state_dict) == hf_config['hf_class']


def test_layouts(golden_dir):
  _, sd, _ = _hf_golden(golden_dir, 'vision_perceiver_conv')
  params, state = hf.convert_hf_state_dict(sd)
  q = params['perceiver_encoder/~/cross_attention/attention/linear']
  np.testing.assert_array_equal(q['w'], sd['perceiver.encoder.cross_attention.attention.self.query.weight'].T)
  conv = sd['perceiver.input_preprocessor.convnet.conv.weight']  # [O, I, kh, kw]
  w = params['image_preprocessor/~/conv2_d_downsample/~/conv']['w']  # [kh, kw, I, O]
  assert w.shape == (7, 7, 3, 64) and w[1, 2, 0, 5] == conv[5, 0, 1, 2]
  ln = params['perceiver_encoder/~/self_attention_1/layer_norm_1']
  np.testing.assert_array_equal(ln['scale'], sd['perceiver.encoder.self_attends.1.layernorm.weight'])
  np.testing.assert_array_equal(ln['offset'], sd['perceiver.encoder.self_attends.1.layernorm.bias'])
  assert params[BN]['scale'].shape == (1, 1, 1, 64)
  mean = state[f'{BN}/~/mean_ema']
  assert mean['average'].tobytes() == sd['perceiver.input_preprocessor.convnet.batchnorm.running_mean'].tobytes()
  assert mean['counter'].dtype == np.int32 and mean['counter'] >= hf.EMA_SATURATED_COUNTER


def test_batchnorm_state_reproduces_torch_inference_and_updates():
  """Haiku's BatchNorm on converted stats == torch's eval formula and momentum update."""
  rng = np.random.default_rng(0)
  c = 5
  sd = {
    f'perceiver.input_preprocessor.convnet.batchnorm.{k}': v
    for k, v in {
      'weight': rng.normal(size=c),
      'bias': rng.normal(size=c),
      'running_mean': rng.normal(size=c),
      'running_var': rng.uniform(0.5, 2, size=c),
      'num_batches_tracked': np.asarray(12345, np.int64),
    }.items()
  }
  sd = {k: np.asarray(v, np.float32) if v.dtype == np.float64 else v for k, v in sd.items()}
  params, state = hf.convert_hf_state_dict(sd)
  bn = hk.transform_with_state(lambda x, t: hk.BatchNorm(True, True, 0.9, eps=1e-5)(x, t))
  x = rng.normal(size=(2, 3, 3, c)).astype(np.float32)
  hk_params = {'batch_norm': params[BN]}
  hk_state = {f'batch_norm/~/{ema}': state[f'{BN}/~/{ema}'] for ema in ('mean_ema', 'var_ema')}
  out, _ = bn.apply(hk_params, hk_state, None, x, False)
  p = lambda k: sd[f'perceiver.input_preprocessor.convnet.batchnorm.{k}']
  torch_eval = (x - p('running_mean')) / np.sqrt(p('running_var') + 1e-5) * p('weight') + p('bias')
  np.testing.assert_allclose(out, torch_eval, rtol=1e-5, atol=1e-5)
  _, new_state = bn.apply(hk_params, hk_state, None, x, True)
  torch_update = 0.9 * p('running_mean') + 0.1 * x.mean(axis=(0, 1, 2))  # momentum 0.1
  np.testing.assert_allclose(
    new_state['batch_norm/~/mean_ema']['average'].reshape(-1), torch_update, rtol=1e-6, atol=1e-6
  )


@pytest.mark.parametrize('name', CASES)
def test_config_has_the_reference_schema(golden_dir, name):
  _, _, hf_config = _hf_golden(golden_dir, name)
  config = hf_config_to_reference(hf_config)
  official = json.loads(str(np.load(golden_dir / 'official' / f'{CASES[name]}.npz')['__config__']))
  assert config['model'] == official['model']
  for key, value in official.items():
    assert key in config, key
    if isinstance(value, dict) and key != 'mask_probs':
      assert set(value) <= set(config[key]), (key, set(value) - set(config[key]))
  assert set(config) - set(official) == {'layer_norm_eps', 'hf_compat', 'source'}
  assert config['layer_norm_eps'] == 1e-5  # what transformers' nn.LayerNorm(dim) uses


def test_hub_config_json_defaults_fill_in():
  config = hf_config_to_reference({'architectures': ['PerceiverForImageClassificationFourier']})
  assert config['encoder']['num_z_channels'] == 1280 and config['num_classes'] == 2
  assert config['image_shape'] == [56, 56, 3]
  assert config['input_preprocessor']['fourier_position_encoding_kwargs']['max_resolution'] == [224, 224]
  lm = hf_config_to_reference({'architectures': ['PerceiverForMaskedLM'], 'hidden_act': 'gelu_new'})
  assert lm['decoder']['qk_channels'] == 256 and lm['max_seq_len'] == 2048
  assert lm['hf_compat'] == {'gelu_approximate': True, 'attention_probs_dropout_prob': 0.1, 'decoder_query_mask': False}


@pytest.mark.parametrize(
  'hf_config, match',
  [
    ({'architectures': ['PerceiverForOpticalFlow']}, 'unsupported Hugging Face class'),
    ({}, 'unsupported Hugging Face class'),
    ({'hf_class': 'PerceiverForMaskedLM', 'hidden_act': 'relu'}, 'hidden_act'),
  ],
)
def test_unsupported_configs(hf_config, match):
  with pytest.raises(CheckpointFormatError, match=match):
    hf_config_to_reference(hf_config)


def test_unknown_and_malformed_keys_are_reported():
  good = {'perceiver.embeddings.latents': np.zeros((4, 8), np.float32)}
  with pytest.raises(CheckpointFormatError, match='optical_flow.x.weight, perceiver.foo'):
    hf.convert_hf_state_dict(dict(good, **{'perceiver.foo': np.zeros(1), 'optical_flow.x.weight': np.zeros(1)}))
  with pytest.raises(CheckpointFormatError, match='2-d'):
    hf.convert_hf_state_dict({'perceiver.encoder.cross_attention.mlp.dense1.weight': np.zeros(3)})
  with pytest.raises(CheckpointFormatError, match='config says'):
    hf.convert_state_dict(
      {'embedding_decoder.bias': np.zeros(3)}, {'hf_class': 'PerceiverForImageClassificationLearned'}
    )


def test_convert_inputs():
  out = hf.convert_inputs(
    {
      'pixel_values_nchw': np.zeros((2, 3, 16, 8)),
      'inputs': np.ones((2, 5), np.int64),
      'attention_mask': np.ones((2, 5), np.int64),
    }
  )
  assert out['images'].shape == (2, 16, 8, 3)
  assert out['inputs'].dtype == np.int32 and out['input_mask'].dtype == np.int32


def test_hub_safetensors_snapshot_loads_like_the_golden(golden_dir, tmp_path):
  _, state_dict, hf_config = _hf_golden(golden_dir, 'language_perceiver')
  save_safetensors(tmp_path / 'model.safetensors', state_dict, metadata={'format': 'pt'})
  (tmp_path / 'config.json').write_text(json.dumps(dict(hf_config, architectures=[hf_config.pop('hf_class')])))
  params, _, config = load_checkpoint(tmp_path / 'model.safetensors')
  ref_params, _, ref_config = load_checkpoint(golden_dir / 'hf' / 'language_perceiver.npz')
  assert config == ref_config
  np.testing.assert_array_equal(params['embed']['embeddings'], ref_params['embed']['embeddings'])
  no_config = tmp_path / 'alone' / 'model.safetensors'
  no_config.parent.mkdir()
  no_config.write_bytes((tmp_path / 'model.safetensors').read_bytes())
  assert load_checkpoint(no_config)[2] is None  # no config.json: the caller must pass one


# ---------------------------------------------------------------------------
# The conventions: a float64 numpy forward pass (tests/_hf_numpy_oracle.py) on
# the converted weights reproduces the HF goldens with the produced config,
# and each HF-specific switch is needed.
# ---------------------------------------------------------------------------


def _oracle_error(golden_dir, name, edit=None):
  data, _, _ = _hf_golden(golden_dir, name)
  params, state, config = load_checkpoint(golden_dir / 'hf' / f'{name}.npz')
  config = json.loads(json.dumps(config))
  if edit:
    edit(config)
  inputs = hf.convert_inputs({k.split('::', 1)[1]: data[k] for k in data.files if k.startswith('input::')})
  if config['model'] == 'masked_lm':
    out = oracle.masked_lm(inputs['inputs'], inputs['input_mask'], params, config)
  else:
    out = oracle.image_classifier(inputs['images'], params, state, config)
  return float(np.abs(out - data['output']).max())


@pytest.mark.parametrize('name', CASES)
def test_converted_weights_and_config_reproduce_hf(golden_dir, name):
  assert _oracle_error(golden_dir, name) < 1e-6


def _set(path, value):
  def edit(config):
    *parents, leaf = path
    for p in parents:
      config = config[p]
    config[leaf] = value

  return edit


@pytest.mark.parametrize(
  'name, path, value, min_err',
  [
    # transformers' declared layer_norm_eps (1e-12) is not what its LayerNorms use
    ('vision_perceiver_learned', ('layer_norm_eps',), 1e-12, 1e-5),
    ('language_perceiver', ('layer_norm_eps',), 1e-12, 1e-5),
    # tanh-approximate GELU (the reference's) instead of HF's exact erf GELU
    ('vision_perceiver_learned', ('hf_compat', 'gelu_approximate'), True, 1e-6),
    ('vision_perceiver_fourier', ('hf_compat', 'gelu_approximate'), True, 1e-6),
    # Haiku 'SAME' conv padding / 'SAME' max-pool instead of torch's
    ('vision_perceiver_conv', ('hf_compat', 'conv_stem_padding'), 'SAME', 1e-3),
    ('vision_perceiver_conv', ('hf_compat', 'conv_stem_pool_padding'), 'SAME', 1e-3),
    # the reference masks padded query rows in the MLM decoder, HF does not
    ('language_perceiver', ('hf_compat', 'decoder_query_mask'), True, 1e-3),
    # HF's learned-position classifier keeps the decoder query residual
    ('vision_perceiver_learned', ('decoder', 'use_query_residual'), False, 1e-3),
  ],
)
def test_each_hf_convention_matters(golden_dir, name, path, value, min_err):
  assert _oracle_error(golden_dir, name, _set(path, value)) > min_err


def test_oracle_agrees_with_jax_gelu():
  x = np.linspace(-4, 4, 101)
  for approximate in (True, False):
    np.testing.assert_allclose(
      oracle._gelu(x, approximate),  # pylint: disable=protected-access
      jax.nn.gelu(x, approximate=approximate),
      atol=1e-6,
    )
