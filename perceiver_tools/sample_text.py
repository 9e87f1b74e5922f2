"""Real sample text for the language pipelines, from Debian's `fortunes`.

`make_sample_data.py --what text` calls `write_text_sample(out_dir)`, which
writes, from the ~11,000 entries of /usr/share/games/fortunes (real English:
quotations, jokes, definitions, in ~40 named categories):

  OUT/text/train.txt, OUT/text/valid.txt   pre-training corpus, one entry per line
  OUT/glue/SST-2/{train,dev}.tsv           topic task: 1 = computing (computers,
                                           linux, debian, perl, linuxcookie),
                                           0 = everyday topics (food, law,
                                           medicine, sports, love, pets,
                                           education, kids, politics)
  OUT/glue/RTE/{train,dev}.tsv             sentence pair: is sentence2 the
                                           continuation of sentence1 in the same
                                           entry (entailment) or the second half
                                           of another entry (not_entailment)?

One split for everything: an entry is held out (valid.txt, dev.tsv) when a
hash of its text falls in the last `heldout_percent`; so no dev example's
text is seen in pre-training. The fortune files repeat some quotations with
other punctuation or attribution, so train.txt also leaves out every entry
that shares a run of 8 words with a held-out one (273 of 13,659 entries;
before, 38 of the 338 topic dev sentences had such a near-copy in the
pre-training text). The tasks' train files are left as they were. Entries
are normalised to one line (runs of whitespace -> one space, control
characters such as the overstrike backspaces removed); `%`-only lines separate entries (the fortune format).
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np

FORTUNES_DIR = '/usr/share/games/fortunes'
TECH = ('computers', 'linux', 'debian', 'perl', 'linuxcookie')
EVERYDAY = ('food', 'law', 'medicine', 'sports', 'love', 'pets', 'education', 'kids', 'politics')
MAX_TASK_BYTES = 400  # topic / pair examples longer than this are left out of the tasks
NEAR_COPY_WORDS = 8  # pre-training text shares no run this long with held-out text
_CONTROL = re.compile(r'[\x00-\x08\x0b-\x1f\x7f]')
_SENTENCE_END = re.compile(r'(?<=[.!?])\s+(?=[A-Z"])')


class FortunesMissing(RuntimeError):
  pass


def read_fortunes(directory: str = FORTUNES_DIR) -> Dict[str, List[str]]:
  """{category: [entry, ...]} with each entry normalised to one line."""
  if not os.path.isdir(directory):
    raise FortunesMissing(f'{directory} not found; install Debian `fortunes` (bash scripts/install_sample_sources.sh)')
  out: Dict[str, List[str]] = {}
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    if '.' in name or not os.path.isfile(path) or os.path.islink(path):
      continue
    with open(path, 'rb') as f:
      text = f.read().decode('utf-8', errors='replace')
    entries = []
    for chunk in re.split(r'^%\s*$', text, flags=re.M):
      chunk = _CONTROL.sub('', chunk.replace('\t', ' '))
      chunk = ' '.join(chunk.split())
      if chunk:
        entries.append(chunk)
    if entries:
      out[name] = entries
  if not out:
    raise FortunesMissing(f'no fortune files in {directory}')
  return out


def is_heldout(entry: str, percent: int) -> bool:
  digest = hashlib.sha256(entry.encode('utf-8')).digest()
  return int.from_bytes(digest[:4], 'little') % 100 < percent


def _word_runs(entry: str, n: int = NEAR_COPY_WORDS) -> set:
  words = re.findall(r'[a-z0-9]+', entry.lower())
  return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def near_copies(entries: List[str], heldout: List[str]) -> List[bool]:
  """For each entry: does it share a run of NEAR_COPY_WORDS words with any held-out entry?"""
  runs = set().union(*(_word_runs(e) for e in heldout)) if heldout else set()
  return [bool(_word_runs(e) & runs) for e in entries]


def split_pair(entry: str) -> Optional[Tuple[str, str]]:
  """(first sentences, the rest) at the sentence boundary nearest the middle.

  The attribution (" -- Author") is dropped first: initials would give
  false sentence ends and a name is not a continuation.
  """
  entry = entry.split(' -- ')[0].strip()
  cuts = [m.start() for m in _SENTENCE_END.finditer(entry) if 20 <= m.start() <= len(entry) - 20]
  if not cuts:
    return None
  cut = min(cuts, key=lambda c: abs(c - len(entry) / 2))
  first, second = entry[:cut].strip(), entry[cut:].strip()
  return (first, second) if first and second else None


def _write_tsv(path: str, header: List[str], rows: List[List[str]]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\t'.join(header) + '\n')
    for row in rows:
      f.write('\t'.join(row) + '\n')


def write_text_sample(
  out: str, *, seed: int = 0, heldout_percent: int = 10, directory: str = FORTUNES_DIR, log=print
) -> Dict[str, int]:
  """Writes the corpus and both tasks under ``out``; returns counts per file."""
  fortunes = read_fortunes(directory)
  rng = np.random.default_rng(seed)
  counts: Dict[str, int] = {}
  corpus = {'train': [], 'valid': []}
  for category in sorted(fortunes):
    for entry in fortunes[category]:
      corpus['valid' if is_heldout(entry, heldout_percent) else 'train'].append(entry)
  os.makedirs(os.path.join(out, 'text'), exist_ok=True)
  keep = {
    'train': [not c for c in near_copies(corpus['train'], corpus['valid'])],
    'valid': [True] * len(corpus['valid']),
  }
  for split, entries in corpus.items():
    # The permutation of all entries, then the near-copies dropped: the
    # random stream, and so the tasks below, are as without the filter.
    order = [i for i in rng.permutation(len(entries)) if keep[split][i]]
    with open(os.path.join(out, 'text', f'{split}.txt'), 'w', encoding='utf-8') as f:
      f.write(''.join(entries[i] + '\n' for i in order))
    counts[f'text/{split}.txt'] = len(order)

  # Topic task (SST-2 layout: sentence \t label).
  topic = {'train': [], 'dev': []}
  for label, cats in (('1', TECH), ('0', EVERYDAY)):
    for category in cats:
      for entry in fortunes.get(category, []):
        if len(entry.encode('utf-8')) <= MAX_TASK_BYTES:
          topic['dev' if is_heldout(entry, heldout_percent) else 'train'].append([entry, label])
  for split, rows in topic.items():
    rows = [rows[i] for i in rng.permutation(len(rows))]
    _write_tsv(os.path.join(out, 'glue', 'SST-2', f'{split}.tsv'), ['sentence', 'label'], rows)
    counts[f'glue/SST-2/{split}.tsv'] = len(rows)

  # Continuation task (RTE layout: index \t sentence1 \t sentence2 \t label).
  for split, entries in (('train', corpus['train']), ('dev', corpus['valid'])):
    pairs = [p for p in (split_pair(e) for e in entries if len(e.encode('utf-8')) <= MAX_TASK_BYTES) if p]
    order = rng.permutation(len(pairs))
    rows = []
    for k, i in enumerate(order):
      first, second = pairs[i]
      if k % 2:  # negative: the second half of another entry
        j = int(order[(k + 1 + rng.integers(len(pairs) - 1)) % len(pairs)])
        j = j if j != i else int(order[(k + 1) % len(pairs)])
        second, label = pairs[j][1], 'not_entailment'
      else:
        label = 'entailment'
      rows.append([str(len(rows)), first, second, label])
    _write_tsv(os.path.join(out, 'glue', 'RTE', f'{split}.tsv'), ['index', 'sentence1', 'sentence2', 'label'], rows)
    counts[f'glue/RTE/{split}.tsv'] = len(rows)
  for name, n in counts.items():
    log(f'text: wrote {os.path.join(out, name)} ({n} rows)')
  return counts
