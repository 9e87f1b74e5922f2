"""Whole models: structure, invariances, jit/grad, bf16 and input errors."""

import haiku as hk
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from perceiver import encoders
from perceiver import models
from tests.model.conftest import tiny_config

RNG = jax.random.PRNGKey(0)


def _images(b=2, h=6, w=6, c=3, seed=0):
  return {'image': jax.random.normal(jax.random.PRNGKey(seed), (b, h, w, c))}


def _init(cfg, inputs):
  """Builds and initialises a model, with noise on every parameter.

  Like the golden files: zero-initialised layers (the logits) would
  otherwise hide differences.
  """
  net = models.build_model(cfg)
  params, state = net.init(RNG, inputs, is_training=True)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(42), len(leaves))
  leaves = [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
  return net, jax.tree.unflatten(treedef, leaves), state


def _count(params):
  return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params))


PAPER_IMAGENET = dict(
  name='perceiver',
  input=dict(
    modality='image', prep_type='pixels', position_encoding='fourier', num_bands=64, max_resolution=(224, 224)
  ),
  encoder=dict(
    num_latents=512,
    latent_channels=1024,
    num_blocks=8,
    num_self_attends_per_block=6,
    num_cross_attends=8,
    cross_attend_placement='interleaved',
    share_cross_attends=True,
    share_latent_transformers=True,
    num_self_attend_heads=8,
    num_cross_attend_heads=1,
    cross_attend_widening_factor=1,
    self_attend_widening_factor=1,
  ),
  decoder=dict(name='average_project', num_classes=1000),
)


def _paper_imagenet_model_config():
  """The `paper` preset of configs/imagenet.py when present, else the paper's numbers."""
  try:
    from perceiver_configs import imagenet  # pylint: disable=import-outside-toplevel

    return imagenet.get_config('paper').model
  except ImportError:
    return PAPER_IMAGENET


def test_paper_imagenet_parameter_count():
  net = models.build_model(_paper_imagenet_model_config())
  params, _ = jax.eval_shape(lambda: net.init(RNG, {'image': jnp.zeros((1, 224, 224, 3))}, is_training=True))
  n = _count(params)
  assert abs(n - 44.9e6) <= 0.2e6, n
  # Weight sharing: exactly two cross-attention weight sets and one latent Transformer.
  crosses = sorted({k.split('/')[2] for k in params if '/cross_attention' in k})
  assert crosses == ['cross_attention', 'cross_attention_1']
  selfs = {k.split('/')[2] for k in params if '/self_attention' in k}
  assert len(selfs) == 6


def test_sharing_schedule_variants():
  x = _images()
  unshared = tiny_config(encoder=dict(share_cross_attends=False, share_latent_transformers=False))
  _, params, _ = _init(unshared, x)
  crosses = {k.split('/')[2] for k in params if 'cross_attention' in k}
  selfs = {k.split('/')[2] for k in params if 'self_attention' in k}
  assert crosses == {'cross_attention', 'cross_attention_1', 'cross_attention_2'}
  assert len(selfs) == 3 * 2
  _, shared, _ = _init(tiny_config(), x)
  assert {k.split('/')[2] for k in shared if 'cross_attention' in k} == {'cross_attention', 'cross_attention_1'}


