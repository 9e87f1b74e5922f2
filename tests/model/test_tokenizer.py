import numpy as np
import pytest

from perceiver import tokenizer


def test_round_trip_and_ids():
  ids = tokenizer.encode('héllo')
  assert ids[0] == tokenizer.BOS and ids[-1] == tokenizer.EOS
  assert ids[1] == ord('h') + 6
  assert tokenizer.decode(ids) == 'héllo'
  assert max(ids) < tokenizer.VOCAB_SIZE == 262


def test_batch_padding_and_too_long():
  ids, mask = tokenizer.encode_batch(['ab', 'abcd'], 8)
  assert ids.shape == mask.shape == (2, 8)
  np.testing.assert_array_equal(mask.sum(1), [4, 6])
  assert ids[0, 4] == tokenizer.PAD
  with pytest.raises(ValueError, match='more than max_len=4'):
    tokenizer.encode_batch(['abcdef'], 4)
