#!/usr/bin/env bash
# GPU figures for the README's Performance section, in one run.
#
#   bash scripts/gpu_bench.sh --download   # once, on a machine with pip access:
#                                          # pure-Python wheels into .whl/
#   bash scripts/gpu_bench.sh [OUT_DIR]    # on the GPU machine, from the repo root
#
# For a GPU machine that has JAX with CUDA, PyTorch and transformers but not
# dm-haiku, ml-collections, jmp or perceiver-pytorch: those travel as wheels
# in .whl/ (ignored by git) and are installed into /tmp/site, and the repo is
# used in place (configs/ is linked there as `perceiver_configs`, the name
# setup.py installs it under). What it runs, all in bf16 compute with float32
# parameters, through scripts/peer_bench.py --device=gpu:
#   1. (SMOKE=1) a seconds-long run of both model families (tiny cases);
#   2. the hardware peak: the best bf16 (and float32) [n, n] matmul by XLA and
#      by PyTorch on the GPU;
#   3. configs/imagenet.py:io_fourier (Perceiver IO config A, vs Hugging Face)
#      and :paper (the Perceiver, vs lucidrains) at 224 x 224, interleaved
#      with the PyTorch code on the same GPU: step times and their ratio, bf16
#      MFU against (2), peak GPU memory of each process; with ATTENTION_AB=true
#      also ours with every attention call on the plain einsum path (no cuDNN).
# Batch (env BATCH, default 16): both processes of a case hold their memory
# at once, so each gets about half the GPU (ours, train, bf16: about 2.3 GB
# per example for the Perceiver and 1.7 GB for Perceiver IO, from XLA's
# memory analysis).
# Other knobs (env): CASES, ROUNDS, PEAK_SIZES, MAIN_TIMEOUT, ATTENTION_AB,
# XLA_FLAGS (e.g. --xla_gpu_enable_triton_gemm=false: on the H200, set-up took
# 79-99 s with it against 294 s without, not at one batch; docs/performance.md,
# "Accelerators").
# Targets (issue 14): bf16 MFU >= 0.40, ours / HF <= 0.7.
set -uo pipefail
cd "$(dirname "$0")/.."

# dm-haiku 0.0.17 is the release for jax >= 0.11 (what GPU images carry now).
WHEELS=(dm-haiku==0.0.17 jmp==0.0.4 ml-collections==1.1.0 perceiver-pytorch==0.11.0)
if [ "${1:-}" = "--download" ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl "${WHEELS[@]}"
  ls -l .whl
  exit 0
fi

OUT=${1:-${OUT:-/tmp/gpu_bench}}
SITE=${SITE:-/tmp/site}
mkdir -p "$OUT" "$SITE"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || exit 1
fi
python3 -c 'import perceiver_configs' 2>/dev/null || ln -sfn "$PWD/configs" "$SITE/perceiver_configs"
export PYTHONPATH=$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
# JAX takes GPU memory as it needs it (no 75% preallocation), so the PyTorch
# process of the same case fits beside it and the peak JAX reports is its own.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
BATCH=${BATCH:-16}
LOG=$OUT/gpu_bench.log
BENCH=(python3 scripts/peer_bench.py --device=gpu --compute_dtype=bfloat16 --vs=hf,lucidrains
  --peer_python=python3 --compilation_cache=off)

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv || true
  python3 -c 'import jax, torch, haiku, transformers
print("jax", jax.__version__, jax.devices(), "haiku", haiku.__version__)
print("torch", torch.__version__, torch.cuda.is_available(), "transformers", transformers.__version__)'
  if [ "${SMOKE:-0}" = 1 ]; then
    echo "== smoke"
    timeout "${SMOKE_TIMEOUT:-150}" "${BENCH[@]}" --cases=tiny_io_train,tiny_perceiver_train --rounds=2 --mfu=false
    echo "== smoke exit $?"
  fi
  echo "== paper-size models, batch $BATCH"
  timeout "${MAIN_TIMEOUT:-420}" "${BENCH[@]}" --cases="${CASES:-io_a_train,paper_perceiver_train}" \
    --batch_size="$BATCH" --rounds="${ROUNDS:-5}" --steps_per_turn=3 --peak_sizes="${PEAK_SIZES:-4096,8192}" \
    --attention_ab="${ATTENTION_AB:-false}"
  echo "== main exit $?"
  nvidia-smi --query-gpu=clocks.sm,temperature.gpu,power.draw --format=csv || true
} 2>&1 | tee "$LOG"
grep '^{' "$LOG" > "$OUT/gpu_bench.jsonl" || true
python3 scripts/peer_bench.py --summarize="$OUT/gpu_bench.jsonl" || true
echo "wrote $OUT/gpu_bench.jsonl"
