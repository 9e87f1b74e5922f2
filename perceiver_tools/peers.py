"""Worker processes of `scripts/peer_bench.py`: one implementation, one model.

Run by path (`python perceiver_tools/peers.py --impl=hf`), possibly under
another interpreter (a PyTorch virtual environment without JAX or absl), so
the module's top level imports only the standard library and the argument
parsing is by hand. Protocol, one JSON object per line:

  stdin  line 1: the spec {model: <our model config as a dict>, batch_size,
                 input_size: [H, W], mode: 'train'|'infer', threads,
                 reference_path, cpus, device: 'cpu'|'gpu'}
  stdout         {"ready": true, num_params, setup_s, rss_bytes, threads, ...}
                 or {"unavailable": "<why>"} (the peer cannot be imported)
  stdin          {"steps": k}   -> stdout {"times": [k step seconds]}
  stdin          {"quit": true} -> stdout {"rss_peak_bytes": ...}; exit

Every implementation is timed the same way: a train step is forward +
softmax cross-entropy + backward + global-norm clipping at 10 + AdamW
(lr 1e-3, weight decay 0.1), waited for; an inference step is the forward
pass in eval mode. Models are built from OUR config (`spec['model']`); how
each field maps onto a peer is written next to each builder.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any, Callable, Dict, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Spec = Dict[str, Any]


def _rss_peak() -> int:
  """This process's resident high-water mark (VmHWM).

  Not getrusage's ru_maxrss: Linux carries that across exec, so a worker
  started by a large parent (the driver, with JAX and TensorFlow loaded)
  would report at least the parent's size.
  """
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith('VmHWM:'):
        return int(line.split()[1]) * 1024
  return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _rss_now() -> int:
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _reply(obj: Dict[str, Any]) -> None:
  sys.stdout.write(json.dumps(obj) + '\n')
  sys.stdout.flush()


def _input_channels(spec: Spec) -> int:
  """Pixels (3) + 2-D Fourier features: per axis sin/cos of K bands + the position."""
  inp = spec['model']['input']
  return 3 + 2 * (2 * int(inp['num_bands']) + 1)


# ---------------------------------------------------------------------------
# Ours (JAX/Haiku)
# ---------------------------------------------------------------------------


def _build_ours(spec: Spec) -> Tuple[Callable[[], Any], int, Dict[str, Any]]:
  sys.path.insert(0, REPO)
  from perceiver import host_memory  # pylint: disable=g-import-not-at-top

  # As the launcher does by default (experiments/main.py --host_memory).
  reused = spec.get('host_memory', 'reuse') == 'reuse' and host_memory.reuse_freed_memory()
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from perceiver import models  # pylint: disable=g-import-not-at-top

  if spec.get('attention') == 'plain':
    # A/B of the fused-attention selection (peer_bench --attention_ab): every
    # call takes the plain einsum path, as on a CPU. Patched here, in the
    # benchmark's own process, so the library keeps no switch for it.
    from perceiver import attention  # pylint: disable=g-import-not-at-top

    attention.fused_attention_implementation = lambda *args, **kwargs: None
  batch, (height, width) = int(spec['batch_size']), spec['input_size']
  net = models.build_model(spec['model'])
  rng = jax.random.PRNGKey(0)
  images = jax.random.normal(rng, (batch, height, width, 3), jnp.float32)
  labels = jax.random.randint(rng, (batch,), 0, int(spec['model']['decoder']['num_classes']))
  params, state = jax.jit(lambda x: net.init(rng, {'image': x}, is_training=True))(images[:1])
  num_params = int(sum(x.size for x in jax.tree.leaves(params)))
  extra = {
    'jax': jax.__version__,
    'backend': jax.default_backend(),
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
    'host_memory': 'reuse' if reused else 'system',
  }

  if spec['mode'] == 'infer':
    fwd = jax.jit(lambda p, s, x: net.apply(p, s, None, {'image': x}, is_training=False)[0])
    fwd = host_memory.compile_ahead(fwd, params, state, images)  # as the training loop compiles
    return lambda: jax.block_until_ready(fwd(params, state, images)), num_params, extra

  tx = optax.chain(optax.clip_by_global_norm(10.0), optax.adamw(1e-3, weight_decay=0.1))

  def loss_fn(p, s, x, y):
    logits, s = net.apply(p, s, None, {'image': x}, is_training=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), s

  def step(carry, x, y):
    p, s, o = carry
    (loss, s), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, s, x, y)
    updates, o = tx.update(grads, o, p)
    return (optax.apply_updates(p, updates), s, o), loss

  holder = [(params, state, tx.init(params))]
  from perceiver_tools import perf  # pylint: disable=g-import-not-at-top

  # Matmul FLOPs of one step (traced, not compiled): the MFU numerator. Traced
  # with every attention call on the plain einsum path: a fused (cuDNN) call
  # is one opaque primitive whose matmuls perf cannot see, and the model's
  # FLOPs do not depend on which kernel computes them.
  from perceiver import attention  # pylint: disable=g-import-not-at-top

  selector = attention.fused_attention_implementation
  attention.fused_attention_implementation = lambda *args, **kwargs: None
  try:
    extra['matmul_flops'] = perf.matmul_flops(step, holder[0], images, labels).matmul
  finally:
    attention.fused_attention_implementation = selector
  step = host_memory.compile_ahead(jax.jit(step, donate_argnums=(0,)), holder[0], images, labels)  # as the loop does

  def call():
    holder[0], loss = step(holder[0], images, labels)
    jax.block_until_ready(loss)

  return call, num_params, extra


# ---------------------------------------------------------------------------
# Reference: DeepMind's Perceiver IO code (a user's checkout, not on PyPI)
# ---------------------------------------------------------------------------


def _build_reference(spec: Spec) -> Tuple[Callable[[], Any], int, Dict[str, Any]]:
  """DeepMind's `perceiver/perceiver.py` + `io_processors.py` from a checkout.

  Their package is also called `perceiver`, which is why it runs in a worker
  of its own with the checkout first on sys.path (ours is not imported).
  Their encoder has one cross-attend at the start, so only Perceiver IO
  configs map onto it.
  """
  path = spec.get('reference_path') or ''
  if not path or not os.path.isfile(os.path.join(path, 'perceiver', 'perceiver.py')):
    raise ImportError('--reference_path must be a deepmind-research checkout holding perceiver/perceiver.py')
  sys.path.insert(0, os.path.abspath(path))
  import haiku as hk  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from perceiver import io_processors, perceiver  # pylint: disable=g-import-not-at-top

  model, enc = spec['model'], spec['model']['encoder']
  if model['name'] != 'perceiver_io' or int(enc['num_cross_attends']) != 1:
    raise ValueError('the reference encoder has a single cross-attend: Perceiver IO configs only')
  inp = model['input']
  latents, channels = int(enc['num_latents']), int(enc['latent_channels'])

  def forward(images, is_training):
    preprocessor = io_processors.ImagePreprocessor(
      position_encoding_type='fourier',
      prep_type='pixels',
      spatial_downsample=1,
      fourier_position_encoding_kwargs=dict(
        concat_pos=True, max_resolution=tuple(inp['max_resolution']), num_bands=int(inp['num_bands']), sine_only=False
      ),
    )
    encoder = perceiver.PerceiverEncoder(
      num_self_attends_per_block=int(enc['num_self_attends_per_block']),
      num_blocks=int(enc['num_blocks']),
      z_index_dim=latents,
      num_z_channels=channels,
      num_cross_attend_heads=int(enc['num_cross_attend_heads']),
      num_self_attend_heads=int(enc['num_self_attend_heads']),
      cross_attend_widening_factor=int(enc['cross_attend_widening_factor']),
      self_attend_widening_factor=int(enc['self_attend_widening_factor']),
      dropout_prob=0.0,
      z_pos_enc_init_scale=float(enc['latent_init_scale']),
      cross_attention_shape_for_attn=enc['cross_attention_shape_for_attn'],
      name='encoder',
    )
    decoder = perceiver.ClassificationDecoder(
      int(model['decoder']['num_classes']),
      num_z_channels=channels,
      position_encoding_type='trainable',
      trainable_position_encoding_kwargs=dict(num_channels=channels, init_scale=0.02),
      use_query_residual=True,
    )
    return perceiver.Perceiver(encoder=encoder, decoder=decoder, input_preprocessor=preprocessor)(
      images, is_training=is_training
    )

  net = hk.transform(forward)
  batch, (height, width) = int(spec['batch_size']), spec['input_size']
  rng = jax.random.PRNGKey(0)
  images = jax.random.normal(rng, (batch, height, width, 3), jnp.float32)
  labels = jax.random.randint(rng, (batch,), 0, int(model['decoder']['num_classes']))
  params = jax.jit(lambda x: net.init(rng, x, True))(images[:1])
  num_params = int(sum(x.size for x in jax.tree.leaves(params)))
  extra = {'jax': jax.__version__}
  if spec['mode'] == 'infer':
    fwd = jax.jit(lambda p, x: net.apply(p, rng, x, False))
    return lambda: jax.block_until_ready(fwd(params, images)), num_params, extra
  tx = optax.chain(optax.clip_by_global_norm(10.0), optax.adamw(1e-3, weight_decay=0.1))

  def step(carry, x, y):
    p, o = carry
    # Their attention calls hk.dropout whenever is_training, even at rate 0,
    # so a training apply needs a key (a fixed one: nothing is dropped).
    logits = lambda p: net.apply(p, rng, x, True)
    loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(logits(p), y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, o = tx.update(grads, o, p)
    return (optax.apply_updates(p, updates), o), loss

  step = jax.jit(step, donate_argnums=(0,))
  holder = [(params, tx.init(params))]

  def call():
    holder[0], loss = step(holder[0], images, labels)
    jax.block_until_ready(loss)

  return call, num_params, extra


# ---------------------------------------------------------------------------
# PyTorch peers
# ---------------------------------------------------------------------------


def _torch_device(spec: Spec) -> str:
  return 'cuda' if spec.get('device') == 'gpu' else 'cpu'


def _torch_step(model: Any, forward: Callable[[], Any], labels: Any, spec: Spec) -> Callable[[], Any]:
  """The step closure; bf16 compute (float32 weights) through autocast when
  our config computes in bf16, as ours does with jmp."""
  import contextlib  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  device = _torch_device(spec)
  bf16 = spec['model'].get('compute_dtype') == 'bfloat16'
  cast = lambda: torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
  if spec['mode'] == 'infer':
    model.eval()

    def infer():
      with torch.inference_mode(), cast():
        forward()
      sync()

    return infer
  model.train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)

  def train():
    opt.zero_grad(set_to_none=True)
    with cast():
      logits = forward()
    loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    opt.step()
    sync()

  return train


def _torch_inputs(spec: Spec, channels_first: bool):
  import torch  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  batch, (height, width) = int(spec['batch_size']), spec['input_size']
  shape = (batch, 3, height, width) if channels_first else (batch, height, width, 3)
  labels = torch.randint(0, int(spec['model']['decoder']['num_classes']), (batch,))
  device = _torch_device(spec)
  return torch.randn(*shape).to(device), labels.to(device)


def _build_hf(spec: Spec) -> Tuple[Callable[[], Any], int, Dict[str, Any]]:
  """Hugging Face `transformers` PerceiverModel, assembled like its
  PerceiverForImageClassificationFourier but from our config's sizes."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from transformers.models.perceiver import modeling_perceiver as hf  # pylint: disable=g-import-not-at-top

  model, enc, inp = spec['model'], spec['model']['encoder'], spec['model']['input']
  if model['name'] != 'perceiver_io' or int(enc['num_cross_attends']) != 1:
    raise ValueError('the Hugging Face encoder has a single cross-attend: Perceiver IO configs only')
  channels = int(enc['latent_channels'])
  cfg = transformers.PerceiverConfig(
    num_latents=int(enc['num_latents']),
    d_latents=channels,
    d_model=_input_channels(spec),
    # HF's encoder runs ONE set of self-attends num_blocks times (shared),
    # like ours with share_latent_transformers=True.
    num_blocks=int(enc['num_blocks']),
    num_self_attends_per_block=int(enc['num_self_attends_per_block']),
    num_self_attention_heads=int(enc['num_self_attend_heads']),
    num_cross_attention_heads=int(enc['num_cross_attend_heads']),
    cross_attention_shape_for_attention=enc['cross_attention_shape_for_attn'],
    self_attention_widening_factor=int(enc['self_attend_widening_factor']),
    cross_attention_widening_factor=int(enc['cross_attend_widening_factor']),
    attention_probs_dropout_prob=0.0,
    num_labels=int(model['decoder']['num_classes']),
    use_query_residual=True,
  )
  net = hf.PerceiverModel(
    cfg,
    input_preprocessor=hf.PerceiverImagePreprocessor(
      cfg,
      prep_type='pixels',
      spatial_downsample=1,
      fourier_position_encoding_kwargs=dict(
        concat_pos=True, max_resolution=tuple(inp['max_resolution']), num_bands=int(inp['num_bands']), sine_only=False
      ),
    ),
    decoder=hf.PerceiverClassificationDecoder(
      cfg,
      num_channels=channels,
      use_query_residual=True,
      trainable_position_encoding_kwargs=dict(num_channels=channels, index_dims=1),
    ),
  )
  net.to(_torch_device(spec))
  images, labels = _torch_inputs(spec, channels_first=True)
  num_params = sum(p.numel() for p in net.parameters())
  call = _torch_step(net, lambda: net(inputs=images).logits, labels, spec)
  return call, num_params, {'torch': torch.__version__, 'transformers': transformers.__version__}


