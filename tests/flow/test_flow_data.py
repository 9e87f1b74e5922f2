"""Flow file formats, the three builders and the training pipeline."""

import os
import shutil

import numpy as np
import pytest

from perceiver.data import errors
from perceiver.data import flow as fdata
from perceiver.data import rng as rng_lib
from perceiver.data._tf import tf

# ------------------------------------------------------------------ formats


def test_flo_round_trip_is_exact(tmp_path):
  rng = np.random.default_rng(0)
  flow = rng.normal(0, 30, (7, 11, 2)).astype(np.float32)
  flow[0, 0] = [np.inf, -1e30]  # Sintel stores huge values for "unknown".
  path = str(tmp_path / 'a.flo')
  fdata.write_flo(path, flow)
  with open(path, 'rb') as f:
    assert f.read(4) == b'PIEH'
  np.testing.assert_array_equal(fdata.read_flo(path), flow)
  assert os.path.getsize(path) == 12 + 7 * 11 * 8


def test_kitti_png_round_trip_is_exact(tmp_path):
  rng = np.random.default_rng(1)
  flow = (np.round(rng.normal(0, 40, (5, 9, 2)) * 64) / 64).astype(np.float32)
  valid = rng.random((5, 9)) > 0.3
  path = str(tmp_path / '000000_10.png')
  fdata.write_kitti_png(path, flow, valid)
  back, back_valid = fdata.read_kitti_png(path)
  np.testing.assert_array_equal(back_valid, valid)
  np.testing.assert_array_equal(back[valid], flow[valid])
  assert (back[~valid] == 0).all()
  raw = tf.io.decode_png(open(path, 'rb').read(), dtype=tf.uint16).numpy()
  assert raw.dtype == np.uint16 and raw.shape == (5, 9, 3)
  # u = (R - 2^15) / 64 on the raw channels.
  np.testing.assert_array_equal((raw[..., 0][valid].astype(np.float64) - 2**15) / 64, flow[..., 0][valid])
  with pytest.raises(ValueError, match='KITTI PNG range'):
    fdata.encode_kitti_png(np.full((2, 2, 2), 600, np.float32))


@pytest.mark.parametrize(
  'data,reason',
  [
    (b'PIE', 'shorter than'),
    (b'XXXX' + b'\0' * 8, 'magic'),
    (b'PIEH' + np.asarray([2, 2], '<i4').tobytes() + b'\0' * 31, 'body'),
    (b'PIEH' + np.asarray([2**30, 2], '<i4').tobytes(), 'outside'),
    (b'PIEH' + np.asarray([-1, 2], '<i4').tobytes(), 'outside'),
    (b'PIEH' + np.asarray([1, 1], '<i4').tobytes() + np.asarray([np.nan, 0], '<f4').tobytes(), 'NaN'),
  ],
)
def test_corrupt_flo_names_the_file(tmp_path, data, reason):
  path = tmp_path / 'bad.flo'
  path.write_bytes(data)
  with pytest.raises(errors.CorruptDataError, match=reason) as info:
    fdata.read_flo(str(path))
  assert str(path) in str(info.value)
  assert '1073741824' not in str(info.value)  # Never echo file values.


def test_corrupt_kitti_png_names_the_file(tmp_path):
  path = tmp_path / 'bad.png'
  path.write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 40)
  with pytest.raises(errors.CorruptDataError) as info:
    fdata.read_kitti_png(str(path))
  assert str(path) in str(info.value)
  path.write_bytes(b'GIF89a')
  with pytest.raises(errors.CorruptDataError, match='not a PNG'):
    fdata.read_kitti_png(str(path))


# ------------------------------------------------------------------ builders


def _config(dataset, manual, tfds_dir, **kw):
  return fdata.resolve_config(dict(dataset=dataset, manual_dir=manual, data_dir=tfds_dir, **kw))