def test_first_cross_attend_distinct_and_later_ones_shared():
  """Cross-attends 2..n use one weight set: its gradient sums n-1 uses."""
  x = _images()
  cfg = tiny_config(encoder=dict(num_cross_attends=3, num_blocks=3))
  net, params, state = _init(cfg, x)
  # Replace the shared set by the first set: the model must then equal an
  # unshared model whose three cross-attends all carry the first set's weights.
  tied = dict(params)
  for k in list(params):
    if '/cross_attention_1/' in k:
      tied[k] = params[k.replace('/cross_attention_1/', '/cross_attention/')]
  out_tied, _ = net.apply(tied, state, RNG, x, is_training=False)
  unshared_cfg = tiny_config(encoder=dict(num_cross_attends=3, num_blocks=3, share_cross_attends=False))
  net_u, params_u, state_u = _init(unshared_cfg, x)
  params_u = dict(params_u)
  for k in list(params_u):
    for i in ('1', '2'):
      if f'/cross_attention_{i}/' in k:
        params_u[k] = params[k.replace(f'/cross_attention_{i}/', '/cross_attention/')]
    if '/cross_attention/' in k or 'self_attention' in k or 'logits' in k or 'trainable' in k:
      params_u[k] = tied[k]
  out_u, _ = net_u.apply(params_u, state_u, RNG, x, is_training=False)
  np.testing.assert_allclose(out_tied, out_u, atol=1e-5)
  # The first cross-attend's weights are used once, the shared ones twice.
  out, _ = net.apply(params, state, RNG, x, is_training=False)
  assert not np.allclose(out, out_tied)


@pytest.mark.parametrize('pos', ['fourier', 'trainable'])
def test_permuting_inputs_with_their_positions_leaves_logits_unchanged(pos):
  x = _images(h=5, w=7)
  cfg = tiny_config(input=dict(position_encoding=pos, trainable_pos_channels=8))
  net, params, state = _init(cfg, x)
  out, _ = net.apply(params, state, RNG, x, is_training=False)
  permuted = tiny_config(input=dict(position_encoding=pos, trainable_pos_channels=8, permute_seed=3))
  net_p = models.build_model(permuted)
  out_p, _ = net_p.apply(params, state, RNG, x, is_training=False)
  np.testing.assert_allclose(out, out_p, atol=1e-5)
  assert np.abs(np.asarray(out)).max() > 0


@pytest.mark.parametrize(
  'inp',
  [
    dict(position_encoding='fourier'),
    dict(position_encoding='trainable', trainable_pos_channels=8, permute_seed=3),
    dict(prep_type='conv1x1', position_encoding='fourier'),
  ],
)
def test_projecting_positions_once_keeps_parameters_outputs_and_gradients(inp):
  # encoder.project_positions_once (the default) against the array path: the
  # same parameter tree, and outputs / gradients equal to float round-off,
  # through every one of the model's three cross-attends.
  x = _images(b=3, h=5, w=7)
  net, params, state = _init(tiny_config(input=dict(inp)), x)
  plain_cfg = tiny_config(input=dict(inp), encoder=dict(project_positions_once=False))
  plain = models.build_model(plain_cfg)
  assert jax.tree.map(np.shape, plain.init(RNG, x, is_training=True)[0]) == jax.tree.map(np.shape, params)
  run = lambda n, p: n.apply(p, state, RNG, x, is_training=True)[0]
  np.testing.assert_allclose(run(net, params), run(plain, params), atol=2e-5, rtol=1e-5)
  loss = lambda n: jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(run(n, p)))))
  g, g_plain = loss(net)(params), loss(plain)(params)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_plain)):
    np.testing.assert_allclose(a, b, atol=5e-5, rtol=1e-4)


def test_per_example_positions_are_not_projected_once():
  # Positions given per example (`pos`) differ across the batch: the array path.
  from perceiver import attention  # pylint: disable=import-outside-toplevel
  from perceiver import io_processors  # pylint: disable=import-outside-toplevel

  def prep(keep):
    pre = io_processors.ImagePreprocessor(
      prep_type='pixels', spatial_downsample=1, fourier_position_encoding_kwargs=dict(num_bands=2)
    )
    return pre(x, is_training=False, pos=pos, keep_pos_apart=keep)[0]

  x = jax.random.normal(RNG, (2, 4, 1, 3))  # [B, H, W, C]
  pos = jax.random.uniform(RNG, (2, 4, 2), minval=-1, maxval=1)  # [B, M, 2]: each example its own
  kept = hk.transform(lambda: prep(True)).apply({}, None)
  assert not isinstance(kept, attention.InputsWithPos)
  np.testing.assert_array_equal(kept, hk.transform(lambda: prep(False)).apply({}, None))


