"""Released-format files through our loaders and our model: parity with the goldens.

DeepMind pickles: the safe loader's params/state run the golden inputs and
must reproduce the reference outputs. HF goldens: the weights go through
``load_checkpoint`` (HF names -> reference names), the config through ``hf_config_to_reference``, the inputs through
``convert_inputs`` (NCHW -> NHWC, ids/mask renamed), then
``perceiver.models.build_from_reference_config`` runs them. The bar is the
goldens' (max abs err <= 1e-4, max rel err <= 1e-3).
"""

import numpy as np
import pytest

from perceiver.checkpoints import hf, load_checkpoint, load_deepmind_checkpoint

golden = pytest.importorskip('perceiver_tools.golden')


@pytest.mark.parametrize(
  'name',
  [
    'vision_perceiver_learned',
    'vision_perceiver_fourier',
    'vision_perceiver_conv',
    'language_perceiver',
  ],
)
def test_hf_golden_parity(golden_dir, name):
  path = golden_dir / 'hf' / f'{name}.npz'
  data = np.load(path)
  params, state, config = load_checkpoint(path)
  inputs = hf.convert_inputs({k.split('::', 1)[1]: data[k] for k in data.files if k.startswith('input::')})
  case = golden.GoldenCase(name, config, params, state, inputs, {'': data['output']})
  abs_err, rel_err = golden.compare(golden.run_case(case), case.outputs)
  print(f'{name} max_abs_err={abs_err:.3e} max_rel_err={rel_err:.3e}')
  assert abs_err <= golden.MAX_ABS_ERR and rel_err <= golden.MAX_REL_ERR


@pytest.mark.parametrize(
  'name',
  ['imagenet_conv_preprocessing.pystate', 'imagenet_fourier_position_encoding.pystate', 'language_masked_lm.pickle'],
)
def test_released_pickle_parity(golden_dir, name):
  stem = name.rsplit('.', 1)[0]
  case = golden.load_golden(str(golden_dir / 'official' / f'{stem}.npz'))
  ckpt = load_deepmind_checkpoint(golden_dir / 'official' / 'pickles' / name)
  case.params, case.state = ckpt['params'], ckpt['state']
  abs_err, rel_err = golden.compare(golden.run_case(case), case.outputs)
  assert abs_err <= golden.MAX_ABS_ERR and rel_err <= golden.MAX_REL_ERR
