"""Count-based references for the slow language tests (not part of the library).

* unigram: every masked byte is predicted as the most frequent training byte;
* bigram: left to right, each masked byte is predicted as the most frequent
  successor (in the training text) of the byte before it, which is the
  corrupted input's byte when unmasked and the bigram's own previous guess
  when it is masked too (whole-word masking masks runs of bytes);
* bag of bytes: scikit-learn logistic regression on byte-count vectors.
"""

import numpy as np

from perceiver import tokenizer


def byte_counts(ids: np.ndarray, input_mask: np.ndarray):
  """(unigram counts [V], bigram counts [V, V]) of the training windows."""
  v = tokenizer.VOCAB_SIZE
  valid = input_mask.astype(bool)
  unigram = np.bincount(ids[valid], minlength=v)
  pairs = valid[:, 1:] & valid[:, :-1]
  bigram = np.zeros((v, v), np.int64)
  np.add.at(bigram, (ids[:, :-1][pairs], ids[:, 1:][pairs]), 1)
  return unigram, bigram


def unigram_accuracy(unigram, targets, weights) -> float:
  best = int(np.argmax(unigram[tokenizer.NUM_SPECIAL:])) + tokenizer.NUM_SPECIAL
  sel = weights > 0
  return float(np.mean(targets[sel] == best))


def bigram_accuracy(unigram, bigram, inputs, targets, weights) -> float:
  successor = np.argmax(bigram, axis=1)
  fallback = int(np.argmax(unigram[tokenizer.NUM_SPECIAL:])) + tokenizer.NUM_SPECIAL
  successor[bigram.sum(1) == 0] = fallback
  correct = total = 0
  for row in range(len(inputs)):
    prev = None
    for t in range(inputs.shape[1]):
      if weights[row, t] > 0:
        guess = fallback if prev is None else int(successor[prev])
        correct += guess == targets[row, t]
        total += 1
        prev = guess if inputs[row, t] == tokenizer.MASK else int(inputs[row, t])
      else:
        prev = int(inputs[row, t])
  return correct / max(total, 1)


def bag_of_bytes_accuracy(train_texts, train_labels, test_texts, test_labels) -> float:
  from sklearn.feature_extraction.text import CountVectorizer  # pylint: disable=g-import-not-at-top
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  vec = CountVectorizer(analyzer=lambda s: list(s.encode('utf-8')))
  x_train = vec.fit_transform(train_texts)
  clf = LogisticRegression(max_iter=2000, C=1.0).fit(x_train, train_labels)
  return float(np.mean(clf.predict(vec.transform(test_texts)) == np.asarray(test_labels)))
