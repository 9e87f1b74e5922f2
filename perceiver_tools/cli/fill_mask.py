#!/usr/bin/env python
"""Fills masked bytes with a Perceiver IO byte-level masked LM.

  python scripts/fill_mask.py --checkpoint language_perceiver_io_bytes.pickle \\
      --text "This is an incomplete sentence where some words are[MASK:9]"

`[MASK]` masks --mask_len bytes (default 9, the HF model card's example),
`[MASK:n]` masks n bytes; `--span START:END` (repeatable) masks byte
positions of the text instead. Prints the text with the masked bytes
replaced by the model's most likely bytes, and each span's filling.

Checkpoints: the released `language_perceiver_io_bytes.pickle` (its config
is `checkpoints.published_config('language_masked_lm')` unless
--model_config says otherwise), Hugging Face `deepmind/language-perceiver`
weights (config.json beside them), this project's exported `params.npz`
(its `config.model`), or any file with a reference `__config__`.
--model_config FILE (a JSON object or an .npz with `__config__`) overrides.

Input convention: bytes + 6 right-padded to max_seq_len with the input
mask 1 on the text (the reference colab's); HF weights get [CLS] ... [SEP]
as HF's PerceiverTokenizer adds them (--special_tokens to choose).
"""

from __future__ import annotations

import re
import sys
from typing import List, Optional, Sequence, Tuple

from absl import flags
import numpy as np

from perceiver_tools.cli import _flags

FLAGS = flags.FlagValues()
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'masked-LM checkpoint (any format above)', flag_values=FLAGS)
_TEXT = flags.DEFINE_string('text', None, 'text with [MASK] / [MASK:n] placeholders', flag_values=FLAGS)
_SPANS = flags.DEFINE_multi_string('span', [], 'START:END byte span of --text to mask', flag_values=FLAGS)
_MASK_LEN = flags.DEFINE_integer('mask_len', 9, 'bytes masked by a bare [MASK]', flag_values=FLAGS)
_MODEL_CONFIG = flags.DEFINE_string('model_config', None, 'JSON or .npz (__config__) model config', flag_values=FLAGS)
_SPECIAL = flags.DEFINE_enum(
  'special_tokens',
  'auto',
  ['auto', 'none', 'cls_sep'],
  'auto: cls_sep for HF weights, none otherwise',
  flag_values=FLAGS,
)
_TOP_K = flags.DEFINE_integer('top_k', 3, 'alternatives printed per masked byte span (first byte)', flag_values=FLAGS)
_DUMP_LOGITS = flags.DEFINE_string('dump_logits', None, 'write the logits [T, V] to this .npy', flag_values=FLAGS)

_PLACEHOLDER = re.compile(r'\[MASK(?::(\d+))?\]')
MAX_TEXT_BYTES = 1 << 16


def parse_text(
  text: str, mask_len: int, spans: Sequence[str] = (), *, require_mask: bool = True
) -> Tuple[bytes, List[Tuple[int, int]]]:
  """Text -> (bytes with masked positions as NUL placeholders, [(start, end)] byte spans)."""
  out, masked = bytearray(), []
  pos = 0
  for m in _PLACEHOLDER.finditer(text):
    out += text[pos : m.start()].encode('utf-8')
    n = int(m.group(1)) if m.group(1) else mask_len
    if not 1 <= n <= 4096:
      raise ValueError(f'[MASK:n] needs 1 <= n <= 4096, got {n}')
    masked.append((len(out), len(out) + n))
    out += b'\0' * n
    pos = m.end()
  out += text[pos:].encode('utf-8')
  for span in spans:
    try:
      start, end = (int(x) for x in span.split(':'))
    except ValueError:
      raise ValueError(f'--span must be START:END byte offsets, got {span!r}') from None
    if not 0 <= start < end <= len(out):
      raise ValueError(f'--span {start}:{end} is outside the text ({len(out)} bytes)')
    masked.append((start, end))
  if not masked and require_mask:
    raise ValueError('nothing to fill: put [MASK] in --text or pass --span START:END')
  return bytes(out), sorted(masked)


def model_inputs(
  data: bytes, masked: Sequence[Tuple[int, int]], max_seq_len: int, special_tokens: str
) -> Tuple[np.ndarray, np.ndarray, int]:
  """(tokens int32 [1, max_seq_len], input_mask int32 [1, max_seq_len], offset of byte 0)."""
  from perceiver import tokenizer  # pylint: disable=g-import-not-at-top

  ids = np.frombuffer(data, np.uint8).astype(np.int32) + tokenizer.NUM_SPECIAL
  for start, end in masked:
    ids[start:end] = tokenizer.MASK
  offset = 0
  if special_tokens == 'cls_sep':
    ids = np.concatenate([[tokenizer.CLS], ids, [tokenizer.SEP]])
    offset = 1
  if len(ids) > max_seq_len:
    raise ValueError(f'--text is {len(ids)} tokens; the model takes at most {max_seq_len}')
  tokens = np.full((1, max_seq_len), tokenizer.PAD, np.int32)
  mask = np.zeros((1, max_seq_len), np.int32)
  tokens[0, : len(ids)] = ids
  mask[0, : len(ids)] = 1
  return tokens, mask, offset


