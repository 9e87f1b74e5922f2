"""Count-based references for the slow language tests (not part of the library).

Both count baselines predict only word bytes (whole-word masking never
targets whitespace or special ids) and, like the model, see the corrupted
input: where it is not [MASK] (the 10% kept / 10% random bytes) they copy it.
* unigram: a [MASK] is predicted as the most frequent training word byte;
* bigram: left to right, a [MASK] is predicted as the most frequent word-byte
  successor (in the training text) of the byte before it, which is the
  input's byte when unmasked and the bigram's own previous guess when it is
  masked too (whole-word masking masks runs of bytes);
* length + offset: a [MASK] at offset i of a word of length L is predicted as
  the most frequent byte at offset i of the training words of length L (the
  model can read L and i off the input: a selected word's bytes all stay
  non-whitespace, so its extent is visible);
* bag of bytes: scikit-learn logistic regression on byte-count vectors.
"""

import numpy as np

from perceiver import tokenizer
from perceiver.data import masking


def _word_byte_ids() -> np.ndarray:
  """bool [V]: ids that whole-word masking can target (word bytes)."""
  ids = np.arange(tokenizer.VOCAB_SIZE)
  return masking.word_ids(ids) >= 0  # every id is its own one-byte "document" here


def byte_counts(ids: np.ndarray, input_mask: np.ndarray):
  """(unigram counts [V], bigram counts [V, V]) of the training windows."""
  v = tokenizer.VOCAB_SIZE
  valid = input_mask.astype(bool)
  unigram = np.bincount(ids[valid], minlength=v)
  pairs = valid[:, 1:] & valid[:, :-1]
  bigram = np.zeros((v, v), np.int64)
  np.add.at(bigram, (ids[:, :-1][pairs], ids[:, 1:][pairs]), 1)
  return unigram, bigram


def unigram_accuracy(unigram, inputs, targets, weights) -> float:
  best = int(np.argmax(np.where(_word_byte_ids(), unigram, -1)))
  sel = weights > 0
  guess = np.where(inputs == tokenizer.MASK, best, inputs)
  return float(np.mean(guess[sel] == targets[sel]))


def bigram_accuracy(unigram, bigram, inputs, targets, weights) -> float:
  word = _word_byte_ids()
  successor = np.argmax(np.where(word[None, :], bigram, -1), axis=1)
  fallback = int(np.argmax(np.where(word, unigram, -1)))
  successor[bigram[:, word].sum(1) == 0] = fallback
  correct = total = 0
  for row in range(len(inputs)):
    prev = None
    for t in range(inputs.shape[1]):
      if weights[row, t] > 0:
        if inputs[row, t] != tokenizer.MASK:
          guess = int(inputs[row, t])
        else:
          guess = fallback if prev is None else int(successor[prev])
        correct += guess == targets[row, t]
        total += 1
        prev = guess if inputs[row, t] == tokenizer.MASK else int(inputs[row, t])
      else:
        prev = int(inputs[row, t])
  return correct / max(total, 1)


def _word_offsets(ids: np.ndarray):
  """One window -> (word length [T], offset in the word [T]); 0 / -1 off words."""
  words = masking.word_ids(ids)
  on = words >= 0
  lengths = np.bincount(words[on], minlength=1) if on.any() else np.zeros(1, np.int64)
  starts = np.full(len(lengths), len(ids))
  np.minimum.at(starts, words[on], np.flatnonzero(on))
  length = np.where(on, lengths[np.maximum(words, 0)], 0)
  offset = np.where(on, np.arange(len(ids)) - starts[np.maximum(words, 0)], -1)
  return length, offset


def length_offset_accuracy(train_ids, train_mask, inputs, targets, weights, max_len: int = 32) -> float:
  v = tokenizer.VOCAB_SIZE
  counts = np.zeros((max_len + 1, max_len, v), np.int64)  # [length, offset, byte]
  for ids, mask in zip(train_ids, train_mask):
    length, offset = _word_offsets(np.where(mask > 0, ids, tokenizer.PAD))
    keep = (length > 0) & (length <= max_len)
    np.add.at(counts, (length[keep], offset[keep], ids[keep]), 1)
  best = counts.argmax(-1)  # [length, offset]
  fallback = int(np.argmax(np.where(_word_byte_ids(), counts.sum((0, 1)), -1)))
  best[counts.sum(-1) == 0] = fallback
  correct = total = 0
  for row in range(len(inputs)):
    length, offset = _word_offsets(targets[row])
    for t in np.flatnonzero(weights[row] > 0):
      if inputs[row, t] != tokenizer.MASK:
        guess = int(inputs[row, t])
      elif 0 < length[t] <= max_len:
        guess = int(best[length[t], offset[t]])
      else:
        guess = fallback
      correct += guess == targets[row, t]
      total += 1
  return correct / max(total, 1)


def bag_of_bytes_accuracy(train_texts, train_labels, test_texts, test_labels) -> float:
  from sklearn.feature_extraction.text import CountVectorizer  # pylint: disable=g-import-not-at-top
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top

  vec = CountVectorizer(analyzer=lambda s: list(s.encode('utf-8')))
  x_train = vec.fit_transform(train_texts)
  clf = LogisticRegression(max_iter=2000, C=1.0).fit(x_train, train_labels)
  return float(np.mean(clf.predict(vec.transform(test_texts)) == np.asarray(test_labels)))
