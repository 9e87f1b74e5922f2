"""The torch-free reader of PyTorch zip checkpoints.

torch is deliberately not installed, so each test writes the archive itself,
byte for byte in torch's layout: ``<root>/data.pkl`` (protocol 2, storages as
BINPERSID ``('storage', torch.<T>Storage, key, 'cpu', numel)``, tensors as
``torch._utils._rebuild_tensor_v2``, the state_dict an ``OrderedDict`` whose
``_metadata`` arrives through BUILD) plus ``<root>/data/<key>`` raw storages,
``<root>/version`` and ``<root>/byteorder``.
"""

import json
import zipfile

import numpy as np
import pytest

import _pickle_asm as asm
from perceiver.checkpoints import CheckpointFormatError, UnsafeCheckpointError, load_checkpoint, load_torch_state_dict
from perceiver.checkpoints.loader import detect_format
from perceiver.checkpoints.torch_zip import TORCH_ALLOWED

_NP_TO_STORAGE = {
  np.dtype(np.float32): 'FloatStorage',
  np.dtype(np.int64): 'LongStorage',
  np.dtype(np.float16): 'HalfStorage',
}


def _ordered_dict(items=()):
  return asm.call(asm.global_('collections', 'OrderedDict')) + (
    asm.MARK + b''.join(k + v for k, v in items) + asm.SETITEMS if items else b''
  )


def _tensor(key, storage_type, numel, offset, size, stride):
  storage = (
    asm.tuple_(
      asm.unicode('storage'),
      asm.global_('torch', storage_type),
      asm.unicode(key),
      asm.unicode('cpu'),
      asm.binint(numel),
    )
    + asm.BINPERSID
  )
  return asm.call(
    asm.global_('torch._utils', '_rebuild_tensor_v2'),
    storage,
    asm.binint(offset),
    asm.tuple_(*map(asm.binint, size)),
    asm.tuple_(*map(asm.binint, stride)),
    asm.NEWFALSE,
    _ordered_dict(),
  )


def _data_pkl(entries, metadata=True):
  """entries: [(name, pickled tensor)] -> data.pkl bytes."""
  body = _ordered_dict([(asm.unicode(n), t) for n, t in entries])
  if metadata:
    meta = _ordered_dict([(asm.unicode(''), asm.dict_([(asm.unicode('version'), asm.binint(1))]))])
    body += asm.dict_([(asm.unicode('_metadata'), meta)]) + asm.BUILD
  return asm.PROTO2 + body + asm.STOP


def _write_zip(path, data_pkl, storages, root='archive', byteorder='little'):
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zf:
    zf.writestr(f'{root}/data.pkl', data_pkl)
    for key, raw in storages.items():
      zf.writestr(f'{root}/data/{key}', raw)
    zf.writestr(f'{root}/version', b'3\n')
    if byteorder is not None:
      zf.writestr(f'{root}/byteorder', byteorder.encode())


