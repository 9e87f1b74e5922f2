"""Structured attacks on the checkpoint readers (not random bytes).

Each attack of issue 12's table is rebuilt here as a small file, and
hypothesis strategies build more of the same kind: nested and memo-shared
pickle structures, torch views that lie about their storage, safetensors
headers with overlapping ranges, deeply nested JSON. Every case must end with
a ``CheckpointError`` naming the file (or a correct result), and its cost is
measured as peak bytes allocated (tracemalloc) per input byte, not in
seconds. The worst ratio of the run is printed at the end of the module
(``pytest -s``) and quoted in docs/reliability.md.
"""

import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import _pickle_asm as asm
from perceiver.checkpoints import CheckpointError, CheckpointFormatError, load_checkpoint, load_torch_state_dict
from perceiver.checkpoints import npz_format
from perceiver.checkpoints.safe_pickle import loads_deepmind_checkpoint
from perceiver.checkpoints.safetensors_io import loads_safetensors
from test_torch_zip import _data_pkl, _tensor, _write_zip

# Peak allocation allowed: BYTES_PER_INPUT_BYTE x the file plus a fixed
# allowance for the interpreter's own bookkeeping on tiny files.
BYTES_PER_INPUT_BYTE = 8
FIXED_ALLOWANCE = 1 << 20
_STATS = {'attacks': 0, 'worst_ratio': 0.0, 'worst_case': '', 'worst_peak': 0, 'worst_small_peak': 0}
_RATIO_FROM = 64 * 1024  # below this the interpreter's fixed cost dominates the ratio

_SETTINGS = settings(
  max_examples=60,
  deadline=None,
  derandomize=True,
  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope='module', autouse=True)
def _report():
  yield
  print(
    f'\nhostile structures: {_STATS["attacks"]} attacks; inputs >= 64 KB: worst peak '
    f'{_STATS["worst_peak"]} bytes = {_STATS["worst_ratio"]:.2f} bytes per input byte '
    f'({_STATS["worst_case"]}); smaller inputs: worst peak {_STATS["worst_small_peak"]} bytes'
  )


def _budgeted(what, size, load, *, expect_error=True):
  """Runs ``load()`` under tracemalloc; checks the error and the allocation budget."""
  tracemalloc.start()
  try:
    error = None
    try:
      load()
    except CheckpointError as e:
      error = e
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  _STATS['attacks'] += 1
  ratio = peak / max(size, 1)
  if size >= _RATIO_FROM and ratio > _STATS['worst_ratio']:
    _STATS.update(worst_ratio=ratio, worst_case=what, worst_peak=peak)
  elif size < _RATIO_FROM:
    _STATS['worst_small_peak'] = max(_STATS['worst_small_peak'], peak)
  assert peak <= BYTES_PER_INPUT_BYTE * size + FIXED_ALLOWANCE, (what, peak, size)
  if expect_error:
    assert error is not None, f'{what}: loaded without error'
  return error


# ---------------------------------------------------------------------------
# The table of issue 12, one attack each.
# ---------------------------------------------------------------------------


def _shared_tuple(levels):
  """A tuple nested ``levels`` deep, each level the previous one twice (DUP)."""
  return asm.unicode('a') + b'2\x86' * levels  # DUP, TUPLE2


def test_tuple_key_of_64_shared_levels_is_refused_at_once():
  data = asm.PROTO2 + asm.EMPTY_DICT + _shared_tuple(64) + asm.NONE + b's' + asm.STOP
  assert len(data) <= 140  # the file was 137 bytes
  error = _budgeted(
    '64-level shared tuple key', len(data), lambda: loads_deepmind_checkpoint(data, source='key.pystate')
  )
  assert 'key.pystate' in str(error) and 'nested deeper' in str(error)


@pytest.mark.parametrize('levels', [24, 30])
def test_tuple_key_within_the_depth_cap_is_refused_by_type(levels):
  data = asm.PROTO2 + asm.EMPTY_DICT + _shared_tuple(levels) + asm.NONE + b's' + asm.STOP
  error = _budgeted(
    f'{levels}-level shared tuple key', len(data), lambda: loads_deepmind_checkpoint(data, source='key.pystate')
  )
  assert 'dict key of type tuple' in str(error)


@pytest.mark.parametrize('levels', [24, 30, 64])
def test_shared_tuple_inside_numpy_dtype_is_never_formatted(levels):
  data = (
    asm.PROTO2
    + asm.global_('numpy', 'dtype')
    + _shared_tuple(levels)
    + b'\x85'  # TUPLE1
    + asm.REDUCE
    + asm.STOP
  )
  error = _budgeted(
    f'{levels}-level tuple in numpy.dtype', len(data), lambda: loads_deepmind_checkpoint(data, source='dtype.pystate')
  )
  assert 'dtype.pystate' in str(error) and len(str(error)) < 300