@pytest.mark.parametrize(
  'dataset,sub,splits',
  [
    ('flying_chairs', 'flying_chairs', {'train': 4, 'validation': 1}),
    ('sintel', 'sintel', {'train': 5}),
    ('kitti', 'kitti', {'train': 5}),
  ],
)
def test_builders_read_the_public_layouts(flow_sample_dir, tmp_path, dataset, sub, splits):
  config = _config(dataset, os.path.join(flow_sample_dir, sub), str(tmp_path / 'tfds'))
  builder = fdata.get_builder(config)
  assert {s: builder.info.splits[s].num_examples for s in splits} == splits
  ex = next(iter(builder.as_dataset(split='train').take(1)))
  assert ex['image1'].shape == (48, 64, 3) and ex['flow'].shape == (48, 64, 2)
  flo = fdata.read_flo(os.path.join(flow_sample_dir, 'flying_chairs', 'data', '00001_flow.flo'))
  name = ex['name'].numpy().decode()
  if name in ('00001', 'pair_00001/frame_0001', '000000'):
    # The same pair in every layout; KITTI PNGs hold 1/64 px.
    np.testing.assert_allclose(ex['flow'].numpy(), flo, atol=1 / 128)
  has_occ = bool(ex['has_occlusion'])
  assert has_occ == (dataset != 'flying_chairs')