def save_state_dict(path, state_dict, root='archive'):
  """What torch.save(state_dict) writes for contiguous tensors (one storage each)."""
  entries, storages = [], {}
  for i, (name, a) in enumerate(state_dict.items()):
    a = np.array(a, order='C')  # (np.ascontiguousarray would make 0-d arrays 1-d)
    stride = [int(s // a.itemsize) for s in a.strides]
    entries.append((name, _tensor(str(i), _NP_TO_STORAGE[a.dtype], a.size, 0, a.shape, stride)))
    storages[str(i)] = a.astype(a.dtype.newbyteorder('<')).tobytes()
  _write_zip(path, _data_pkl(entries), storages, root=root)


def test_views_offsets_shared_storage_and_dtypes(tmp_path):
  base = np.arange(12, dtype=np.float32)
  bf16_values = np.array([1.0, -2.5, 3.140625], np.float32)  # exactly representable in bf16
  bf16_bits = (bf16_values.view(np.uint32) >> 16).astype('<u2')
  entries = [
    ('lin.weight', _tensor('0', 'FloatStorage', 12, 0, (3, 4), (4, 1))),
    ('lin.weight_t', _tensor('0', 'FloatStorage', 12, 0, (4, 3), (1, 4))),  # transposed view
    ('lin.bias', _tensor('0', 'FloatStorage', 12, 4, (4,), (1,))),  # offset, shared
    ('bn.num_batches_tracked', _tensor('1', 'LongStorage', 1, 0, (), ())),
    ('half', _tensor('2', 'HalfStorage', 2, 0, (2,), (1,))),
    ('bf16', _tensor('3', 'BFloat16Storage', 3, 0, (3,), (1,))),
  ]
  storages = {
    '0': base.tobytes(),
    '1': np.array([7], '<i8').tobytes(),
    '2': np.array([0.5, -1], '<f2').tobytes(),
    '3': bf16_bits.tobytes(),
  }
  path = tmp_path / 'pytorch_model.bin'
  _write_zip(path, _data_pkl(entries), storages)
  sd = load_torch_state_dict(path)
  assert list(sd) == [e[0] for e in entries]
  np.testing.assert_array_equal(sd['lin.weight'], base.reshape(3, 4))
  np.testing.assert_array_equal(sd['lin.weight_t'], base.reshape(3, 4).T)
  assert sd['lin.weight_t'].flags.c_contiguous
  np.testing.assert_array_equal(sd['lin.bias'], base[4:8])
  assert sd['bn.num_batches_tracked'].shape == () and sd['bn.num_batches_tracked'] == 7
  assert sd['bn.num_batches_tracked'].dtype == np.int64
  assert sd['half'].dtype == np.float16 and list(sd['half']) == [0.5, -1]
  assert sd['bf16'].dtype == np.float32 and np.array_equal(sd['bf16'], bf16_values)
  assert detect_format(path) == 'hf-torch'


def test_big_endian_archive(tmp_path):
  values = np.array([1.5, -2.0, 3.25], np.float32)
  path = tmp_path / 'be.bin'
  _write_zip(
    path,
    _data_pkl([('w', _tensor('0', 'FloatStorage', 3, 0, (3,), (1,)))]),
    {'0': values.astype('>f4').tobytes()},
    byteorder='big',
  )
  out = load_torch_state_dict(path)['w']
  assert out.dtype.isnative and np.array_equal(out, values)


def test_any_root_folder_name_and_no_metadata(tmp_path):
  path = tmp_path / 'x.pt'
  _write_zip(
    path,
    _data_pkl([('w', _tensor('0', 'FloatStorage', 1, 0, (1,), (1,)))], metadata=False),
    {'0': np.ones(1, '<f4').tobytes()},
    root='my_model',
  )
  assert load_torch_state_dict(path)['w'] == 1


def test_hostile_data_pkl_is_refused(tmp_path):
  marker = tmp_path / 'pwned'
  evil = asm.PROTO2 + asm.call(asm.global_('os', 'system'), asm.unicode(f'touch {marker}')) + asm.STOP
  path = tmp_path / 'evil.bin'
  _write_zip(path, evil, {})
  with pytest.raises(UnsafeCheckpointError, match='os.system'):
    load_torch_state_dict(path)
  assert not marker.exists()


def test_storage_types_cannot_be_tampered_with(tmp_path):
  float_storage = TORCH_ALLOWED[('torch', 'FloatStorage')]
  slotstate = asm.tuple_(asm.NONE, asm.dict_([(asm.unicode('dtype'), asm.unicode('f2'))]))
  path = tmp_path / 'tamper.bin'
  _write_zip(path, asm.PROTO2 + asm.global_('torch', 'FloatStorage') + slotstate + asm.BUILD + asm.STOP, {})
  with pytest.raises(UnsafeCheckpointError, match='refused BUILD on _StorageType'):
    load_torch_state_dict(path)
  assert float_storage.dtype == np.float32


def test_foreign_persistent_id_is_refused(tmp_path):
  path = tmp_path / 'pid.bin'
  _write_zip(path, asm.PROTO2 + asm.tuple_(asm.unicode('module'), asm.unicode('x')) + asm.BINPERSID + asm.STOP, {})
  with pytest.raises(UnsafeCheckpointError, match='persistent id'):
    load_torch_state_dict(path)


@pytest.mark.parametrize(
  'case, match',
  [
    ('missing_storage', 'missing from the archive'),
    ('storage_too_small', 'needs 16'),
    ('view_past_end', 'reads past its storage'),
  ],
)
def test_inconsistent_archives(tmp_path, case, match):
  numel, size, raw = 4, (4,), np.zeros(4, '<f4').tobytes()
  storages = {'0': raw}
  if case == 'missing_storage':
    storages = {}
  elif case == 'storage_too_small':
    storages = {'0': raw[:8]}
  else:
    size = (5,)
  path = tmp_path / f'{case}.bin'
  _write_zip(path, _data_pkl([('w', _tensor('0', 'FloatStorage', numel, 0, size, (1,)))]), storages)
  with pytest.raises(CheckpointFormatError, match=match):
    load_torch_state_dict(path)


def test_legacy_truncated_and_missing_files(tmp_path):
  legacy = tmp_path / 'old.bin'
  legacy.write_bytes(b'\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.')
  with pytest.raises(CheckpointFormatError, match='legacy'):
    load_torch_state_dict(legacy)
  with pytest.raises(CheckpointFormatError, match='legacy'):
    detect_format(legacy)
  good = tmp_path / 'good.bin'
  save_state_dict(good, {'w': np.ones((8, 8), np.float32)})
  cut = tmp_path / 'cut.bin'
  cut.write_bytes(good.read_bytes()[:300])
  with pytest.raises(CheckpointFormatError, match='cut.bin'):
    load_torch_state_dict(cut)
  with pytest.raises(FileNotFoundError, match='absent.bin'):
    load_torch_state_dict(tmp_path / 'absent.bin')


def test_hf_golden_as_torch_file_converts_like_the_npz(golden_dir, tmp_path):
  """A hub snapshot layout: pytorch_model.bin + config.json, no torch needed."""
  golden = golden_dir / 'hf' / 'vision_perceiver_conv.npz'
  data = np.load(golden)
  state_dict = {k[len('state_dict::') :]: data[k] for k in data.files if k.startswith('state_dict::')}
  save_state_dict(tmp_path / 'pytorch_model.bin', state_dict)
  hf_config = json.loads(str(data['__config__']))
  hf_config.pop('hf_class')
  hf_config['architectures'] = ['PerceiverForImageClassificationConvProcessing']
  (tmp_path / 'config.json').write_text(json.dumps(hf_config))
  params, state, config = load_checkpoint(tmp_path / 'pytorch_model.bin')
  ref_params, ref_state, ref_config = load_checkpoint(golden)
  assert config == ref_config
  for got, want in ((params, ref_params), (state, ref_state)):
    assert got.keys() == want.keys()
    for module in want:
      for name in want[module]:
        np.testing.assert_array_equal(got[module][name], want[module][name])