def _config_from_file(path: str) -> dict:
  if path.endswith('.npz'):
    from perceiver.checkpoints import npz_format  # pylint: disable=g-import-not-at-top

    cfg = npz_format.decode_config(npz_format.read_npz(path), source=path)
  else:
    from perceiver.checkpoints import hf  # pylint: disable=g-import-not-at-top

    cfg = hf.read_json_object(path)
  if cfg is None:
    raise ValueError(f'--model_config {path} holds no config')
  return cfg


def load_masked_lm(checkpoint: str, model_config: Optional[str] = None):
  """(params, reference config, format) of a masked-LM checkpoint."""
  from perceiver import checkpoints  # pylint: disable=g-import-not-at-top

  fmt = checkpoints.detect_format(checkpoint)
  params, _, cfg = checkpoints.load_checkpoint(checkpoint, fmt)
  if model_config:
    cfg = _config_from_file(model_config)
  if cfg is not None and 'config.model' in cfg:  # this project's params.npz export
    cfg = cfg['config.model']
  if cfg is None:
    if fmt not in ('pickle', 'pystate'):
      raise ValueError(f'{checkpoint} carries no model config; pass --model_config')
    cfg = checkpoints.published_config('language_masked_lm')
  if cfg.get('model', 'masked_lm') != 'masked_lm':
    raise ValueError(f'{checkpoint} is not a masked LM (config.model={cfg.get("model")!r})')
  return params, cfg, fmt


def fill(params, cfg, tokens: np.ndarray, input_mask: np.ndarray) -> np.ndarray:
  """Logits float32 [B, max_seq_len, V] of the masked LM."""
  from perceiver import language  # pylint: disable=g-import-not-at-top

  net = language.build_masked_lm(cfg)
  logits, _ = net.apply(params, {}, None, dict(tokens=tokens, input_mask=input_mask), is_training=False)
  return np.asarray(logits, np.float32)


def describe(
  data: bytes, masked: Sequence[Tuple[int, int]], logits: np.ndarray, offset: int, top_k: int = 3
) -> List[str]:
  """Printable lines: the filled text, then each span's filling and first-byte alternatives."""
  from perceiver import tokenizer  # pylint: disable=g-import-not-at-top

  best = np.argmax(logits, -1)  # [T]
  filled = bytearray(data)
  lines = []
  for start, end in masked:
    ids = best[offset + start : offset + end]
    piece = tokenizer.decode(ids).encode('utf-8')
    # Pad a short decoding with '?' so the text keeps its length.
    filled[start:end] = (piece + b'?' * (end - start))[: end - start]
    first = logits[offset + start]
    alternatives = [tokenizer.decode([int(i)]) for i in np.argsort(-first)[:top_k]]
    lines.append(f'  bytes {start}:{end} -> {tokenizer.decode(ids)!r} (first byte top-{top_k}: {alternatives})')
  return [bytes(filled).decode('utf-8', errors='replace')] + lines


def main(argv: Optional[List[str]] = None) -> int:
  _flags.parse(FLAGS, argv, __doc__)
  if not _CHECKPOINT.value or _TEXT.value is None:
    print('fill_mask.py: error: --checkpoint and --text are required', file=sys.stderr)
    return 2
  if len(_TEXT.value.encode('utf-8')) > MAX_TEXT_BYTES:
    print(f'fill_mask.py: error: --text is longer than {MAX_TEXT_BYTES} bytes', file=sys.stderr)
    return 2
  try:
    data, masked = parse_text(_TEXT.value, _MASK_LEN.value, _SPANS.value)
    params, cfg, fmt = load_masked_lm(_CHECKPOINT.value, _MODEL_CONFIG.value)
    special = _SPECIAL.value
    if special == 'auto':
      special = 'cls_sep' if fmt.startswith('hf') else 'none'
    tokens, mask, offset = model_inputs(data, masked, int(cfg['max_seq_len']), special)
    logits = fill(params, cfg, tokens, mask)[0]
  except (ValueError, OSError) as e:
    print(f'fill_mask.py: error: {e}', file=sys.stderr)
    return 2
  if _DUMP_LOGITS.value:
    np.save(_DUMP_LOGITS.value, logits)
  print('\n'.join(describe(data, masked, logits, offset, _TOP_K.value)))
  return 0


def run() -> None:
  sys.exit(main())


if __name__ == '__main__':
  run()
