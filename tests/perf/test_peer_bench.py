"""scripts/peer_bench.py on the tiny model, one round: ours always runs; a
peer whose package is absent (torch, transformers, perceiver-pytorch, a
DeepMind checkout) is named in a `peer_unavailable` line, and a present one
gives a ratio line with matching parameter counts."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from perceiver import onednn

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, 'scripts', 'peer_bench.py')


def _run(*args):
  proc = subprocess.run([sys.executable, SCRIPT, *args], cwd=REPO, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()], proc.stderr


def test_tiny_perceiver_io_vs_peers_one_round():
  records, stderr = _run('--cases=tiny_io_train', '--rounds=1', '--vs=hf,reference', '--peak_sizes=64')
  kinds = {(r['measurement'], r.get('impl') or r.get('peer')) for r in records}
  assert ('peer_setup', 'ours') in kinds and ('peer_step', 'ours') in kinds
  assert records[0]['measurement'] == 'peer_bench_command' and '--peak_sizes=64' in records[0]['command']
  # MFU: float32 and bfloat16 hardware peaks, and our step in both dtypes against them.
  peaks = {r['dtype']: r for r in records if r['measurement'] == 'hardware_peak'}
  assert set(peaks) == {'float32', 'bfloat16'} and all(p['peak_flops_per_s'] > 0 for p in peaks.values())
  mfu = next(r for r in records if r['measurement'] == 'peer_mfu')
  for impl, dtype in (('ours', 'float32'), ('ours_bf16', 'bfloat16')):
    assert mfu[impl]['compute_dtype'] == dtype and mfu[impl]['matmul_flops'] > 0
    assert mfu[impl]['mfu'] == mfu[impl]['achieved_flops_per_s'] / peaks[dtype]['peak_flops_per_s']
  assert mfu['bf16_speedup'] > 0
  # model.cpu_matmul=onednn_bf16 takes its turn too (or is named as unavailable, with the reason).
  if onednn.available():
    assert mfu['ours_onednn']['matmul_flops'] > 0 and mfu['onednn_bf16_speedup'] > 0
  else:
    assert any(r['measurement'] == 'peer_unavailable' and r['impl'] == 'ours_onednn' for r in records)
  ours = next(r for r in records if r['measurement'] == 'peer_step' and r['impl'] == 'ours')
  assert ours['num_params'] > 0 and ours['median_s'] > 0 and ours['rss_peak_bytes'] > 0
  # A first process compiled into the (fresh) cache; the timed one loaded from it.
  cold = next(r for r in records if r['measurement'] == 'peer_cold_start' and r['impl'] == 'ours')
  assert cold['rss_peak_bytes'] > 0 and cold['setup_s'] > 0
  # No --reference_path: the reference is reported, by name, as unavailable.
  ref = next(r for r in records if r['measurement'] == 'peer_unavailable' and r['impl'] == 'reference')
  assert 'reference_path' in ref['reason'] and 'reference' in stderr
  have_hf = all(importlib.util.find_spec(m) for m in ('torch', 'transformers'))
  if have_hf:
    ratio = next(r for r in records if r['measurement'] == 'peer_ratio' and r['peer'] == 'hf' and r['ours'] == 'ours')
    assert ratio['params_match'] and ratio['time_ratio'] > 0 and ratio['rss_ratio'] > 0
    # bf16 against bf16: HF under autocast beside ours with oneDNN's bf16 matmuls.
    if onednn.available():
      ratio = next(
        r for r in records if r['measurement'] == 'peer_ratio' and r['peer'] == 'hf_bf16' and r['ours'] == 'ours_onednn'
      )
      assert ratio['params_match'] and ratio['time_ratio'] > 0
  else:
    hf = next(r for r in records if r['measurement'] == 'peer_unavailable' and r['impl'] == 'hf')
    assert 'cannot import' in hf['reason'] and ('torch' in hf['reason'] or 'transformers' in hf['reason'])


@pytest.mark.slow  # Moved out of the default run (its time budget); .ci/run runs it.
def test_lucidrains_takes_only_the_interleaved_perceiver_and_bad_cases_fail_early():
  records, _ = _run('--cases=tiny_io_train', '--rounds=1', '--vs=lucidrains', '--nomfu', '--compilation_cache=off')
  assert not [r for r in records if r['measurement'] in ('hardware_peak', 'peer_mfu', 'peer_cold_start')]
  # lucidrains' model is the original Perceiver: not started for Perceiver IO.
  assert not [r for r in records if r.get('impl') == 'lucidrains' or r.get('peer') == 'lucidrains']
  proc = subprocess.run([sys.executable, SCRIPT, '--cases=nope'], cwd=REPO, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 2 and "unknown --cases entry 'nope'" in proc.stderr
  proc = subprocess.run([sys.executable, SCRIPT, '--vs=pytorch'], cwd=REPO, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 2 and "unknown peer(s) ['pytorch']" in proc.stderr
  # Per-tool flags (perceiver_tools/cli/_flags.py): main(argv) is callable in-process.
  from perceiver_tools.cli import peer_bench  # pylint: disable=g-import-not-at-top

  with pytest.raises(SystemExit) as exit_info:
    peer_bench.main(['--rounds=x'])
  assert 'rounds' in str(exit_info.value.code)
  assert peer_bench.main(['--cases=nope']) == 2


@pytest.mark.slow  # Moved out of the default run (its time budget); .ci/run runs it.
def test_a_peer_dying_at_setup_is_reported_and_ours_still_runs(tmp_path):
  """A peer process that dies while setting up (on a GPU: out of memory at that
  batch) is a `peer_unavailable` line with its last error line; the run goes
  on, and --summarize prints the table of what ran, the attention A/B included."""
  failing = tmp_path / 'python'
  failing.write_text('#!/bin/sh\necho "RuntimeError: CUDA out of memory (simulated)" >&2\nexit 1\n')
  failing.chmod(0o755)
  records, stderr = _run(
    '--cases=tiny_io_train',
    '--rounds=1',
    '--vs=hf',
    '--nomfu',
    '--compilation_cache=off',
    '--attention_ab',
    '--ours_b_model=encoder.project_positions_once=false',
    f'--peer_python={failing}',
  )
  hf = next(r for r in records if r['measurement'] == 'peer_unavailable' and r['impl'] == 'hf')
  assert hf['reason'].endswith('RuntimeError: CUDA out of memory (simulated)') and 'out of memory' in stderr
  steps = {r['impl']: r for r in records if r['measurement'] == 'peer_step'}
  # On a CPU the selector never picks cuDNN: the A/B worker runs the same program.
  assert set(steps) == {'ours', 'ours+model', 'ours_plain_attention'} and all(s['median_s'] > 0 for s in steps.values())
  log = tmp_path / 'run.jsonl'
  log.write_text('\n'.join(json.dumps(r) for r in records) + '\nnot json\n')
  proc = subprocess.run(
    [sys.executable, SCRIPT, f'--summarize={log}'], cwd=REPO, capture_output=True, text=True, timeout=300
  )
  assert proc.returncode == 0, proc.stderr
  rows = proc.stdout.splitlines()
  assert any(row.split()[:3] == ['tiny_io_train', 'ours_plain_attention', '2'] for row in rows)
  assert any('peer_unavailable hf' in row and 'CUDA out of memory (simulated)' in row for row in rows)
  proc = subprocess.run(
    [sys.executable, SCRIPT, f'--summarize={tmp_path / "missing.jsonl"}'],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 2 and '--summarize: cannot read' in proc.stderr


@pytest.mark.slow  # Moved out of the default run (its time budget); .ci/run runs it.
def test_gpu_bench_script_runs_its_cases_and_prints_the_table(tmp_path):
  """scripts/gpu_bench.sh end to end at toy size on the CPU: its plumbing
  (paths, the peer_bench call, the JSON lines file, the summary table). On a
  machine without CUDA the PyTorch peers are reported as unavailable or run
  on the CPU; ours runs on whatever JAX's default backend is."""
  env = dict(
    os.environ,
    PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''),
    CASES='tiny_io_train',
    BATCH='2',
    ROUNDS='1',
    PEAK_SIZES='64',
    MAIN_TIMEOUT='600',
    SITE=str(tmp_path / 'site'),
  )
  proc = subprocess.run(
    ['bash', os.path.join(REPO, 'scripts', 'gpu_bench.sh'), str(tmp_path / 'out')],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  records = [json.loads(x) for x in (tmp_path / 'out' / 'gpu_bench.jsonl').read_text().splitlines()]
  assert any(r['measurement'] == 'peer_step' and r['impl'] == 'ours' for r in records)
  assert '--compute_dtype=bfloat16' in records[0]['command']
  assert any(line.split()[:3] == ['tiny_io_train', 'ours', '2'] for line in proc.stdout.splitlines())
  assert 'peak bfloat16:' in proc.stdout


def test_our_worker_dying_fails_its_case_and_the_next_case_still_runs():
  """Ours dying while setting up (here: XLA rejects its flags at start) is a
  `peer_case_failed` line per case, with the worker's last error line; every
  case is still tried, and the exit status is 1."""
  proc = subprocess.run(
    [sys.executable, SCRIPT, '--cases=tiny_io_train,tiny_perceiver_train', '--rounds=1', '--vs=hf', '--nomfu'],
    cwd=REPO,
    env=dict(os.environ, XLA_FLAGS='--no_such_flag_for_peer_bench'),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 1, proc.stderr[-3000:]
  records = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
  failed = [r for r in records if r['measurement'] == 'peer_case_failed']
  assert [r['case'] for r in failed] == ['tiny_io_train', 'tiny_perceiver_train']
  assert all(
    r['error'].startswith('ours worker died: ') and 'no_such_flag_for_peer_bench' in r['error'] for r in failed
  )
  assert not [r for r in records if r['measurement'] == 'peer_step']


def test_model_option_ab_overrides_are_checked_before_anything_runs(capsys):
  # --ours_b_model: section.field=value, checked by the typed schema up front
  # (exit status 2, one line naming the field); the override reaches only
  # the "ours+model" worker's copy of the config.
  from perceiver_tools.cli import peer_bench  # pylint: disable=g-import-not-at-top

  for bad, says in (
    ('encoder.project_positions_once=maybe', 'model.encoder.project_positions_once must be a bool'),
    ('encoder', 'expected section.field=value'),
    ('name.x=1', "'name' is not a config section"),
    ('encoder.no_such_field=1', 'no_such_field'),
  ):
    assert peer_bench.main(['--cases=tiny_io_train', '--vs=', f'--ours_b_model={bad}']) == 2
    assert says in capsys.readouterr().err
  model = peer_bench.case_spec('tiny_io_train')['model']
  changed = peer_bench.with_overrides(model, ['encoder.project_positions_once=false', 'encoder.num_latents=4'])
  assert changed['encoder']['project_positions_once'] is False and changed['encoder']['num_latents'] == 4
  assert model['encoder'].get('project_positions_once', True) is True and model['encoder']['num_latents'] != 4
