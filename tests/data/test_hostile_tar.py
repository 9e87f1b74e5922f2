"""Sparse and oversized tar members in ImageNet archives: refused unread and
counted under on_corrupt='skip', a CorruptDataError naming the member under
'raise'; never a MemoryError, and memory bounded by the archive's size."""

import io
import tarfile
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perceiver.data import errors
from perceiver.data import imagenet

_WORST = {'ratio': 0.0, 'cases': 0, 'peak': 0, 'size': 0}


def _header(name: str, size: int, typeflag: bytes = b'0') -> bytearray:
  info = tarfile.TarInfo(name)
  info.size = min(size, 0o77777777777)  # (patched below when larger)
  info.type = typeflag
  buf = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
  return buf


def _set_octal(buf: bytearray, offset: int, width: int, value: int) -> None:
  if value < 8 ** (width - 1):
    buf[offset : offset + width] = f'{value:0{width - 1}o}'.encode() + b'\0'
  else:  # GNU base-256 for sizes that do not fit in octal
    buf[offset : offset + width] = b'\x80' + value.to_bytes(width - 1, 'big')


def _checksum(buf: bytearray) -> bytearray:
  buf[148:156] = b' ' * 8
  buf[148:156] = f'{sum(buf[:512]):06o}'.encode() + b'\0 '
  return buf


def _regular(name: str, data: bytes) -> bytes:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  return info.tobuf(format=tarfile.GNU_FORMAT) + data + b'\0' * (-len(data) % 512)


def _sparse(name: str, real_size: int, stored: bytes, hole_at: int) -> bytes:
  """A GNU sparse member: ``stored`` bytes at ``hole_at`` of a ``real_size`` file."""
  buf = _header(name, len(stored), tarfile.GNUTYPE_SPARSE)[:512]
  _set_octal(buf, 124, 12, len(stored))  # bytes stored in the archive
  _set_octal(buf, 386, 12, hole_at)  # sparse map entry: offset
  _set_octal(buf, 398, 12, len(stored))  #   and its length
  buf[482] = 0  # no extension blocks
  _set_octal(buf, 483, 12, real_size)  # the file's real size
  return bytes(_checksum(buf)) + stored + b'\0' * (-len(stored) % 512)


def _oversized(name: str, declared: int, stored: bytes) -> bytes:
  buf = bytearray(tarfile.TarInfo(name).tobuf(format=tarfile.GNU_FORMAT)[:512])
  _set_octal(buf, 124, 12, declared)
  return bytes(_checksum(buf)) + stored + b'\0' * (-len(stored) % 512)


def _archive(*members: bytes) -> bytes:
  return b''.join(members) + b'\0' * 1024


def _read(data: bytes, on_corrupt: str = 'skip'):
  counter = errors.CorruptCounter(on_corrupt)
  tracemalloc.start()
  try:
    try:
      tar = tarfile.open(fileobj=io.BytesIO(data), mode='r|')
    except tarfile.ReadError:  # (the builder reports an unopenable archive itself)
      got, counter.skipped = [], ['val.tar']
    else:
      with tar:
        got = [name for name, _ in imagenet._iter_tar(tar, 'val.tar', counter)]  # pylint: disable=protected-access
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  _WORST['cases'] += 1
  if peak / len(data) > _WORST['ratio']:
    _WORST.update(ratio=peak / len(data), peak=peak, size=len(data))
  assert peak <= 16 * len(data) + (1 << 20), (peak, len(data))
  return got, counter.skipped


def test_a_100_gb_sparse_member_is_skipped_and_counted():
  data = _archive(
    _regular('a.JPEG', b'x' * 100),
    _sparse('big.JPEG', 100 << 30, b'y' * 512, (100 << 30) - 512),
    _regular('c.JPEG', b'z' * 100),
  )
  assert len(data) < 10_000
  assert tarfile.open(fileobj=io.BytesIO(data), mode='r|').next().name == 'a.JPEG'
  names, skipped = _read(data)
  assert names == ['a.JPEG', 'c.JPEG']
  assert skipped == ['val.tar:big.JPEG']


def test_a_small_sparse_member_is_refused_too():
  names, skipped = _read(_archive(_sparse('s.JPEG', 4096, b'y' * 512, 0)))
  assert names == [] and skipped == ['val.tar:s.JPEG']


def test_an_oversized_member_is_refused_unread_then_the_truncation_reported():
  data = _archive(_regular('a.JPEG', b'x'), _oversized('huge.JPEG', 10 << 30, b'y' * 512))
  names, skipped = _read(data)
  assert names == ['a.JPEG']
  assert skipped[0] == 'val.tar:huge.JPEG' and skipped[-1] == 'val.tar'


def test_under_raise_the_error_names_the_member():
  data = _archive(_sparse('big.JPEG', 100 << 30, b'y' * 512, 0))
  with pytest.raises(errors.CorruptDataError, match='val.tar:big.JPEG: sparse tar member'):
    _read(data, 'raise')


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
  st.lists(
    st.one_of(
      st.tuples(st.just('regular'), st.integers(0, 3000)),
      st.tuples(st.just('sparse'), st.integers(0, 1 << 40)),
      st.tuples(st.just('oversized'), st.integers(imagenet.MAX_IMAGE_BYTES + 1, 1 << 40)),
    ),
    max_size=6,
  ),
  st.integers(0, 4000),
)
def test_fuzz_sparse_and_oversized_members(members, cut):
  parts = []
  for i, (kind, size) in enumerate(members):
    name = f'm{i}.JPEG'
    if kind == 'regular':
      parts.append(_regular(name, b'r' * size))
    elif kind == 'sparse':
      parts.append(_sparse(name, max(size, 512), b's' * 512, max(size - 512, 0)))
    else:
      parts.append(_oversized(name, size, b'o' * 512))
  data = _archive(*parts)
  data = data[: len(data) - cut] if cut < len(data) else data
  names, skipped = _read(data)
  big = {f'm{i}.JPEG' for i, (kind, _) in enumerate(members) if kind != 'regular'}
  assert not big & set(names)  # never read
  assert all(s.startswith('val.tar') for s in skipped)


def test_report_worst_ratio():
  print(
    f'\nsparse/oversized tar members: {_WORST["cases"]} archives, worst peak '
    f'{_WORST["ratio"]:.1f} bytes per archive byte ({_WORST["peak"]} bytes for a '
    f'{_WORST["size"]}-byte archive)'
  )
