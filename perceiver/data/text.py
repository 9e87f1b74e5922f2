"""Pre-training text: corpora -> byte windows -> masked-LM batches.

Readers (the layouts C4 / Wikipedia dumps commonly have after extraction):
  * ``lines``: UTF-8 text, one document per non-empty line;
  * ``files``: one document per file (e.g. WikiExtractor's per-article files);
  * ``jsonl``: one JSON object per line, the document under ``text_key``
    (C4's ``c4-*.json`` after decompression, ``{"text": ..., "url": ...}``);
  * TFDS ``c4`` / ``wikipedia`` (``tfds_name``), when the user has prepared
    them: read lazily, nothing is downloaded.

Windows follow the released model's input convention (the reference colab
and ../shared/golden language_masked_lm inputs): byte b -> id b + 6, no
[BOS]/[EOS], right-padded with PAD (0) and an input mask of 1 on real
bytes. ``pack`` concatenates documents separated by one [SEP] (5) and cuts
the stream into full windows; ``cut`` starts every document in a new window.
``special_tokens='cls_sep'`` instead wraps each document as HF's
``PerceiverTokenizer`` does ([CLS] ... [SEP]).

Batches: tokens int32 [B, T] (corrupted), input_mask int32 [B, T], targets
int32 [B, T] (original ids), target_weights float32 [B, T] (1 where the
loss is taken). See ``masking`` for the corruption.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Iterable, Iterator, List, Optional, Sequence

import numpy as np

from perceiver import tokenizer
from perceiver.data import masking
from perceiver.data import registry
from perceiver.data.errors import CorruptDataError, MissingDataError

FORMATS = ('lines', 'files', 'jsonl')
PACKINGS = ('pack', 'cut')
SPECIAL_TOKENS = ('none', 'cls_sep')
# A single line longer than this is refused (bounded memory on hostile input).
MAX_LINE_BYTES = 16 << 20
_HOW_TO_GET = (
  'point data.train_files / data.eval_files at UTF-8 text (see docs/language.md); '
  'real sample text: python scripts/make_sample_data.py --out DIR --what text'
)


def expand_files(pattern: str, field: str) -> List[str]:
  """Comma-separated globs -> sorted files; MissingDataError naming ``field`` if none."""
  files: List[str] = []
  for part in [p.strip() for p in str(pattern).split(',') if p.strip()]:
    matches = sorted(glob.glob(os.path.expanduser(part)))
    files += [m for m in matches if os.path.isfile(m)]
  if not files:
    raise MissingDataError(f'text ({field})', [str(pattern)], _HOW_TO_GET, field=field)
  return files


def numbered_lines(path: str, max_bytes: int) -> Iterator[tuple[int, bytes]]:
  """(1-based line number, raw line) of a file; a line longer than max_bytes
  comes back cut to max_bytes + 1 bytes (bounded memory) for the caller to refuse."""
  with open(path, 'rb') as f:
    lineno = 0
    while True:
      line = f.readline(max_bytes + 1)
      if not line:
        return
      lineno += 1
      yield lineno, line
      if len(line) > max_bytes:
        return


def _lines(path: str) -> Iterator[tuple[int, bytes]]:
  for lineno, line in numbered_lines(path, MAX_LINE_BYTES):
    if len(line) > MAX_LINE_BYTES:
      raise CorruptDataError(path, f'line {lineno} is longer than {MAX_LINE_BYTES} bytes')
    yield lineno, line


def _decode(raw: bytes, path: str, lineno: int) -> str:
  try:
    return raw.decode('utf-8')
  except UnicodeDecodeError:
    raise CorruptDataError(path, f'line {lineno} is not valid UTF-8') from None


def read_documents(
  files: Sequence[str], fmt: str = 'lines', *, text_key: str = 'text', max_doc_bytes: int = MAX_LINE_BYTES
) -> Iterator[str]:
  """Documents of ``files`` in order; CorruptDataError names file and line."""
  if fmt not in FORMATS:
    raise ValueError(f'data.format must be one of {FORMATS}, got {fmt!r}')
  for path in files:
    if fmt == 'files':
      if os.path.getsize(path) > max_doc_bytes:
        raise CorruptDataError(path, f'file is larger than {max_doc_bytes} bytes (one document per file)')
      with open(path, 'rb') as f:
        doc = _decode(f.read(), path, 1).strip()
      if doc:
        yield doc
      continue
    for lineno, raw in _lines(path):
      if fmt == 'lines':
        doc = _decode(raw, path, lineno).strip()
      else:
        if not raw.strip():
          continue
        try:
          obj = json.loads(raw)
        except (ValueError, RecursionError):
          raise CorruptDataError(path, f'line {lineno} is not a JSON object') from None
        if not isinstance(obj, dict) or not isinstance(obj.get(text_key), str):
          raise CorruptDataError(path, f'line {lineno} has no string field {text_key!r}')
        doc = obj[text_key].strip()
      if doc:
        yield doc


def document_ids(doc: str, special_tokens: str = 'none') -> List[int]:
  ids = tokenizer.encode(doc, add_bos_eos=False)
  if special_tokens == 'cls_sep':
    return [tokenizer.CLS] + ids + [tokenizer.SEP]
  return ids


def make_windows(
  docs: Iterable[str],
  seq_len: int,
  *,
  packing: str = 'pack',
  special_tokens: str = 'none',
  max_windows: Optional[int] = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Documents -> (ids int32 [N, seq_len], input_mask int32 [N, seq_len])."""
  if packing not in PACKINGS:
    raise ValueError(f'data.packing must be one of {PACKINGS}, got {packing!r}')
  if special_tokens not in SPECIAL_TOKENS:
    raise ValueError(f'data.special_tokens must be one of {SPECIAL_TOKENS}, got {special_tokens!r}')
  if seq_len < 2:
    raise ValueError(f'data.seq_len must be >= 2, got {seq_len}')
  windows: List[List[int]] = []
  stream: List[int] = []

  def full():
    return max_windows is not None and len(windows) >= max_windows

  for doc in docs:
    ids = document_ids(doc, special_tokens)
    if packing == 'cut':
      for start in range(0, len(ids), seq_len):
        windows.append(ids[start : start + seq_len])
        if full():
          break
    else:
      if stream and special_tokens == 'none':
        stream.append(tokenizer.SEP)
      stream.extend(ids)
      while len(stream) >= seq_len and not full():
        windows.append(stream[:seq_len])
        stream = stream[seq_len:]
    if full():
      break
  if stream and not full():
    windows.append(stream)
  out = np.full((len(windows), seq_len), tokenizer.PAD, np.int32)
  mask = np.zeros((len(windows), seq_len), np.int32)
  for i, w in enumerate(windows):
    out[i, : len(w)] = w
    mask[i, : len(w)] = 1
  return out, mask


