"""Fuzzing of the dataset readers that parse user files: OFF meshes, PointNet
HDF5, AudioSet segment CSVs and class_labels_indices.csv.

Each reader, given any bytes, either returns data that meets its contract or
raises CorruptDataError naming the file; never IndexError, UnicodeDecodeError,
a hang or a huge allocation. Runs are derandomized (the same cases every run);
the case counts are listed in docs/reliability.md
(`--hypothesis-show-statistics` prints them).
"""

import csv
import io
import os
import tempfile
import tracemalloc

import h5py
from hypothesis import event, given, settings, strategies as st
import numpy as np
import pytest

from perceiver.data import audioset
from perceiver.data import errors
from perceiver.data import modelnet

_FUZZ = settings(max_examples=300, deadline=None, derandomize=True)
_SMALL_FUZZ = settings(max_examples=100, deadline=None, derandomize=True)


@pytest.fixture(scope='module')
def scratch():
  with tempfile.TemporaryDirectory() as d:
    yield d


def _expect_clear_error(read, path):
  """`read()`'s result, or 'error' if it raised CorruptDataError naming path."""
  try:
    result = read()
  except errors.CorruptDataError as e:
    assert path in str(e)
    event('CorruptDataError')
    return 'error'
  event('read')
  return result


def _peak_bytes(fn) -> int:
  tracemalloc.start()
  try:
    fn()
  except errors.CorruptDataError:
    pass
  finally:
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
  return peak


def _mutate(draw, data: bytes) -> bytes:
  """Unchanged, truncated, or with a few garbage bytes inserted."""
  how = draw(st.sampled_from(['none', 'none', 'truncate', 'insert']))
  at = draw(st.integers(0, len(data)))
  if how == 'truncate':
    return data[:at]
  if how == 'insert':
    return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
  return data


# ------------------------------------------------------------------- OFF

_OFF = 'ModelNet40/cow/train/cow_0001.off'
_HUGE = [10**9, 2**31, 2**63 - 1, 2**64, 10**30]
_COORD = st.one_of(
  st.floats(-1e3, 1e3).map(repr),
  st.integers(-9, 9).map(str),
  st.sampled_from(['nan', 'inf', '-inf', '1e400', 'x', '1,5', '--1', '']),
)


@st.composite
def off_files(draw) -> bytes:
  """Mostly-structured OFF text: header variants, declared counts that may
  be wrong or huge, vertex lines with bad tokens, faces that may name
  missing vertices, then truncation or garbage."""
  n_vertices = draw(st.integers(0, 6))
  vertices = [' '.join(draw(st.lists(_COORD, min_size=2, max_size=4))) for _ in range(n_vertices)]
  faces = []
  for face in draw(st.lists(st.lists(st.integers(-2, n_vertices + 1), min_size=1, max_size=5), max_size=4)):
    count = draw(st.sampled_from([len(face), len(face), len(face) + 2, 0]))
    faces.append(' '.join(map(str, [count] + face)))
  declared = [draw(st.one_of(st.just(n), st.integers(-2, 8), st.sampled_from(_HUGE))) for n in (n_vertices, len(faces))]
  header = draw(st.sampled_from(['OFF\n', 'OFF', 'COFF\n', '', 'off\n', 'OFF\n# comment\n', 'OFF 3\n', 'FFO\n']))
  text = '\n'.join([header + f'{declared[0]} {declared[1]} 0'] + vertices + faces) + '\n'
  return _mutate(draw, text.encode())


def _check_off(data: bytes):
  result = _expect_clear_error(lambda: modelnet.read_off(data, _OFF), _OFF)
  if isinstance(result, str):
    return
  vertices, faces = result
  assert vertices.ndim == 2 and vertices.shape[1] == 3
  assert np.isfinite(vertices).all()
  assert faces.ndim == 2 and faces.shape[1] == 3 and len(faces) > 0
  assert faces.min() >= 0 and faces.max() < len(vertices)


@_FUZZ
@given(off_files())
def test_fuzz_off_structured(data):
  _check_off(data)


@_SMALL_FUZZ
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b'OFF\n' + b)))
def test_fuzz_off_garbage_bytes(data):
  _check_off(data)