def test_torch_stride0_tensor_is_refused_before_allocating(tmp_path):
  path = tmp_path / 'stride0.bin'
  _write_zip(
    path,
    _data_pkl([('w', _tensor('0', 'FloatStorage', 1, 0, (20000, 20000), (0, 0)))]),
    {'0': np.ones(1, '<f4').tobytes()},
  )
  size = os.path.getsize(path)
  assert size < 1000
  error = _budgeted('torch stride-0 view', size, lambda: load_torch_state_dict(path))
  assert 'repeats storage elements' in str(error) and str(path) in str(error)


def test_torch_overlapping_view_is_refused(tmp_path):
  path = tmp_path / 'overlap.bin'
  _write_zip(
    path, _data_pkl([('w', _tensor('0', 'FloatStorage', 16, 0, (4, 13), (3, 1)))]), {'0': np.ones(16, '<f4').tobytes()}
  )
  error = _budgeted('torch overlapping view', os.path.getsize(path), lambda: load_torch_state_dict(path))
  assert 'repeats storage elements' in str(error)


def test_torch_storage_shared_by_300_tensors_is_bounded(tmp_path):
  numel = 64 * 1024  # 256 KB storage
  path = tmp_path / 'shared.bin'
  entries = [(f't{i}', _tensor('0', 'FloatStorage', numel, 0, (numel,), (1,))) for i in range(300)]
  _write_zip(path, _data_pkl(entries), {'0': np.ones(numel, '<f4').tobytes()})
  error = _budgeted('torch storage shared by 300 tensors', os.path.getsize(path), lambda: load_torch_state_dict(path))
  assert 'LoadBudget' in str(error)


def _safetensors(entries, body):
  header = json.dumps(entries).encode()
  return struct.pack('<Q', len(header)) + header + body