def _warp_residual(img1, img2, flow, keep):
  """Mean |frame 2 sampled at p + flow - frame 1| over `keep` (0-255)."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top

  yy, xx = np.mgrid[0 : img1.shape[0], 0 : img1.shape[1]].astype(np.float64)
  coords = [yy + flow[..., 1], xx + flow[..., 0]]
  img2 = img2.astype(np.float64)
  warped = np.stack([ndimage.map_coordinates(img2[..., c], coords, order=1, mode='nearest') for c in range(3)], -1)
  return float(np.abs(warped - img1).mean(-1)[keep].mean())


@pytest.mark.parametrize('dataset', ['sintel', 'kitti'])
def test_sample_ground_truth_moves_frame_one_onto_frame_two(flow_sample_dir, tmp_path, dataset):
  # The generator's flow, through its files and the production builder,
  # carries frame 1 onto frame 2 on the non-occluded pixels: far better than
  # no motion, and better than the flow with u/v swapped or negated (a
  # convention bug anywhere on that path fails here).
  config = _config(dataset, os.path.join(flow_sample_dir, dataset), str(tmp_path / 'tfds'))
  for ex in fdata.get_builder(config).as_dataset(split='train').as_numpy_iterator():
    img1, img2, flow = ex['image1'].astype(np.float64), ex['image2'], ex['flow'].astype(np.float64)
    keep = (ex['valid'] > 0) & (ex['occluded'] == 0)
    keep[:2], keep[-2:], keep[:, :2], keep[:, -2:] = False, False, False, False
    assert keep.mean() > 0.5
    gt = _warp_residual(img1, img2, flow, keep)
    zero = _warp_residual(img1, img2, 0 * flow, keep)
    assert gt < 0.5 * zero, (ex['name'], gt, zero)
    for wrong in (-flow, flow[..., ::-1]):
      assert gt < 0.7 * _warp_residual(img1, img2, wrong, keep), ex['name']


def test_pipeline_batches(flow_sample_dir, tmp_path):
  data = dict(
    dataset='sintel',
    manual_dir=os.path.join(flow_sample_dir, 'sintel'),
    data_dir=str(tmp_path / 'tfds'),
    train_split='train[:4]',
    valid_split='train[4:]',
    crop_size=(32, 40),
  )
  train = next(iter(fdata.get_dataset(data, split='train', batch_size=2, shuffle_seed=3)))
  assert train['frames'].shape == (2, 2, 32, 40, 3)
  assert train['flow'].shape == (2, 32, 40, 2)
  assert train['valid'].shape == (2, 32, 40)
  assert -1.0 <= float(tf.reduce_min(train['frames']))
  assert float(tf.reduce_max(train['frames'])) <= 1.0
  again = next(iter(fdata.get_dataset(data, split='train', batch_size=2, shuffle_seed=3)))
  np.testing.assert_array_equal(train['flow'], again['flow'])  # Resumable.
  valid = list(fdata.get_dataset(data, split='valid', batch_size=2, shuffle_seed=None))
  assert len(valid) == 1 and valid[0]['frames'].shape == (1, 2, 48, 64, 3)
  assert fdata.num_examples(data, 'valid') == 1
  assert float(tf.reduce_sum(valid[0]['occluded'])) > 0


def test_spatial_augmentation_moves_flow_with_the_pixels():
  # A pair where the content moves right by 3 px (flow u = 3): after
  # scaling, stretching and flipping, frame 2 sampled at p + flow must still
  # match frame 1 at p.
  rng = np.random.default_rng(0)
  base = rng.uniform(0, 1, (60, 83, 3)).astype(np.float32)
  from scipy import ndimage  # pylint: disable=g-import-not-at-top

  base = ndimage.gaussian_filter(base, (3, 3, 0))
  img1, img2 = base[:, 3:], base[:, :-3]  # img1(x) = img2(x + 3).
  flow = np.zeros(img1.shape[:2] + (2,), np.float32)
  flow[..., 0] = 3.0
  config = fdata.resolve_config(dict(crop_size=(40, 56), hflip_prob=0.5, vflip_prob=0.5, spatial_prob=1.0))
  for seed in range(6):
    out = fdata.spatial(
      tf.constant(img1),
      tf.constant(img2),
      tf.constant(flow),
      tf.ones(flow.shape[:2]),
      tf.zeros(flow.shape[:2]),
      config,
      rng_lib.SeedStream(tf.constant([seed, 1], tf.int64)),
    )
    a, b, f, v, _ = (x.numpy() for x in out)
    yy, xx = np.mgrid[0:40, 0:56].astype(np.float64)
    warped = np.stack(
      [ndimage.map_coordinates(b[..., c], [yy + f[..., 1], xx + f[..., 0]], order=1, mode='nearest') for c in range(3)],
      -1,
    )
    inner = (slice(4, -4), slice(8, -8))
    err = np.abs(warped - a)[inner].mean()
    still = np.abs(b - a)[inner].mean()
    assert err < 0.25 * still, (seed, err, still)
    assert v.min() == 1.0


def test_missing_and_corrupt_files(flow_sample_dir, tmp_path):
  with pytest.raises(errors.MissingDataError) as info:
    fdata.get_builder(_config('kitti', str(tmp_path / 'none'), str(tmp_path / 't0')))
  assert 'image_2' in str(info.value) and 'make_sample_data.py' in str(info.value)
  manual = tmp_path / 'chairs'
  shutil.copytree(os.path.join(flow_sample_dir, 'flying_chairs'), manual)
  bad = manual / 'data' / '00002_flow.flo'
  bad.write_bytes(b'PIEH' + b'\0' * 3)
  with pytest.raises(errors.CorruptDataError) as info:
    fdata.get_builder(_config('flying_chairs', str(manual), str(tmp_path / 't1')))
  assert str(bad) in str(info.value)
  builder = fdata.get_builder(_config('flying_chairs', str(manual), str(tmp_path / 't2'), on_corrupt='skip'))
  assert builder.info.splits['train'].num_examples == 3
  assert builder.skipped_files == [str(bad)]
  (manual / 'data' / '00003_img2.ppm').unlink()
  with pytest.raises(errors.MissingDataError, match='00003_img2.ppm'):
    fdata.get_builder(_config('flying_chairs', str(manual), str(tmp_path / 't3'), on_corrupt='skip'))


def test_config_errors_name_the_field():
  with pytest.raises(ValueError, match=r"unknown data field\(s\) \['bogus'\]"):
    fdata.resolve_config(dict(bogus=1))
  with pytest.raises(ValueError, match='data.dataset'):
    fdata.resolve_config(dict(dataset='chairs'))
  with pytest.raises(ValueError, match='data.crop_size'):
    fdata.resolve_config(dict(crop_size=(0, 4)))