def test_masked_inputs_do_not_affect_outputs(golden_dir):
  from perceiver_tools import golden  # pylint: disable=import-outside-toplevel

  case = golden.load_golden(str(golden_dir / 'official' / 'language_masked_lm.npz'))
  model = models.build_from_reference_config(case.config)
  tokens = jnp.asarray(case.inputs['inputs'])
  mask = jnp.asarray(case.inputs['input_mask'])
  assert int(mask.min()) == 0, 'the golden input should have padding'
  run = lambda t: model.net.apply(case.params, case.state, RNG, t, mask, is_training=False)[0]
  out = run(tokens)
  scrambled = jnp.where(mask == 0, (tokens + 17) % 262, tokens)
  assert not np.array_equal(scrambled, tokens)
  out2 = run(scrambled)
  valid = np.asarray(mask, bool)
  np.testing.assert_allclose(np.asarray(out)[valid], np.asarray(out2)[valid], atol=1e-5)


@pytest.mark.slow  # Moved out of the default run (its time budget); .ci/run runs it.
def test_chunked_cross_attention_model_equals_plain():
  x = _images(h=8, w=8)
  net, params, state = _init(tiny_config(), x)
  chunked = models.build_model(tiny_config(encoder=dict(attention_chunk_size=16)))
  loss = lambda n: lambda p: jnp.sum(n.apply(p, state, RNG, x, is_training=False)[0] ** 2)
  np.testing.assert_allclose(
    net.apply(params, state, RNG, x, is_training=False)[0],
    chunked.apply(params, state, RNG, x, is_training=False)[0],
    atol=1e-5,
  )
  g1, g2 = jax.grad(loss(net))(params), jax.grad(loss(chunked))(params)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


def test_remat_and_loops_do_not_change_numbers():
  x = _images()
  net, params, state = _init(tiny_config(), x)
  remat = models.build_model(tiny_config(encoder=dict(remat=True)))
  np.testing.assert_allclose(
    net.apply(params, state, RNG, x, is_training=False)[0],
    remat.apply(params, state, RNG, x, is_training=False)[0],
    atol=1e-6,
  )


def _looped_encoder_loss(use_loops: bool):
  def loss(x):
    enc = encoders.PerceiverEncoder(
      num_self_attends_per_block=2,
      num_blocks=3,
      z_index_dim=8,
      num_z_channels=16,
      num_self_attend_heads=2,
      num_cross_attends=1,
      cross_attend_placement='start',
      use_loops=use_loops,
    )
    return jnp.sum(enc(x, enc.latents(x), is_training=True) ** 2)

  return hk.transform(loss)


def test_looped_blocks_save_only_matmuls_and_keep_the_gradients():
  """Blocks 1..2 run in a loop whose body keeps only its matmul outputs for
  the backward pass (encoders._SAVE_MATMULS); the gradients equal the
  unrolled encoder's, which keeps everything."""
  x = jax.random.normal(RNG, (2, 12, 5))
  looped, unrolled = _looped_encoder_loss(True), _looped_encoder_loss(False)
  params = looped.init(RNG, x)
  g_loop = jax.grad(lambda p: looped.apply(p, None, x))(params)
  g_unrolled = jax.grad(lambda p: unrolled.apply(p, None, x))(params)
  assert jax.tree.structure(g_loop) == jax.tree.structure(g_unrolled)
  # float32 sums in another order (loop accumulators vs unrolled adds), so
  # the tolerance is relative to the largest gradient (some are ~0 in exact
  # arithmetic: a key bias does not change a softmax).
  scale = max(float(np.abs(b).max()) for b in jax.tree.leaves(g_unrolled))
  for a, b in zip(jax.tree.leaves(g_loop), jax.tree.leaves(g_unrolled)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * scale)
  policies = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in ('checkpoint', 'remat', 'remat2'):
        policies.append(eqn.params.get('policy'))
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        walk(sub)

  walk(jax.make_jaxpr(lambda p: looped.apply(p, None, x))(params).jaxpr)
  assert policies == [jax.checkpoint_policies.dots_with_no_batch_dims_saveable]