def _build_lucidrains(spec: Spec) -> Tuple[Callable[[], Any], int, Dict[str, Any]]:
  """lucidrains' `perceiver-pytorch` Perceiver (the original, interleaved one).

  Mapping: depth = our num_cross_attends (= num_blocks), self_per_cross_attn
  = self-attends per block, weight_tie_layers shares layers 2..depth, cross
  head width = the input channels (our shape_for_attn='kv'), latent head
  width = latent channels / heads. Its feed-forward is a GEGLU of width 4x;
  ours is Linear -> GELU -> Linear of width `widening_factor`x, so the
  feed-forward class is swapped for that before the model is built (same
  FLOPs). Remaining parameter differences (explained in the ready line):
  its q/k/v projections have no bias; with weight tying its FIRST layer's
  self-attends are separate, where ours shares all latent Transformers; its
  head has a LayerNorm before the classifier.
  """
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import perceiver_pytorch  # pylint: disable=g-import-not-at-top
  from perceiver_pytorch import perceiver_pytorch as lr  # pylint: disable=g-import-not-at-top

  model, enc, inp = spec['model'], spec['model']['encoder'], spec['model']['input']
  if model['name'] != 'perceiver':
    raise ValueError("only the original Perceiver (model.name='perceiver') maps onto lucidrains'")
  if int(enc['num_cross_attends']) != int(enc['num_blocks']):
    raise ValueError('lucidrains interleaves one cross-attend per block: need num_cross_attends == num_blocks')
  widening = int(enc['self_attend_widening_factor'])

  class MatchedFeedForward(nn.Module):
    """Our MLP's shape: Linear(C, wC) -> GELU -> Linear(wC, C)."""

    def __init__(self, dim, mult=4, dropout=0.0):
      del mult, dropout
      super().__init__()
      self.net = nn.Sequential(
        nn.Linear(dim, dim * widening), nn.GELU(approximate='tanh'), nn.Linear(dim * widening, dim)
      )

    def forward(self, x):
      return self.net(x)

  lr.FeedForward = MatchedFeedForward
  channels, heads = int(enc['latent_channels']), int(enc['num_self_attend_heads'])
  net = lr.Perceiver(
    num_freq_bands=int(inp['num_bands']),
    depth=int(enc['num_blocks']),
    max_freq=float(inp['max_resolution'][0]),
    input_channels=3,
    input_axis=2,
    num_latents=int(enc['num_latents']),
    latent_dim=channels,
    cross_heads=int(enc['num_cross_attend_heads']),
    latent_heads=heads,
    cross_dim_head=_input_channels(spec) // int(enc['num_cross_attend_heads']),
    latent_dim_head=channels // heads,
    num_classes=int(model['decoder']['num_classes']),
    weight_tie_layers=bool(enc['share_cross_attends']),
    self_per_cross_attn=int(enc['num_self_attends_per_block']),
  )
  net.to(_torch_device(spec))
  images, labels = _torch_inputs(spec, channels_first=False)
  count = lambda module: sum(p.numel() for p in module.parameters())
  num_params = count(net)
  # The count ours should have: minus the unshared first latent Transformer
  # (when ours shares all of them) and the head's LayerNorm, plus the q/k/v
  # biases lucidrains leaves out.
  first = count(net.layers[0].self_attns) if enc['share_latent_transformers'] else 0
  dropped = set(map(id, net.layers[0].self_attns.modules())) if first else set()
  biases = sum(
    m.to_q.out_features + m.to_kv.out_features
    for m in net.modules()
    if isinstance(m, lr.Attention) and id(m) not in dropped
  )
  comparable = num_params - first - count(net.to_logits[1]) + biases
  note = (
    f'lucidrains has {first} parameters in its separate first latent Transformer, '
    f'{count(net.to_logits[1])} in its head LayerNorm, and lacks {biases} q/k/v biases'
  )
  call = _torch_step(net, lambda: net(images), labels, spec)
  version = getattr(perceiver_pytorch, '__version__', '')
  return (
    call,
    num_params,
    {'torch': torch.__version__, 'perceiver_pytorch': version, 'comparable_params': comparable, 'params_note': note},
  )


