"""scripts/benchmark.py end to end on a tiny model: every stdout line is a
JSON record with the documented fields (no timing assertions)."""

import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, 'scripts', 'benchmark.py')

TRAIN_FIELDS = (
  'lower_s',
  'compile_s',
  'step_median_s',
  'step_min_s',
  'examples_per_s',
  'flops',
  'xla_flops',
  'mfu',
  'mfu_best',
  'mfu_xla',
  'xla_temp_bytes',
  'xla_argument_bytes',
  'xla_output_bytes',
  'xla_alias_bytes',
  'xla_peak_bytes',
  'rss_peak_bytes',
  'rss_peak_delta_bytes',
  'num_params',
  'batch_size',
  'input_size',
  'num_inputs',
  'loadavg_1m',
  'train_step',
)


def _run(*args):
  proc = subprocess.run([sys.executable, SCRIPT, *args], cwd=REPO, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  lines = [line for line in proc.stdout.splitlines() if line.strip()]
  assert lines, proc.stderr[-4000:]
  return [json.loads(line) for line in lines]  # Fails on any non-JSON line.


@pytest.mark.slow  # Moved out of the default run (its time budget); .ci/run runs it.
def test_train_infer_profile_records():
  records = _run(
    '--model_preset=tiny', '--steps=1', '--peak_size=256', '--mode=all', '--profile', '--hw_peak_sizes=128,256'
  )
  by_kind = {r['measurement']: r for r in records}
  assert [r['measurement'] for r in records] == ['matmul_peak', 'hardware_peak', 'train', 'profile', 'infer']
  peak, hw = by_kind['matmul_peak'], by_kind['hardware_peak']
  assert peak['flops'] == 2 * 256**3 and peak['flops_per_s'] > 0
  assert hw['dtype'] == 'float32' and {'xla', 'numpy'} <= set(hw['paths'])
  train, infer = by_kind['train'], by_kind['infer']
  for field in TRAIN_FIELDS:
    assert field in train, field
  assert train['batch_size'] == 2 and train['input_size'] == [16, 16] and train['num_inputs'] == 256
  assert train['param_dtypes'] == ['float32']
  assert train['mfu'] == pytest.approx(train['flops'] / train['step_median_s'] / hw['peak_flops_per_s'], rel=1e-3)
  assert train['mfu_xla'] == pytest.approx(train['flops'] / train['step_median_s'] / peak['flops_per_s'], rel=1e-3)
  assert train['xla_peak_bytes'] >= train['xla_temp_bytes'] > 0
  # Donated state: the new state is written over the old one.
  assert train['xla_alias_bytes'] > 0
  # Backward ~2x forward matmuls (no input gradient for the first layer).
  assert 2.0 < train['flops'] / infer['flops'] < 3.5
  # The shared blocks loop, so XLA's loop-blind count is below ours.
  assert train['xla_flops'] < train['flops'] * 1.5
  shares = by_kind['profile']['share_by_kind']
  assert math.isclose(sum(shares.values()), 1.0, abs_tol=0.01) and 'matmul' in shares


@pytest.mark.slow  # Moved out of the default run (its time budget); .ci/run runs it.
def test_sweep_records_scaling():
  records = _run(
    '--model_preset=tiny',
    '--steps=1',
    '--peak_size=0',
    '--mode=infer',
    '--sweep=input_size',
    '--sweep_sizes=8,16',
    '--hw_peak_sizes=',
  )
  sweeps = [r for r in records if r['measurement'] == 'sweep']
  assert [(r['part'], r['num_inputs']) for r in sweeps] == [
    ('full', 64),
    ('input_dependent', 64),
    ('full', 256),
    ('input_dependent', 256),
  ]
  (ratio,) = [r for r in records if r['measurement'] == 'sweep_ratio']
  assert ratio['input_ratio'] == 4.0
  assert ratio['latent_flops_constant'] is True and ratio['latent_flops'][0] > 0
  assert 3.0 < ratio['input_dependent_flops_ratio'] <= 4.0
  assert ratio['full_flops_ratio'] < ratio['input_dependent_flops_ratio']
  assert 'meets_target' in ratio and ratio['target_input_dependent_time_ratio'] == pytest.approx(4.4)


@pytest.mark.slow  # Two train-step compiles, one of them unrolled: ~2 min.
def test_compile_mode_shows_shared_blocks_compiled_once():
  (looped,) = _run('--model_preset=tiny', '--mode=compile')
  (unrolled,) = _run('--model_preset=tiny', '--mode=compile', '--unroll')
  assert looped['measurement'] == unrolled['measurement'] == 'compile'
  assert looped['num_params'] == unrolled['num_params']
  # Forward and backward loop over the two repeats of the shared block...
  assert looped['hlo_while_loops'] >= 2 and unrolled['hlo_while_loops'] == 0
  # ...so the unrolled program holds more copies of the block's matmuls.
  assert unrolled['hlo_dots'] > looped['hlo_dots']


@pytest.mark.slow
@pytest.mark.skipif(
  not os.path.exists(os.path.join(REPO, 'configs', 'imagenet.py')), reason='configs/imagenet.py not present'
)
def test_config_file_and_project_train_step():
  (record,) = _run('--config=configs/imagenet.py:smoke', '--mode=compile')
  assert record['config'] == 'configs/imagenet.py:smoke'
  assert record['train_step'] in (
    'perceiver.train.make_train_step',
    'scripts/benchmark.py fallback (optax LAMB + softmax CE)',
  )
  assert record['input_size'] == [16, 16] and record['batch_size'] == 8


@pytest.mark.slow  # Moved out of the default run (its time budget); .ci/run runs it.
def test_chunk_comparison_in_one_process():
  records = _run('--model_preset=tiny', '--steps=1', '--peak_size=0', '--compare_chunk_sizes=0,64', '--hw_peak_sizes=')
  assert [r['measurement'] for r in records] == ['train', 'train', 'chunk_ratio']
  plain, chunked, ratio = records
  assert (plain['attention_chunk_size'], chunked['attention_chunk_size']) == (0, 64)
  assert ratio['chunk_sizes'] == [0, 64]
  assert ratio['peak_memory_ratio'] == pytest.approx(chunked['xla_peak_bytes'] / plain['xla_peak_bytes'], rel=1e-3)
  assert ratio['step_time_ratio'] > 0 and ratio['step_time_ratio_best'] > 0


def test_hardware_peak_is_the_best_path():
  """The MFU denominator: best over sizes and paths, each path reported."""
  sys.path.insert(0, REPO)
  from perceiver_tools import perf  # pylint: disable=g-import-not-at-top

  hw = perf.hardware_matmul_peak('float32', sizes=(64, 128), repeats=1)
  assert set(hw['paths']) == {'xla', 'numpy'}  # No torch interpreter given.
  bests = {name: p['best_flops_per_s'] for name, p in hw['paths'].items()}
  assert hw['peak_flops_per_s'] == max(bests.values()) > 0
  assert hw['peak_path'] == max(bests, key=bests.get)
  assert set(hw['paths']['xla']['flops_per_s']) == {'64', '128'}
  bf16 = perf.hardware_matmul_peak('bfloat16', sizes=(64,), repeats=1)
  assert set(bf16['paths']) == {'xla'}  # numpy has no bfloat16 matmul.
  # Accelerators queue `inner` matmuls per timing (launch overhead hidden); same keys.
  chained = perf.hardware_matmul_peak('float32', sizes=(64,), repeats=2, inner=3)
  assert chained['paths']['xla']['best_flops_per_s'] > 0
