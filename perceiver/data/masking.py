"""Whole-word masked-LM corruption of byte windows, as a function of a seed.

The objective is BERT's (Devlin et al. 2019, Sec. 3.1 "Task #1: Masked LM"):
choose ~15% of the positions to predict; of those, 80% are replaced by
[MASK], 10% by a random token and 10% are left unchanged. Perceiver IO
pre-trains its byte model with masked language modelling on whole words
(PAPERS.md, "Perceiver IO task models"; the rates are not restated in the
paper, so BERT's are the defaults and live in the config). On bytes a "word"
is a maximal run of non-whitespace bytes: masking single bytes would let the
model copy from the neighbouring bytes of the same word.

Randomness is numpy's Generator seeded with (seed, example index): the
training pipeline passes seed = the epoch's shuffle seed, so masking is
dynamic (new per epoch), identical across restarts and independent of the
batch size or host count.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np

from perceiver import tokenizer

# Byte values that separate words: space, \t, \n, \v, \f, \r.
_WHITESPACE_BYTES = np.array([32, 9, 10, 11, 12, 13]) + tokenizer.NUM_SPECIAL


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
  """Rates of the masked-LM corruption.

  Defaults: BERT (Devlin et al. 2019, Sec. 3.1), 15% of the input predicted,
  80% [MASK] / 10% random / 10% unchanged; whole words as Perceiver IO's MLM
  on bytes (PAPERS.md), whose paper does not restate the rates.
  """

  mask_rate: float = 0.15  # fraction of content bytes to predict
  mask_token_prob: float = 0.8  # of those: replaced by [MASK]
  random_token_prob: float = 0.1  # of those: replaced by a random byte
  whole_words: bool = True  # mask whole words (False: independent bytes)
  # Training windows masked byte by byte instead (each window draws which; 0:
  # none, the default). With whole_words, a mix of the two objectives: whole
  # words are Perceiver IO's MLM (PAPERS.md), single bytes made the `sample`
  # encoder transfer better to the topic task (docs/language.md, "Why
  # pre-training does not help the topic task"). Evaluation masks ignore it
  # (get_dataset), so the held-out figure is the whole-word one.
  byte_fraction: float = 0.0

  def __post_init__(self):
    if not 0.0 < self.mask_rate < 1.0:
      raise ValueError(f'masking.mask_rate must be in (0, 1), got {self.mask_rate}')
    if self.mask_token_prob < 0 or self.random_token_prob < 0 or self.mask_token_prob + self.random_token_prob > 1.0:
      raise ValueError(
        'masking.mask_token_prob and .random_token_prob must be >= 0 '
        f'with a sum <= 1, got {self.mask_token_prob} and {self.random_token_prob}'
      )
    if not 0.0 <= self.byte_fraction <= 1.0:
      raise ValueError(f'masking.byte_fraction must be in [0, 1], got {self.byte_fraction}')


def word_ids(ids: np.ndarray) -> np.ndarray:
  """ids int [T] -> word index [T] of each content byte, -1 elsewhere.

  Content bytes are ids >= NUM_SPECIAL that are not whitespace; specials
  and whitespace separate words.
  """
  content = (ids >= tokenizer.NUM_SPECIAL) & ~np.isin(ids, _WHITESPACE_BYTES)
  starts = content & ~np.concatenate([[False], content[:-1]])
  words = np.cumsum(starts) - 1
  return np.where(content, words, -1)


def mask_window(ids: np.ndarray, rng: np.random.Generator, cfg: MaskingConfig) -> Tuple[np.ndarray, np.ndarray]:
  """One window: ids int32 [T] -> (corrupted inputs int32 [T], weights f32 [T]).

  weights is 1 at the positions to predict (the targets are `ids`).
  Whole-word selection follows BERT's: words in random order are taken while
  the number of chosen bytes stays within round(mask_rate * content bytes)
  (at least one word when there is any).
  """
  ids = np.asarray(ids, np.int32)
  words = word_ids(ids)
  # Drawn only when mixing, so the default's random stream (and masks) is unchanged.
  by_bytes = not cfg.whole_words or (cfg.byte_fraction > 0 and rng.random() < cfg.byte_fraction)
  if not by_bytes:
    num_words = int(words.max()) + 1 if words.size else 0
    if num_words == 0:
      return ids.copy(), np.zeros(ids.shape, np.float32)
    lengths = np.bincount(words[words >= 0], minlength=num_words)
    budget = max(1, int(round(cfg.mask_rate * lengths.sum())))
    order = rng.permutation(num_words)
    chosen = order[np.cumsum(lengths[order]) <= budget]
    if chosen.size == 0:
      chosen = order[:1]
    selected = np.isin(words, chosen) & (words >= 0)
  else:
    selected = (words >= 0) & (rng.random(ids.shape) < cfg.mask_rate)
  u = rng.random(ids.shape)
  to_mask = selected & (u < cfg.mask_token_prob)
  to_random = selected & (u >= cfg.mask_token_prob) & (u < cfg.mask_token_prob + cfg.random_token_prob)
  random_bytes = rng.integers(tokenizer.NUM_SPECIAL, tokenizer.VOCAB_SIZE, ids.shape, dtype=np.int32)
  inputs = np.where(to_mask, tokenizer.MASK, np.where(to_random, random_bytes, ids)).astype(np.int32)
  return inputs, selected.astype(np.float32)


def mask_windows(
  ids: np.ndarray, example_index: np.ndarray, seed: int, cfg: MaskingConfig
) -> Tuple[np.ndarray, np.ndarray]:
  """ids [N, T] -> (inputs [N, T], weights [N, T]); row i uses rng(seed, example_index[i])."""
  inputs = np.empty_like(ids, dtype=np.int32)
  weights = np.empty(ids.shape, np.float32)
  for row, index in enumerate(np.asarray(example_index)):
    rng = np.random.default_rng([int(seed), int(index), 0x6D6C6D])
    inputs[row], weights[row] = mask_window(ids[row], rng, cfg)
  return inputs, weights