BUILDERS = {'ours': _build_ours, 'reference': _build_reference, 'hf': _build_hf, 'lucidrains': _build_lucidrains}


def worker(impl: str) -> int:
  spec = json.loads(sys.stdin.readline())
  threads = int(spec.get('threads') or 0)
  if spec.get('cpus'):
    # Before JAX/PyTorch start: both size their thread pools from the CPUs
    # this process may run on.
    os.sched_setaffinity(0, [int(c) for c in spec['cpus']])
  if spec.get('compilation_cache_dir') and impl in ('ours', 'reference'):
    # As the launcher sets it, so the timed worker loads what a restarted run loads.
    from perceiver import compilation_cache  # pylint: disable=g-import-not-at-top

    compilation_cache.use(spec['compilation_cache_dir'])
  t0 = time.perf_counter()
  try:
    if impl in ('hf', 'lucidrains'):
      import torch  # pylint: disable=g-import-not-at-top

      if threads:
        torch.set_num_threads(threads)
    call, num_params, extra = BUILDERS[impl](spec)
  except ImportError as e:
    _reply({'unavailable': f'{impl}: cannot import ({type(e).__name__}: {e})'})
    return 0
  except (ValueError, RuntimeError) as e:  # RuntimeError: perceiver.onednn.OneDNNUnavailable
    _reply({'unavailable': f'{impl}: {e}'})
    return 0
  call()  # Warm-up: compiles (DeepMind's code) or allocates.
  if impl in ('hf', 'lucidrains'):
    import torch  # pylint: disable=g-import-not-at-top

    extra['threads'] = torch.get_num_threads()
  _reply(dict(ready=True, num_params=num_params, setup_s=time.perf_counter() - t0, rss_bytes=_rss_now(), **extra))
  for line in sys.stdin:
    cmd = json.loads(line)
    if cmd.get('quit'):
      break
    times = []
    for _ in range(int(cmd['steps'])):
      start = time.perf_counter()
      call()
      times.append(time.perf_counter() - start)
    _reply({'times': times})
  _reply({'rss_peak_bytes': _rss_peak(), 'rss_bytes': _rss_now(), 'device_peak_bytes': _device_peak(impl)})
  return 0


def _device_peak(impl: str) -> Any:
  """Peak accelerator memory of this process (None on CPU)."""
  if impl in ('hf', 'lucidrains'):
    import torch  # pylint: disable=g-import-not-at-top

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
  import jax  # pylint: disable=g-import-not-at-top

  stats = jax.devices()[0].memory_stats() if jax.default_backend() != 'cpu' else None
  return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


if __name__ == '__main__':
  args = [a for a in sys.argv[1:] if a.startswith('--impl=')]
  if len(args) != 1 or args[0].split('=', 1)[1] not in BUILDERS:
    sys.stderr.write(f'usage: peers.py --impl={{{",".join(BUILDERS)}}} < spec\n')
    sys.exit(2)
  sys.exit(worker(args[0].split('=', 1)[1]))
