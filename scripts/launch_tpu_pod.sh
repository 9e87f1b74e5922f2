#!/usr/bin/env bash
# Example: train a paper config on a Cloud TPU pod slice (every host runs the
# same command; JAX finds the coordinator and its process id by itself).
# Documented, not run in this repository's tests.
#
#   TPU_NAME=my-v4-64 ZONE=us-central2-b BUCKET=gs://my-bucket \
#     bash scripts/launch_tpu_pod.sh configs/imagenet.py:paper imagenet_paper
#
# What the flags do:
# * --config.parallel.multihost=True: jax.distributed.initialize() with
#   auto-detection (coordinator address, process count and id come from the
#   TPU environment); each host then reads its own 1/num_hosts of the data
#   and feeds its rows of every global batch.
# * --workdir on GCS: all hosts see the same checkpoints; a preempted or
#   restarted job resumes from the latest complete one (orbax finalizes a
#   step atomically; SIGTERM on preemption writes a checkpoint first).
# * train.batch_size is the global batch (1024 for the paper); add
#   --config.train.grad_accum_steps=N if it does not fit in device memory,
#   or --config.parallel.param_sharding=fsdp to shard parameters and
#   optimizer state over the devices.
# * data_dir / manual_dir: TFDS records prepared once (see perceiver/data),
#   readable from every host.
set -euo pipefail

CONFIG=${1:?usage: launch_tpu_pod.sh CONFIG_FILE:PRESET RUN_NAME}
RUN=${2:?usage: launch_tpu_pod.sh CONFIG_FILE:PRESET RUN_NAME}
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${BUCKET:?set BUCKET}"
REPO_URL=${REPO_URL:-https://github.com/your-org/perceiver.git}

read -r -d '' REMOTE <<EOF || true
set -e
if [ ! -d perceiver ]; then git clone ${REPO_URL} perceiver; fi
cd perceiver && git pull --ff-only
python3 -m pip install -q -e . 'jax[tpu]==0.10.2' \
  -f https://storage.googleapis.com/jax-releases/libtpu_releases.html
python3 -m experiments.main \
  --config=${CONFIG} \
  --workdir=${BUCKET}/runs/${RUN} \
  --config.parallel.multihost=True \
  --config.data.data_dir=${BUCKET}/tensorflow_datasets \
  --config.data.manual_dir=${BUCKET}/manual \
  2>&1 | tee -a ~/${RUN}.log
EOF

gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}" --worker=all \
  --command="${REMOTE}"
