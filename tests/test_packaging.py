"""Packaging: a model-only install, extras, the constraints file, entry points.

The model library must import and run without TensorFlow or any other extra
(`pip install perceiver` installs only INSTALL_REQUIRES); a subprocess blocks
those modules to keep that true as the code changes.
"""

import ast
import json
import os
import runpy
import subprocess
import sys
import textwrap
from unittest import mock


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Top-level modules that only the extras install (absl-py comes with dm-haiku).
EXTRA_MODULES = (
  'tensorflow',
  'tensorflow_datasets',
  'optax',
  'orbax',
  'ml_collections',
  'chex',
  'etils',
  'matplotlib',
  'trimesh',
  'mlxtend',
  'sklearn',
  'h5py',
  'soundfile',
  'PIL',
  'safetensors',
  'av',
  'importlib_resources',
)
MODEL_MODULES = (
  'perceiver',
  'perceiver.attention',
  'perceiver.encoders',
  'perceiver.decoders',
  'perceiver.io_processors',
  'perceiver.position_encoding',
  'perceiver.models',
  'perceiver.baselines',
  'perceiver.checkpoints',
)


def _setup_kwargs() -> dict:
  """The keyword arguments setup.py passes to setuptools.setup."""
  with mock.patch('setuptools.setup') as setup:
    runpy.run_path(os.path.join(REPO, 'setup.py'))
  return setup.call_args.kwargs


def test_model_imports_and_runs_without_the_extras():
  tiny = runpy.run_path(os.path.join(REPO, 'tests', 'model', 'conftest.py'))['tiny_config']()
  code = textwrap.dedent(f"""
      import importlib.abc, json, sys

      class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
          if name.split('.')[0] in {EXTRA_MODULES!r}:
            raise ImportError(f'{{name}} is blocked: not a model dependency')
          return None

      sys.meta_path.insert(0, Blocker())
      import ast
      for name in {MODEL_MODULES!r}:
        importlib.import_module(name)
      import jax, jax.numpy as jnp
      from perceiver import models
      net = models.build_model(json.loads({json.dumps(tiny)!r}))
      x = {{'image': jnp.ones((2, 6, 6, 3))}}
      params, state = net.init(jax.random.PRNGKey(0), x, is_training=False)
      logits, _ = net.apply(params, state, None, x, is_training=False)
      assert not any(m.split('.')[0] in {EXTRA_MODULES!r} for m in sys.modules)
      print('logits', tuple(logits.shape))
  """)
  proc = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO, timeout=300, check=False
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'logits (2, 5)' in proc.stdout


def test_install_requires_are_model_only_and_the_constraints_pin_every_requirement():
  from packaging.requirements import Requirement  # pylint: disable=import-outside-toplevel

  kwargs = _setup_kwargs()
  base = [Requirement(r) for r in kwargs['install_requires']]
  assert {r.name for r in base} == {'jax', 'dm-haiku', 'numpy', 'jmp', 'einops'}
  assert all(r.specifier for r in base), 'every requirement has a version range'
  assert not any(s.operator == '==' for r in base for s in r.specifier)
  pins = {}
  with open(os.path.join(REPO, 'constraints.txt')) as f:
    for line in f:
      line = line.split('#')[0].strip()
      if line:
        name, version = line.split('==')
        pins[name.lower().replace('_', '-')] = version
  extras = kwargs['extras_require']
  assert {'data', 'train', 'plots', 'hf', 'video', 'test', 'all'} <= set(extras)
  for spec in kwargs['install_requires'] + extras['all']:
    req = Requirement(spec)
    name = req.name.lower().replace('_', '-')
    assert name in pins, f'{name} is not pinned in constraints.txt'
    assert req.specifier.contains(pins[name]), f'constraints.txt pins {name}=={pins[name]}, outside {req}'