def test_safetensors_entries_sharing_one_range_are_refused_unread():
  body = bytes(256 * 1024)
  data = _safetensors(
    {f't{i}': {'dtype': 'F32', 'shape': [len(body) // 4], 'data_offsets': [0, len(body)]} for i in range(3000)}, body
  )
  error = _budgeted(
    'safetensors 3000 entries on one range', len(data), lambda: loads_safetensors(data, source='many.safetensors')
  )
  assert 'overlaps' in str(error) and 'many.safetensors' in str(error)


@pytest.mark.parametrize(
  'body_len, offsets, match',
  [
    (8, [[4, 8], [0, 4], [0, 4]], 'overlaps'),
    (12, [[0, 4], [8, 12]], 'gap'),
    (12, [[0, 4], [4, 8]], 'after the last'),
  ],
)
def test_safetensors_ranges_must_tile_the_body(body_len, offsets, match):
  data = _safetensors(
    {f't{i}': {'dtype': 'F32', 'shape': [(e - b) // 4], 'data_offsets': [b, e]} for i, (b, e) in enumerate(offsets)},
    bytes(body_len),
  )
  with pytest.raises(CheckpointFormatError, match=match):
    loads_safetensors(data, source='x')


def test_safetensors_names_are_validated_before_any_array():
  data = _safetensors(
    {
      'ok': {'dtype': 'F32', 'shape': [1], 'data_offsets': [0, 4]},
      'bad\x00name': {'dtype': 'F32', 'shape': [1], 'data_offsets': [4, 8]},
    },
    bytes(8),
  )
  with pytest.raises(CheckpointFormatError, match='invalid name') as info:
    loads_safetensors(data, source='x')
  assert '\x00' not in str(info.value)


def _npz_with_config(path, config_text):
  with zipfile.ZipFile(path, 'w') as zf:
    with zf.open('__config__.npy', 'w') as f:
      np.lib.format.write_array(f, np.asarray(config_text))


@pytest.mark.parametrize('opener', ['[', '{"a":'])
def test_npz_config_nested_200000_deep_is_a_checkpoint_error(tmp_path, opener):
  path = tmp_path / 'deep.npz'
  _npz_with_config(path, opener * 200_000)
  error = _budgeted('npz __config__ nested 200,000 deep', os.path.getsize(path), lambda: load_checkpoint(path))
  assert 'nests deeper' in str(error) and str(path) in str(error)


def test_npz_member_bomb_is_refused_before_decompressing(tmp_path):
  path = tmp_path / 'bomb.npz'
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as zf:
    with zf.open('params::m::w.npy', 'w', force_zip64=True) as f:
      np.lib.format.write_array(f, np.zeros(64 << 20, np.uint8))  # 64 MB of zeros
  size = os.path.getsize(path)
  error = _budgeted('npz compressed-member bomb', size, lambda: load_checkpoint(path))
  assert 'bomb' in str(error)


_BAD_CONFIGS = [
  ({'num_blocks': [1, 2]}, "'num_blocks' must be an integer"),
  ({'num_blocks': 10**9}, "'num_blocks' must be an integer in"),
  ({'d_latents': 0}, "'d_latents'"),
  ({'image_size': [[224]]}, "'image_size'"),
  ({'hidden_act': ['gelu']}, "'hidden_act'"),
  ({'architectures': 'PerceiverForImageClassificationLearned'}, "'architectures'"),
  ({'architectures': [{'x': 1}]}, "'architectures'"),
  ({'use_query_residual': 'yes'}, "'use_query_residual'"),
  ({'layer_norm_eps': float('nan')}, "'layer_norm_eps'"),
  ({'transformers_version': 'x' * 10_000}, "'transformers_version'"),
]


@pytest.mark.parametrize('override, match', _BAD_CONFIGS)
def test_malformed_hf_config_json_is_refused_by_field(tmp_path, override, match):
  from perceiver.checkpoints import save_safetensors  # pylint: disable=import-outside-toplevel

  weights = tmp_path / 'model.safetensors'
  save_safetensors(weights, {'perceiver.embeddings.latents': np.zeros((4, 8), np.float32)})
  config = {'architectures': ['PerceiverForImageClassificationLearned'], 'num_latents': 4, 'd_latents': 8}
  config.update(override)
  (tmp_path / 'config.json').write_text(json.dumps(config))
  error = _budgeted(f'config.json {sorted(override)}', os.path.getsize(weights), lambda: load_checkpoint(weights))
  assert match in str(error) and str(weights) in str(error)


def test_convert_checkpoint_script_gives_one_line_errors(tmp_path):
  weights = tmp_path / 'model.npz'
  _npz_with_config(weights, '[' * 200_000)
  config = tmp_path / 'config.json'
  config.write_text(json.dumps({'architectures': ['PerceiverForMaskedLM'], 'num_blocks': 10**9}))
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  script = os.path.join(repo, 'scripts', 'convert_checkpoint.py')
  env = dict(os.environ, PYTHONPATH=repo)  # this checkout's perceiver, not an installed one
  for args in (
    [str(weights), str(tmp_path / 'o.npz')],
    [str(weights), str(tmp_path / 'o.npz'), '--hf_config_json', str(config)],
  ):
    proc = subprocess.run(
      [sys.executable, script] + args, capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count('\n') == 1 and 'Traceback' not in proc.stderr, proc.stderr
  assert not (tmp_path / 'o.npz').exists()


# ---------------------------------------------------------------------------
# Generators: structures an attacker would build.
# ---------------------------------------------------------------------------

_ATOMS = [asm.unicode('k'), asm.unicode('params'), asm.binint(7), asm.NONE, asm.NEWTRUE, b'K\x05']  # BININT1
_OPS = st.one_of(
  st.sampled_from(_ATOMS),
  st.sampled_from(
    [b'2', b'\x85', b'\x86', b'\x87', b')', b']', b'}', b'(', b't', b'l', b'd', b'a', b'e', b's', b'u', b'0', b'1']
  ),  # DUP..POP_MARK
  st.integers(0, 3).map(lambda i: b'q' + bytes([i])),  # BINPUT
  st.integers(0, 3).map(lambda i: b'h' + bytes([i])),  # BINGET
  st.just(asm.global_('numpy', 'dtype') + b'2' + asm.REDUCE),
  st.just(asm.global_('haiku._src.data_structures', 'FlatMapping')),
)


@_SETTINGS
@given(st.lists(_OPS, min_size=1, max_size=400))
def test_fuzz_nested_and_shared_pickle_structures(ops):
  data = asm.PROTO2 + b''.join(ops) + asm.STOP
  _budgeted(
    'generated pickle structure',
    len(data),
    lambda: loads_deepmind_checkpoint(data, source='gen.pystate'),
    expect_error=False,
  )


_DOUBLINGS = [
  b'2\x86',  # x -> (x, x)
  b'q\x000](h\x00h\x00e',  # x -> [x, x]
  b'q\x000}(' + asm.unicode('k') + b'h\x00' + asm.unicode('j') + b'h\x00u',  # {'k': x, 'j': x}
]


@_SETTINGS
@given(st.lists(st.integers(0, 2), min_size=1, max_size=200), st.booleans())
def test_fuzz_doubling_structures(kinds, as_key):
  """x -> (x, x) / [x, x] / {'k': x, 'j': x} chains: 2**levels steps if ever walked."""
  body = asm.unicode('a') + b''.join(_DOUBLINGS[k] for k in kinds)
  if as_key:
    data = asm.PROTO2 + asm.EMPTY_DICT + body + asm.NONE + b's' + asm.STOP
  else:
    data = asm.PROTO2 + asm.dict_([(asm.unicode('m'), asm.dict_([(asm.unicode('w'), body)]))]) + asm.STOP
  error = _budgeted(
    'generated doubling chain', len(data), lambda: loads_deepmind_checkpoint(data, source='gen.pystate')
  )
  assert 'gen.pystate' in str(error)


@_SETTINGS
@given(
  numel=st.integers(1, 64),
  offset=st.integers(0, 70),
  size=st.lists(st.integers(0, 3000), max_size=4),
  stride=st.lists(st.integers(0, 70), max_size=4),
  lie=st.integers(-8, 8),
)
def test_fuzz_lying_torch_tensor_headers(tmp_path_factory, numel, offset, size, stride, lie):
  stride = (stride + [1] * len(size))[: len(size)]
  path = tmp_path_factory.mktemp('t') / 'lie.bin'
  stored = max(numel + lie, 0)
  _write_zip(
    path,
    _data_pkl([('w', _tensor('0', 'FloatStorage', numel, offset, size, stride))]),
    {'0': np.arange(stored, dtype='<f4').tobytes()},
  )
  error = _budgeted(
    'generated torch header', os.path.getsize(path), lambda: load_torch_state_dict(path), expect_error=False
  )
  if error is None:  # accepted: a genuine view, no bigger than its storage
    assert int(np.prod(size)) <= numel and stored == numel
  else:
    assert str(path) in str(error)


@_SETTINGS
@given(st.lists(st.tuples(st.integers(0, 64), st.integers(0, 64)), min_size=1, max_size=40), st.integers(0, 128))
def test_fuzz_overlapping_safetensors_ranges(ranges, body_len):
  entries = {
    f't{i}': {'dtype': 'U8', 'shape': [max(e - b, 0)], 'data_offsets': [b, e]} for i, (b, e) in enumerate(ranges)
  }
  data = _safetensors(entries, bytes(body_len))
  error = _budgeted(
    'generated safetensors ranges',
    len(data),
    lambda: loads_safetensors(data, source='gen.safetensors'),
    expect_error=False,
  )
  if error is None:  # accepted only if the ranges tile the body exactly
    tensors, _ = loads_safetensors(data)
    assert sum(t.nbytes for t in tensors.values()) == body_len


_JSON_OPEN = st.sampled_from(['[', '{"a":', '["]"', '{"\\"[":', '[1,'])


@_SETTINGS
@given(st.lists(_JSON_OPEN, min_size=1, max_size=5), st.integers(1, 20_000), st.booleans())
def test_fuzz_deep_json_everywhere(tmp_path_factory, openers, depth, close):
  text = ''.join(openers) * depth
  if close:
    text += ']' * depth
  folder = tmp_path_factory.mktemp('j')
  npz = folder / 'deep.npz'
  _npz_with_config(npz, text)
  _budgeted('generated deep __config__', os.path.getsize(npz), lambda: load_checkpoint(npz), expect_error=False)
  data = struct.pack('<Q', len(text.encode())) + text.encode()
  _budgeted(
    'generated deep safetensors header',
    len(data),
    lambda: loads_safetensors(data, source='deep.safetensors'),
    expect_error=False,
  )
  assert npz_format.MAX_EXPANSION > 1


def test_budget_defaults_fit_the_released_checkpoints_and_are_configurable(golden_dir):
  from perceiver.checkpoints import LoadBudget  # pylint: disable=import-outside-toplevel

  path = golden_dir / 'official' / 'pickles' / 'imagenet_conv_preprocessing.pystate'
  params, _, _ = load_checkpoint(path)  # the defaults
  assert params
  for budget, match in (
    (LoadBudget(max_depth=1), 'nested deeper than 1'),
    (LoadBudget(max_objects=50), 'more than 50 objects'),
    (LoadBudget(max_bytes_per_input_byte=0.5), 'bytes of array data'),
  ):
    with pytest.raises(CheckpointFormatError, match=match):
      load_checkpoint(path, budget=budget)