MODALITY_CASES = {
  'image_pixels': (dict(), {'image': (2, 6, 6, 3)}),
  'image_conv1x1_learned': (
    dict(
      prep_type='conv1x1', num_channels=8, position_encoding='trainable', trainable_pos_channels=8, project_pos_dim=6
    ),
    {'image': (2, 6, 6, 3)},
  ),
  'image_conv': (dict(prep_type='conv', spatial_downsample=4, num_channels=8), {'image': (2, 16, 16, 3)}),
  'image_patches': (dict(prep_type='patches', spatial_downsample=2, num_channels=8), {'image': (2, 8, 8, 3)}),
  'video_patches': (
    dict(modality='video', prep_type='patches', spatial_downsample=2, temporal_downsample=2),
    {'video': (2, 4, 8, 8, 3)},
  ),
  'audio_patches': (dict(modality='audio', prep_type='patches', samples_per_patch=16), {'audio': (2, 128)}),
  'audio_mel': (dict(modality='audio', prep_type='mel', mel_patch_shape=(2, 2)), {'audio': (2, 8, 6)}),
  'points': (dict(modality='points', num_bands=4, max_resolution=(64, 64, 64)), {'points': (2, 32, 3)}),
  'audio_video': (
    dict(
      modality='audio_video',
      video_dropout_prob=0.3,
      audio=dict(prep_type='patches', samples_per_patch=16, num_bands=4),
      video=dict(prep_type='patches', spatial_downsample=4, temporal_downsample=2, num_bands=2),
    ),
    {'audio': (2, 64), 'video': (2, 4, 8, 8, 3)},
  ),
}


# Every modality with the Perceiver head, and the Perceiver IO query decoder
# once (the decoder does not depend on the modality).
# The heaviest compiles run with the slow tests (.ci/run still runs them).
_SLOW_JIT_GRAD = {'video_patches', 'audio_video', 'points', 'image_conv'}
JIT_GRAD_CASES = [
  pytest.param(name, 'perceiver', marks=[pytest.mark.slow] if name in _SLOW_JIT_GRAD else [])
  for name in sorted(MODALITY_CASES)
] + [pytest.param('image_pixels', 'perceiver_io', marks=pytest.mark.slow)]


@pytest.mark.parametrize('name,head', JIT_GRAD_CASES)
def test_jit_and_grad_through_every_model(name, head):
  inp, shapes = MODALITY_CASES[name]
  # Small on purpose: this sweep is about tracing every path under jit/grad.
  cfg = tiny_config(input=inp, encoder=dict(num_blocks=2, num_cross_attends=2, num_self_attends_per_block=1))
  cfg['name'] = head
  cfg['decoder'] = dict(name='average_project' if head == 'perceiver' else 'classification', num_classes=5)
  inputs = {k: jax.random.normal(jax.random.PRNGKey(i), s) for i, (k, s) in enumerate(shapes.items())}
  net = models.build_model(cfg)
  params, state = jax.jit(net.init, static_argnames='is_training')(RNG, inputs, is_training=True)

  @jax.jit
  def loss(p, s, x, rng):
    logits, _ = net.apply(p, s, rng, x, is_training=True)
    return jnp.mean(jax.nn.log_softmax(logits)[:, 0]), logits

  grads, logits = jax.grad(loss, has_aux=True)(params, state, inputs, RNG)
  leaves = jax.tree.leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert sum(float(np.abs(g).sum()) for g in leaves) > 0
  assert logits.shape == (2, 5) and logits.dtype == jnp.float32


@pytest.mark.slow  # Moved out of the default run (its time budget); .ci/run runs it.
def test_jit_and_grad_through_reference_models(golden_dir):
  from perceiver_tools import golden  # pylint: disable=import-outside-toplevel

  for path in sorted((golden_dir / 'official').glob('*.npz')):
    case = golden.load_golden(str(path))
    model = models.build_from_reference_config(case.config)
    args = [jnp.asarray(case.inputs[n]) for n in model.input_names]

    def loss(p, s):
      out, _ = model.net.apply(p, s, RNG, *args, is_training=True)
      return sum(jnp.sum(jnp.square(o.astype(jnp.float32))) for o in jax.tree.leaves(out))

    grads = jax.jit(jax.grad(loss))(case.params, case.state)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads)), path.name