def _tfds_documents(name: str, split: str, data_dir: Optional[str], text_key: str) -> Iterator[str]:
  """Documents of a prepared TFDS text dataset (``c4/en``, ``wikipedia/...``)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except  # tfds raises many types
    raise MissingDataError(
      f'tfds {name}',
      [str(data_dir or '~/tensorflow_datasets')],
      f'prepare it with tfds first ({type(e).__name__})',
      field='data.data_dir',
    ) from None
  if not os.path.isdir(builder.data_dir):
    raise MissingDataError(
      f'tfds {name}',
      [builder.data_dir],
      'prepare it with `tfds build` (this pipeline never downloads)',
      field='data.data_dir',
    )
  ds = builder.as_dataset(split=split, shuffle_files=False)
  for example in ds.as_numpy_iterator():
    yield example[text_key].decode('utf-8', errors='replace')


def split_windows(data_config, split: str) -> tuple[np.ndarray, np.ndarray]:
  """All windows of ``split`` ('train' or an eval split) of ``data_config``."""
  train = split == 'train'
  max_windows = data_config.max_windows if data_config.max_windows > 0 else None
  if data_config.tfds_name:
    tfds_split = data_config.train_split if train else data_config.eval_split
    docs = _tfds_documents(data_config.tfds_name, tfds_split, data_config.data_dir or None, data_config.text_key)
  else:
    field = 'data.train_files' if train else 'data.eval_files'
    files = expand_files(data_config.train_files if train else data_config.eval_files, field)
    docs = read_documents(files, data_config.format, text_key=data_config.text_key)
  return make_windows(
    docs,
    data_config.seq_len,
    packing=data_config.packing,
    special_tokens=data_config.special_tokens,
    max_windows=max_windows,
  )


def masking_config(data_config, *, train: bool = True) -> masking.MaskingConfig:
  """The masking of `data_config`; evaluation masks leave out the training-only byte_fraction mix.

  Fields absent from an older config keep MaskingConfig's defaults; a bad
  rate is a ValueError naming its ``data.masking`` field.
  """
  m = data_config.masking
  given = {f.name: m[f.name] for f in dataclasses.fields(masking.MaskingConfig) if f.name in m}
  if not train:
    given.pop('byte_fraction', None)
  try:
    return masking.MaskingConfig(**given)
  except ValueError as e:  # its messages name the field as masking.<name>
    raise ValueError(f'data.{e}') from None


_CACHE: dict = {}


def _cached_windows(data_config, split: str):
  """Windows are cut once per (config, split) per process: epochs only reorder and re-mask."""
  key = (data_config.to_json(), split)
  if key not in _CACHE:
    if len(_CACHE) > 8:
      _CACHE.clear()
    _CACHE[key] = split_windows(data_config, split)
  return _CACHE[key]


def example_order(
  n: int, *, train: bool, shuffle_seed: Optional[int], batch_size: int, process_index: int, process_count: int
) -> np.ndarray:
  """Indices of this host's examples: train = one shuffled epoch, remainder dropped."""
  if train:
    global_batch = batch_size * process_count
    usable = n // global_batch * global_batch
    order = np.random.default_rng([int(shuffle_seed or 0), 1]).permutation(n)[:usable]
    return order.reshape(-1, process_count, batch_size)[:, process_index].reshape(-1)
  return np.arange(process_index, n, process_count)


def get_dataset(
  data_config, *, split: str, batch_size: int, shuffle_seed: Optional[int], process_index: int, process_count: int
):
  """tf.data batches of masked windows (train: one epoch, order and masks from shuffle_seed)."""
  from perceiver.data._tf import tf  # pylint: disable=g-import-not-at-top

  ids, input_mask = _cached_windows(data_config, split)
  train = split == 'train'
  order = example_order(
    len(ids),
    train=train,
    shuffle_seed=shuffle_seed,
    batch_size=batch_size,
    process_index=process_index,
    process_count=process_count,
  )
  seed = shuffle_seed if train else data_config.masking.eval_seed
  inputs, weights = masking.mask_windows(ids[order], order, seed, masking_config(data_config, train=train))
  data = dict(
    tokens=inputs,
    input_mask=input_mask[order],
    targets=ids[order],
    target_weights=(weights * input_mask[order]).astype(np.float32),
  )
  ds = tf.data.Dataset.from_tensor_slices(data)
  return ds.batch(batch_size, drop_remainder=train)


def num_examples(data_config, split: str) -> int:
  return len(_cached_windows(data_config, split)[0])


SOURCE = registry.DataSource('text', get_dataset, num_examples)
