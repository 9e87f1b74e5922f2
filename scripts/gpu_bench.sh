#!/usr/bin/env bash
# GPU figures for the README's Performance section, in one run.
#
#   bash scripts/gpu_bench.sh --download   # once, on a machine with pip access:
#                                          # pure-Python wheels into .whl/
#   bash scripts/gpu_bench.sh [OUT_DIR]    # on the GPU machine, from the repo root
#
# For a GPU machine that has JAX with CUDA, PyTorch and transformers but not
# dm-haiku, ml-collections, jmp or perceiver-pytorch: those travel as wheels
# in .whl/ (ignored by git) and are installed into /tmp/site. What it runs,
# all in bf16 compute with float32 parameters:
#   1. the hardware peak: the best bf16 [n, n] matmul by XLA and by PyTorch;
#   2. scripts/benchmark.py on configs/imagenet.py:paper (the Perceiver) and
#      :io_fourier (Perceiver IO config A) at 224 x 224: step time, bf16 MFU
#      against (1), XLA's peak memory;
#   3. scripts/peer_bench.py: the same two models in lucidrains' / Hugging
#      Face's PyTorch code on the same GPU, interleaved with ours: ratios and
#      peak GPU memory of each.
# Batch sizes (env BATCH_PERCEIVER, BATCH_IO; default 64) should fill the GPU.
# Targets (issue): bf16 MFU >= 0.40, ours / HF <= 0.7.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(dm-haiku==0.0.16 jmp==0.0.4 ml-collections==1.1.0 perceiver-pytorch==0.11.0)
if [ "${1:-}" = "--download" ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl "${WHEELS[@]}"
  ls -l .whl
  exit 0
fi

OUT=${1:-${OUT:-/tmp/gpu_bench}}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
# JAX takes GPU memory as it needs it, so the peak it reports is its own
# (and PyTorch in another process can share the GPU).
export XLA_PYTHON_CLIENT_PREALLOCATE=false
BP=${BATCH_PERCEIVER:-64}
BI=${BATCH_IO:-64}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c 'import jax, torch; print("jax", jax.__version__, jax.devices()); print("torch", torch.__version__, torch.cuda.is_available())'
  for preset in paper io_fourier; do
    batch=$BP; [ "$preset" = io_fourier ] && batch=$BI
    python3 scripts/benchmark.py --config=configs/imagenet.py:$preset --batch_size=$batch \
      --compute_dtype=bfloat16 --mode=train --steps=10 --peak_size=8192 \
      --hw_peak_sizes=4096,8192 --torch_python=python3
  done
  python3 scripts/peer_bench.py --device=gpu --compute_dtype=bfloat16 --rounds=10 \
    --steps_per_turn=3 --vs=hf,lucidrains --peer_python=python3 \
    --cases=paper_perceiver_train,io_a_train --batch_size=$BP
} 2>&1 | tee "$OUT/gpu_bench.log"
grep '^{' "$OUT/gpu_bench.log" > "$OUT/gpu_bench.jsonl" || true
echo "wrote $OUT/gpu_bench.jsonl"