@_SMALL_FUZZ
@given(st.lists(st.tuples(*[st.floats(-100, 100)] * 3), min_size=3, max_size=8), st.booleans())
def test_valid_off_files_read_back_exactly(points, defect):
  """The fuzz tests' counterpart: well-formed files are not rejected."""
  n = len(points)
  faces = [(0, i, i + 1) for i in range(1, n - 1)]
  header = 'OFF' if defect else 'OFF\n'  # ModelNet's one-line header defect.
  text = (
    f'{header}{n} {len(faces)} 0\n'
    + ''.join(f'{x!r} {y!r} {z!r}\n' for x, y, z in points)
    + ''.join(f'3 {a} {b} {c}\n' for a, b, c in faces)
  )
  vertices, got_faces = modelnet.read_off(text.encode(), _OFF)
  np.testing.assert_array_equal(vertices, np.array(points))
  np.testing.assert_array_equal(got_faces, np.array(faces))


@pytest.mark.parametrize('counts', ['2000000000 1', '3 2000000000', f'{2**62} {2**62}'])
def test_huge_declared_off_counts_allocate_nothing(counts):
  data = f'OFF\n{counts} 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n'.encode()
  with pytest.raises(errors.CorruptDataError, match='cow_0001.off'):
    modelnet.read_off(data, _OFF)
  assert _peak_bytes(lambda: modelnet.read_off(data, _OFF)) < 10 << 20


@pytest.mark.parametrize(
  'body,match',
  [
    ('3 1 0\n0 0 0\n1 0 0\n0 nan 0\n3 0 1 2\n', 'non-finite'),
    ('3 1 0\n0 0 0\n1 0 0\n0 1e400 0\n3 0 1 2\n', 'non-finite'),
    ('3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n', 'outside the range'),
    ('3 1 0\n0 0 0\n1 0 0\n0 x 0\n3 0 1 2\n', 'not a readable OFF'),
    ('3 0 0\n0 0 0\n1 0 0\n0 1 0\n', 'no triangles'),
  ],
)
def test_bad_off_files_say_what_is_wrong(body, match):
  with pytest.raises(errors.CorruptDataError, match=match) as info:
    modelnet.read_off(('OFF\n' + body).encode(), _OFF)
  assert _OFF in str(info.value)


# ------------------------------------------------------------------ HDF5

_NUM_CLASSES = 40
_DTYPES = ['f4', 'f8', 'i2', 'u1', 'i8', 'S4', 'c8', '?']


@st.composite
def h5_layouts(draw):
  """{name: (shape, dtype, fill)} with the right names mostly, wrong
  shapes, dtypes and values often; sometimes a group instead of data."""
  layout = {}
  n = draw(st.integers(0, 3))
  for name in draw(
    st.lists(st.sampled_from(['data', 'label', 'Data', 'x']), unique=True, max_size=3).map(
      lambda l: l or ['data', 'label']
    )
  ):
    if draw(st.integers(0, 9)) == 0:
      layout[name] = 'group'
      continue
    right = [n, 4, 3] if name != 'label' else [n, 1]
    shape = draw(st.one_of(st.just(right), st.lists(st.integers(0, 4), max_size=4)))
    dtype = draw(st.sampled_from(['f4', 'u1'] + _DTYPES))
    fill = draw(st.sampled_from([0, 1, 39, 40, -1, np.nan, np.inf, 0.5]))
    layout[name] = (tuple(shape), dtype, fill)
  return layout


def _write_h5(path, layout):
  with h5py.File(path, 'w') as f:
    for name, spec in layout.items():
      if spec == 'group':
        f.create_group(name)
        continue
      shape, dtype, fill = spec
      values = np.full(shape, fill, np.float64)
      with np.errstate(invalid='ignore'):
        f.create_dataset(name, data=values.astype(dtype))


def _check_h5(path):
  result = _expect_clear_error(lambda: modelnet.read_h5(path, _NUM_CLASSES), path)
  if isinstance(result, str):
    return
  data, labels = result
  assert data.dtype == np.float32 and data.ndim == 3 and data.shape[2] == 3
  assert np.isfinite(data).all()
  assert labels.shape == (len(data),)
  assert np.all((labels >= 0) & (labels < _NUM_CLASSES))