def test_console_scripts_resolve_and_the_packages_exist():
  kwargs = _setup_kwargs()
  scripts = kwargs['entry_points']['console_scripts']
  assert {s.split('=')[0] for s in scripts} >= {
    'perceiver-train',
    'perceiver-check-golden',
    'perceiver-convert',
    'perceiver-eval',
    'perceiver-tables',
  }
  for script in scripts:  # Parsed, not imported: some tools import TensorFlow.
    module, func = script.split('=')[1].split(':')
    path = kwargs['package_dir'].get(module.split('.')[0], module.split('.')[0])
    path = os.path.join(REPO, path, *module.split('.')[1:]) + '.py'
    with open(path) as f:
      tree = ast.parse(f.read())
    assert any(isinstance(n, ast.FunctionDef) and n.name == func for n in tree.body), script
  # No generic top-level names: configs/ and experiments/ install under perceiver_*.
  assert all(p.startswith('perceiver') for p in kwargs['packages'])
  for package in kwargs['packages']:
    path = kwargs['package_dir'].get(package, package.replace('.', os.sep))
    assert os.path.isfile(os.path.join(REPO, path, '__init__.py')), package
  assert os.path.isfile(os.path.join(REPO, 'perceiver', 'py.typed'))


_SHIMS = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, 'scripts')) if f.endswith('.py') and f != 'benchmark.py')


def test_script_shims_call_their_tool():
  for name in _SHIMS:
    with open(os.path.join(REPO, 'scripts', f'{name}.py')) as f:
      text = f.read()
    assert f'from perceiver_tools.cli import {name}\n' in text and f'{name}.run()' in text, name
  # One for real, as a user runs it from the checkout.
  proc = subprocess.run(
    [sys.executable, os.path.join('scripts', 'make_tables.py'), '--help'],
    capture_output=True,
    text=True,
    cwd=REPO,
    timeout=120,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'scripts/make_tables.py' in proc.stdout and 'flags:' in proc.stdout


def test_no_script_edits_sys_path():
  for name in os.listdir(os.path.join(REPO, 'scripts')):
    if name.endswith('.py'):
      with open(os.path.join(REPO, 'scripts', name)) as f:
        assert 'sys.path' not in f.read() or name == 'benchmark.py', name


_CLI = os.path.join(REPO, 'perceiver_tools', 'cli')
_TOOLS = sorted(f[:-3] for f in os.listdir(_CLI) if f.endswith('.py') and not f.startswith('_'))


def _global_flag_uses(path: str) -> list[str]:
  """Where a tool departs from the per-tool flag style of cli/_flags.py."""
  with open(path) as f:
    text = f.read()
  found = [] if '_flags.parse(' in text else ['never calls _flags.parse']
  for node in ast.walk(ast.parse(text)):
    if isinstance(node, ast.ImportFrom) and node.module in ('absl', 'absl.app'):
      if node.module == 'absl.app' or any(a.name == 'app' for a in node.names):
        found.append(f'line {node.lineno}: imports absl.app (app.run parses into the global flags)')
    elif isinstance(node, ast.Import) and any(a.name == 'absl.app' for a in node.names):
      found.append(f'line {node.lineno}: imports absl.app')
    elif isinstance(node, ast.Attribute) and node.attr == 'FLAGS' and getattr(node.value, 'id', None) == 'flags':
      found.append(f'line {node.lineno}: uses the global flags.FLAGS')
    elif (
      isinstance(node, ast.Call)
      and isinstance(node.func, ast.Attribute)
      and getattr(node.func.value, 'id', None) in ('flags', 'config_flags')
      and node.func.attr.startswith(('DEFINE', 'mark_'))
      and not any(k.arg == 'flag_values' for k in node.keywords)
    ):
      found.append(f'line {node.lineno}: {node.func.attr} without flag_values= (defines on the global flags)')
  return found


def test_cli_tools_use_per_tool_flags():
  assert {'flow', 'autoencode', 'inspect_data', 'xla_cpu_flags', 'plot_curves'} <= set(_TOOLS)
  for name in _TOOLS:
    problems = _global_flag_uses(os.path.join(_CLI, f'{name}.py'))
    assert not problems, f'perceiver_tools/cli/{name}.py: {problems}'
