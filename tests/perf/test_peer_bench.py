"""scripts/peer_bench.py on the tiny model, one round: ours always runs; a
peer whose package is absent (torch, transformers, perceiver-pytorch, a
DeepMind checkout) is named in a `peer_unavailable` line, and a present one
gives a ratio line with matching parameter counts."""

import importlib.util
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, 'scripts', 'peer_bench.py')


def _run(*args):
  proc = subprocess.run([sys.executable, SCRIPT, *args], cwd=REPO, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()], proc.stderr


def test_tiny_perceiver_io_vs_peers_one_round():
  records, stderr = _run('--cases=tiny_io_train', '--rounds=1', '--vs=hf,reference')
  kinds = {(r['measurement'], r.get('impl') or r.get('peer')) for r in records}
  assert ('peer_setup', 'ours') in kinds and ('peer_step', 'ours') in kinds
  ours = next(r for r in records if r['measurement'] == 'peer_step' and r['impl'] == 'ours')
  assert ours['num_params'] > 0 and ours['median_s'] > 0 and ours['rss_peak_bytes'] > 0
  # No --reference_path: the reference is reported, by name, as unavailable.
  ref = next(r for r in records if r['measurement'] == 'peer_unavailable' and r['impl'] == 'reference')
  assert 'reference_path' in ref['reason'] and 'reference' in stderr
  have_hf = all(importlib.util.find_spec(m) for m in ('torch', 'transformers'))
  if have_hf:
    ratio = next(r for r in records if r['measurement'] == 'peer_ratio' and r['peer'] == 'hf')
    assert ratio['params_match'] and ratio['time_ratio'] > 0 and ratio['rss_ratio'] > 0
  else:
    hf = next(r for r in records if r['measurement'] == 'peer_unavailable' and r['impl'] == 'hf')
    assert 'cannot import' in hf['reason'] and ('torch' in hf['reason'] or 'transformers' in hf['reason'])


def test_lucidrains_takes_only_the_interleaved_perceiver_and_bad_cases_fail_early():
  records, _ = _run('--cases=tiny_io_train', '--rounds=1', '--vs=lucidrains')
  # lucidrains' model is the original Perceiver: not started for Perceiver IO.
  assert not [r for r in records if r.get('impl') == 'lucidrains' or r.get('peer') == 'lucidrains']
  proc = subprocess.run([sys.executable, SCRIPT, '--cases=nope'], cwd=REPO, capture_output=True, text=True, timeout=900)
  assert proc.returncode != 0 and "unknown --cases entry 'nope'" in proc.stderr
  proc = subprocess.run([sys.executable, SCRIPT, '--vs=pytorch'], cwd=REPO, capture_output=True, text=True, timeout=900)
  assert proc.returncode != 0 and "unknown peer(s) ['pytorch']" in proc.stderr