@_FUZZ
@given(h5_layouts(), st.data())
def test_fuzz_hdf5_layouts(scratch, layout, data):
  path = os.path.join(scratch, 'ply_data_train0.h5')
  _write_h5(path, layout)
  with open(path, 'rb') as f:
    raw = f.read()
  mutated = data.draw(st.one_of(st.just(raw), st.integers(0, len(raw)).map(lambda at: raw[:at])))  # Whole or truncated.
  with open(path, 'wb') as f:
    f.write(mutated)
  _check_h5(path)


@_SMALL_FUZZ
@given(st.one_of(st.binary(max_size=400), st.binary(max_size=400).map(lambda b: b'\x89HDF\r\n\x1a\n' + b)))
def test_fuzz_hdf5_garbage_bytes(scratch, raw):
  path = os.path.join(scratch, 'ply_data_test0.h5')
  with open(path, 'wb') as f:
    f.write(raw)
  _check_h5(path)


def test_valid_hdf5_reads_back(tmp_path):
  path = str(tmp_path / 'ply_data_train0.h5')
  points = np.random.default_rng(0).normal(size=(5, 7, 3)).astype(np.float32)
  with h5py.File(path, 'w') as f:
    f.create_dataset('data', data=points)
    f.create_dataset('label', data=np.array([[0], [3], [39], [1], [2]], np.uint8))
  data, labels = modelnet.read_h5(path, _NUM_CLASSES)
  np.testing.assert_array_equal(data, points)
  np.testing.assert_array_equal(labels, [0, 3, 39, 1, 2])


def test_huge_declared_hdf5_dataset_is_refused_unread(tmp_path):
  """A few kB on disk declaring 24 GB (unwritten chunks read as zeros)."""
  path = str(tmp_path / 'ply_data_train0.h5')
  with h5py.File(path, 'w') as f:
    f.create_dataset('data', shape=(10**6, 2048, 3), dtype='f4', chunks=(1, 2048, 3))
    f.create_dataset('label', data=np.zeros((10**6, 1), np.uint8))
  assert os.path.getsize(path) < 10 << 20
  with pytest.raises(errors.CorruptDataError, match='fitting in the file'):
    modelnet.read_h5(path, _NUM_CLASSES)
  assert _peak_bytes(lambda: modelnet.read_h5(path, _NUM_CLASSES)) < 10 << 20


# ------------------------------------------------------------ AudioSet CSV

_FIELD = st.one_of(
  st.text(max_size=8),
  st.sampled_from(
    [
      '--PJHxphWEs',
      '30.000',
      '40.000',
      '10',
      'nan',
      'inf',
      '-1',
      '1e9',
      '/m/09x0r',
      '"/m/09x0r,/t/dd00088"',
      '"',
      '"a""b"',
      '',
      ' ',
      '#',
      '\x00',
    ]
  ),
)


@st.composite
def csv_texts(draw, header: str) -> bytes:
  """A header (or not), rows of 0..6 random fields, random junk lines."""
  lines = [header] if draw(st.booleans()) else []
  for _ in range(draw(st.integers(0, 5))):
    if draw(st.integers(0, 4)) == 0:
      lines.append(draw(st.text(max_size=20)))
    else:
      lines.append(', '.join(draw(st.lists(_FIELD, max_size=6))))
  data = '\n'.join(lines).encode('utf-8', 'surrogatepass')
  return _mutate(draw, data)


def _write(path, raw: bytes) -> str:
  with open(path, 'wb') as f:
    f.write(raw)
  return path


def _check_segments(path):
  rows = _expect_clear_error(lambda: audioset.read_segments(path), path)
  if isinstance(rows, str):
    return
  for ytid, start, end, mids in rows:
    assert ytid and 0 <= start < end <= start + audioset.MAX_SEGMENT_S
    assert all(m and m == m.strip() for m in mids)


_CSV_FUZZ = settings(max_examples=400, deadline=None, derandomize=True)


@_CSV_FUZZ
@given(st.one_of(csv_texts('# YTID, start_seconds, end_seconds, positive_labels'), st.binary(max_size=300)))
def test_fuzz_segment_csv(scratch, raw):
  _check_segments(_write(os.path.join(scratch, 'eval_segments.csv'), raw))


def _check_class_labels(path):
  classes = _expect_clear_error(lambda: audioset.read_class_labels(path), path)
  if isinstance(classes, str):
    return
  mids = [m for m, _ in classes]
  assert mids and all(mids) and len(set(mids)) == len(mids)


