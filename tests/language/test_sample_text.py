"""The sample text writer (perceiver_tools/sample_text.py) on a small fortune directory."""

from perceiver_tools import sample_text


def _entries():
  """A held-out quotation and a training-side copy of it with other punctuation and attribution."""
  for i in range(1000):
    quote = f'Quotation number {i} says that every program has at least one more bug in it'
    copy = f'"{quote}." (Anonymous)'
    if sample_text.is_heldout(quote, 10) and not sample_text.is_heldout(copy, 10):
      return quote, copy
  raise AssertionError('no held-out quotation found')


def test_pretraining_text_leaves_out_near_copies_of_held_out_entries(tmp_path):
  quote, copy = _entries()
  others = [f'Fortune {i} tells of item {i} today.' for i in range(40)]  # 7 words: never a near-copy
  fortunes = tmp_path / 'fortunes'
  fortunes.mkdir()
  (fortunes / 'computers').write_text('\n%\n'.join([quote, copy] + others) + '\n')
  (fortunes / 'food').write_text('\n%\n'.join(o.replace('Fortune', 'Food') for o in others) + '\n')
  out = tmp_path / 'out'
  sample_text.write_text_sample(str(out), directory=str(fortunes), log=lambda *_: None)
  train = (out / 'text' / 'train.txt').read_text().splitlines()
  valid = (out / 'text' / 'valid.txt').read_text().splitlines()
  assert quote in valid and copy not in train and quote not in train
  assert sample_text.near_copies([copy, others[0]], [quote]) == [True, False]
  # The tasks still hold it: only the pre-training text is filtered.
  assert copy in (out / 'glue' / 'SST-2' / 'train.tsv').read_text()
  # Everything else that is not held out is pre-training text.
  kept = [o for o in others if not sample_text.is_heldout(o, 10)]
  assert set(kept) <= set(train)