@pytest.mark.slow  # Moved out of the default run (its time budget); .ci/run runs it.
def test_bf16_forward():
  x = _images(h=8, w=8)
  net, params, state = _init(tiny_config(), x)
  bf16 = models.build_model(dict(tiny_config(), compute_dtype='bfloat16'))
  out32, _ = net.apply(params, state, RNG, x, is_training=False)
  out16, _ = jax.jit(lambda p, s, x: bf16.apply(p, s, RNG, x, is_training=False))(params, state, x)
  assert out16.dtype == jnp.float32
  assert np.all(np.isfinite(out16))
  np.testing.assert_allclose(out16, out32, atol=0.1 * float(np.abs(out32).max()) + 1e-3)
  grads = jax.grad(lambda p: jnp.sum(bf16.apply(p, state, RNG, x, is_training=True)[0]))(params)
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))


class TestBadInput:
  def test_wrong_rank(self):
    net = models.build_model(tiny_config())
    with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
      net.init(RNG, {'image': jnp.zeros((2, 6, 3))}, is_training=True)

  def test_wrong_channels_after_init(self):
    net, params, state = _init(tiny_config(), _images())
    with pytest.raises(
      ValueError, match=r"input 'image' has per-example shape \(6, 6, 4\).*initialised for \(6, 6, 3\)"
    ):
      net.apply(params, state, RNG, _images(c=4), is_training=False)

  def test_wrong_dtype(self):
    net = models.build_model(tiny_config())
    with pytest.raises(TypeError, match='floating point'):
      net.init(RNG, {'image': jnp.zeros((2, 6, 6, 3), jnp.int32)}, is_training=True)

  def test_missing_modality(self):
    net = models.build_model(tiny_config())
    with pytest.raises(KeyError, match="needs inputs \\['image'\\]"):
      net.init(RNG, {'points': jnp.zeros((2, 6, 3))}, is_training=True)

  def test_heads_not_dividing_channels(self):
    with pytest.raises(ValueError, match='not divisible by num_self_attend_heads=3'):
      models.build_model(tiny_config(encoder=dict(num_self_attend_heads=3)))
    net = models.build_model(tiny_config(encoder=dict(num_cross_attend_heads=2)))
    net.init(RNG, _images(c=2), is_training=True)  # 2 RGB + 18 position channels: 20 = 2 x 10.
    with pytest.raises(ValueError, match='qk_channels=21 is not divisible by num_heads=2'):
      net.init(RNG, _images(c=3), is_training=True)  # 21 channels cannot be split over 2 heads.

  def test_unknown_config_keys(self):
    with pytest.raises(ValueError, match=r"model.encoder: unknown key\(s\) \['num_latent'\]"):
      models.build_model(tiny_config(encoder=dict(num_latent=3)))
    with pytest.raises(ValueError, match='modality must be one of'):
      models.build_model(tiny_config(input=dict(modality='smell')))

  def test_checkpoint_for_another_config(self, golden_dir):
    from perceiver_tools import golden  # pylint: disable=import-outside-toplevel
    from perceiver.checkpoints.errors import CheckpointMismatchError  # pylint: disable=import-outside-toplevel

    case = golden.load_golden(str(golden_dir / 'official' / 'imagenet_fourier_position_encoding.npz'))
    case.config['encoder'] = dict(case.config['encoder'], num_self_attends_per_block=3, z_index_dim=16)
    # One more self-attend layer (16 arrays) and 16 latents instead of 8.
    with pytest.raises(CheckpointMismatchError, match=r'16 missing, 0 unexpected, 1 mis-shaped') as err:
      golden.run_case(case)
    assert err.value.mis_shaped[0][0].endswith('pos_embs')