@_CSV_FUZZ
@given(st.one_of(csv_texts('index,mid,display_name'), st.binary(max_size=300)))
def test_fuzz_class_labels_csv(scratch, raw):
  _check_class_labels(_write(os.path.join(scratch, 'class_labels.csv'), raw))


_MID = st.from_regex(r'/[a-z]/[0-9a-z_]{1,8}', fullmatch=True)


_NAME = st.text(st.characters(blacklist_characters='\r\n\x00', blacklist_categories=('Cs',)), max_size=12)


@_SMALL_FUZZ
@given(
  st.lists(st.tuples(_MID, _NAME), min_size=1, max_size=6, unique_by=lambda c: c[0]), st.randoms(use_true_random=False)
)
def test_valid_class_labels_read_back(scratch, classes, random):
  """Quoting (commas, quotes in names) and row order do not matter."""
  rows = [[i, m, n] for i, (m, n) in enumerate(classes)]
  random.shuffle(rows)
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator='\n')
  writer.writerow(['index', 'mid', 'display_name'])
  writer.writerows(rows)
  path = _write(os.path.join(scratch, 'class_labels.csv'), buf.getvalue().encode())
  assert audioset.read_class_labels(path) == classes


@pytest.mark.parametrize(
  'text,match',
  [
    ('', 'header'),
    ('index,mid,display_name\n', 'no classes'),
    ('index,mid,display_name\n0,/m/a,A\n0,/m/b,B\n', 'without repeats'),
    ('index,mid,display_name\n1,/m/a,A\n', '0..K-1'),
    ('index,mid,display_name\n0,/m/a\n', 'line 2'),
    ('index,mid,display_name\nzero,/m/a,A\n', 'line 2'),
    ('index,mid,display_name\n0,/m/a,A\n1,/m/a,B\n', 'repeated mids'),
    ('mid,index,display_name\n/m/a,0,A\n', 'header'),
  ],
)
def test_bad_class_labels_say_what_is_wrong(tmp_path, text, match):
  path = _write(str(tmp_path / 'class_labels_indices.csv'), text.encode())
  with pytest.raises(errors.CorruptDataError, match=match) as info:
    audioset.read_class_labels(path)
  assert path in str(info.value)


@pytest.mark.parametrize(
  'row,match',
  [
    ('abc, 0, 10', 'expected 4 fields'),
    ('abc, 0, 10, "/m/a", extra', 'expected 4 fields'),
    ('abc, ten, 20, "/m/a"', 'line 4'),
    ('abc, 10, 5, "/m/a"', 'start < end'),
    ('abc, 0, 1e9, "/m/a"', 'start \\+ 60'),  # Would allocate 96 GB.
    ('abc, nan, 10, "/m/a"', 'start < end'),
    (', 0, 10, "/m/a"', 'YTID'),
  ],
)
def test_bad_segment_rows_say_what_is_wrong(tmp_path, row, match):
  text = '# a\n# b\n# c\n' + row + '\n'
  path = _write(str(tmp_path / 'eval_segments.csv'), text.encode())
  with pytest.raises(errors.CorruptDataError, match=match) as info:
    audioset.read_segments(path)
  assert path in str(info.value)


def test_unknown_label_ids_name_the_csv_and_the_segment(tmp_path):
  csv_path = _write(str(tmp_path / 'eval_segments.csv'), b'# a\nseg1, 0, 10, "/m/a,/m/zzz"\nseg2, 0, 10, "/m/a"\n')
  rows = audioset.read_segments(csv_path)
  audio = {'seg1': str(tmp_path / 'seg1.wav'), 'seg2': str(tmp_path / 'x')}
  builder = audioset.AudioSet(data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(errors.CorruptDataError) as info:
    list(builder._generate_examples(rows, {'/m/a': 0}, audio, {}, csv_path))  # pylint: disable=protected-access
  assert csv_path in str(info.value) and "'/m/zzz'" in str(info.value)
  assert 'seg1' in str(info.value)
  skip = audioset.AudioSet(data_dir=str(tmp_path / 'tfds2'), on_corrupt='skip')
  assert not list(
    skip._generate_examples(  # pylint: disable=protected-access
      rows, {'/m/a': 0}, audio, {}, csv_path
    )
  )
  assert skip.skipped_files == [csv_path, audio['seg2']]  # seg2: no file.
