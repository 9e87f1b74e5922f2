"""Train, reload, evaluate and look inside a Perceiver, through the public API.

  python examples/library_tour.py --workdir /tmp/tour [--preset quickstart|smoke]

1. Trains `configs/mnist.py:<preset>` with the experiment runner and exports
   its weights (`WORKDIR/params.npz`).
2. Loads them with `perceiver.load_pretrained` and evaluates the held-out
   digits with a plain `jax.jit(model.apply)`.
3. Draws the cross-attention maps of one digit (`scripts/attention_maps.py`,
   needs matplotlib) to `WORKDIR/attention_maps.png`.

Run from the repository root (the configs are read from `configs/`).
The quickstart preset takes about 6 minutes on 2 CPU cores; `smoke` seconds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import jax
import numpy as np

import perceiver
from perceiver_configs import mnist
from perceiver import train
from perceiver.train import input_pipeline


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--preset', default='quickstart', choices=sorted(mnist.PRESETS))
  args = parser.parse_args(argv)

  # 1. Train (resumes if the workdir already holds a checkpoint).
  config = mnist.get_config(args.preset)
  config.checkpoint.export_npz = True
  result = train.train_and_evaluate(config, args.workdir, 'train_and_eval')
  print(f'1. trained {result["step"]} steps: runner top-1 {result["eval"]["top1"]:.4f}')

  # 2. Reload the export and evaluate it with the public API.
  model, params, state = perceiver.load_pretrained(result['exported'])
  apply = jax.jit(model.apply)
  correct = count = 0
  for batch in input_pipeline.eval_batches(
    config.data, split=config.eval.split, host_batch=config.eval.batch_size, process_index=0, process_count=1
  ):
    logits, _ = apply(params, state, None, batch['image'])  # [B, 10]; images [B, 28, 28, 1]
    mask = batch['mask'] > 0
    correct += int((np.asarray(logits).argmax(-1) == batch['label'])[mask].sum())
    count += int(mask.sum())
  print(
    f'2. load_pretrained({os.path.basename(result["exported"])}): top-1 {correct / count:.4f} '
    f'on {count} held-out digits'
  )

  # 3. Attention maps of the first held-out digit.
  out = os.path.join(args.workdir, 'attention_maps.png')
  script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts', 'attention_maps.py')
  subprocess.run([sys.executable, script, '--workdir', args.workdir, '--out', out], check=True)
  print(f'3. attention maps: {out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
