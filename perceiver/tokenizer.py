"""UTF-8 bytes tokenizer of Perceiver IO's language model.

Ids: pad 0, bos 1, eos 2, mask 3, cls 4, sep 5, then byte b -> b + 6
(vocabulary 262), exactly the released `language_perceiver_io_bytes` model's.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

PAD, BOS, EOS, MASK, CLS, SEP = range(6)
NUM_SPECIAL = 6
VOCAB_SIZE = 256 + NUM_SPECIAL


def encode(text: str, *, add_bos_eos: bool = True) -> List[int]:
  ids = [b + NUM_SPECIAL for b in text.encode('utf-8')]
  return [BOS] + ids + [EOS] if add_bos_eos else ids


def decode(ids: Sequence[int]) -> str:
  """Drops special ids; invalid UTF-8 (e.g. a model's guess) is replaced, not raised."""
  data = bytes(int(i) - NUM_SPECIAL for i in ids if NUM_SPECIAL <= int(i) < VOCAB_SIZE)
  return data.decode('utf-8', errors='replace')


def encode_batch(texts: Sequence[str], max_len: int, *, add_bos_eos: bool = True) -> Tuple[np.ndarray, np.ndarray]:
  """Texts -> (ids int32 [B, max_len], mask int32 [B, max_len]); errors if a text is too long."""
  ids = np.full((len(texts), max_len), PAD, np.int32)
  mask = np.zeros((len(texts), max_len), np.int32)
  for i, text in enumerate(texts):
    tokens = encode(text, add_bos_eos=add_bos_eos)
    if len(tokens) > max_len:
      raise ValueError(f'text {i} is {len(tokens)} tokens long (with bos/eos), more than max_len={max_len}')
    ids[i, : len(tokens)] = tokens
    mask[i, : len(tokens)] = 1
  return ids, mask
