"""Defaults and validation of `data_config` (see the package docstring).

A user config names only the fields it changes; everything else comes from
`default_config(name)`. Unknown fields are rejected so that a typo in a
config file fails loudly instead of silently training with a default.

No default is None: ml_collections cannot override a None field from the
command line (`--config.data.manual_dir=DIR`), so "use the default" is
spelled '' for paths, 0 for `num_classes` (take it from the data's own label
list) and -1 for `repeat` / `drop_remainder` (training only). None is still
accepted from Python callers and means the same.
"""

import os
from typing import Any

import ml_collections

# Fields shared by every dataset.
_COMMON: dict[str, Any] = dict(
  data_dir='',  # TFDS data_dir for prepared records ('': TFDS default).
  manual_dir='',  # Where the user's public-format files are.
  on_corrupt='raise',  # 'raise' | 'skip' (skip and count, logged).
  prepare=True,  # Build the TFDS records from manual_dir if absent.
  train_split='train',  # TFDS split string behind split='train'.
  valid_split='validation',  # ... behind split='valid'.
  test_split='test',  # ... behind split='test'.
  shuffle_buffer=10_000,
  repeat=-1,  # -1: repeat for 'train' only; 0 / 1: never / always.
  drop_remainder=-1,  # -1: drop for 'train' only; 0 / 1: never / always.
  cache=False,  # Cache decoded examples in memory (small datasets).
  num_parallel_calls=-1,  # -1 = tf.data.AUTOTUNE.
)

_IMAGENET: dict[str, Any] = dict(
  train_split='train[10000:]',  # Perceiver IO reference split.
  valid_split='train[:10000]',
  test_split='validation',
  num_classes=0,  # 0: len(class_list) (TFDS labels.txt: 1,000).
  # One class (= inner tar name without .tar) per line, in label order;
  # '': TFDS's labels.txt (the 1,000 ILSVRC synsets). Relative paths are
  # under manual_dir.
  class_list='',
  # One class name per line, line i = label of ILSVRC2012_val_<i>.JPEG;
  # '': TFDS's validation_labels.txt. Relative paths are under manual_dir.
  validation_labels='',
  image_size=224,
  crop_area_range=(0.08, 1.0),  # Inception crop.
  crop_aspect_range=(3 / 4, 4 / 3),
  random_flip=True,
  randaugment_num_layers=4,  # N; 0 turns RandAugment off.
  randaugment_magnitude=5,  # M on the usual 0..10 scale.
  mixup_alpha=0.2,  # 0 turns MixUp off.
  cutmix_alpha=1.0,  # 0 turns CutMix off.
  mix_switch_prob=0.5,  # P(CutMix) per batch when both are on.
  eval_crop_padding=32,  # Centre crop of size/(size+pad) of short side.
  pos='crop',  # 'crop' | 'image' | 'none': emit `pos` [B, H*W, 2].
)

_AUDIOSET: dict[str, Any] = dict(
  train_split='balanced_train+unbalanced_train',
  valid_split='eval',
  test_split='eval',
  num_classes=0,  # 0: len(class_labels_indices.csv).
  shuffle_buffer=500,  # Examples hold 10 s of audio (~1 MB) each.
  modality='audio',  # 'audio' | 'video' | 'audio_video'.
  audio_repr='raw',  # 'raw' (480 x 128 patches) | 'mel' (4,800 inputs).
  clip_samples=61_440,  # 1.28 s at 48 kHz (= 32 frames at 25 fps).
  audio_patch_size=128,
  mel_frames=96,  # 96 x 50 = 4,800 mel inputs.
  mel_bins=50,
  specaugment=True,
  spec_num_freq_masks=2,
  spec_freq_mask_max=10,
  spec_num_time_masks=2,
  spec_time_mask_max=20,
  video_frames=32,
  video_size=224,
  video_crop_area_range=(0.3, 1.0),
  video_color_augment=True,
  video_random_flip=True,
  video_patched=False,  # True: `video` [B, 12544, 384] (2x8x8 patches).
  video_patch_shape=(2, 8, 8),
  video_dropout=0.3,  # audio_video training: P(zero the video stream).
  num_eval_clips=16,
  stored_video_size=256,  # Builder: shorter side of stored frames.
)

_MODELNET: dict[str, Any] = dict(
  train_split='train',
  valid_split='test',
  test_split='test',
  num_classes=0,  # 0: number of class folders / shape_names.txt.
  source='off',  # 'off' (Princeton tree) | 'hdf5' (PointNet files).
  num_points=2048,
  stored_points=10_000,  # OFF builder: surface samples stored per shape.
  scale_range=(0.99, 1.01),  # Train: per-point scaling.
)

_KINETICS: dict[str, Any] = dict(
  train_split='train',
  valid_split='validate',
  test_split='validate',
  num_classes=None,  # None: the number of distinct labels in the CSVs.
  shuffle_buffer=200,  # Examples hold seconds of frames and audio.
  num_frames=16,  # Perceiver IO: 16 frames of 224 x 224 (PAPERS.md).
  video_size=224,
  audio_samples_per_frame=1920,  # 48 kHz / 25 fps.
  stored_video_size=256,  # Builder: shorter side of the stored frames.
)

_DEFAULTS = {
  'imagenet2012': _IMAGENET,
  'audioset': _AUDIOSET,
  'modelnet40': _MODELNET,
  'kinetics': _KINETICS,
}

NAMES = tuple(_DEFAULTS)


def default_config(name: str) -> ml_collections.ConfigDict:
  """All fields of the `name` pipeline with their defaults."""
  if name not in _DEFAULTS:
    raise ValueError(f'unknown dataset name {name!r}; expected one of {NAMES}')
  fields = dict(name=name, **_COMMON)
  fields.update(_DEFAULTS[name])
  # A None default is typed (ml_collections placeholder), so that the
  # launcher can override it: `--config.data.manual_dir=DIR` on a plain None
  # field fails ("NoneType ... is not supported for overriding").
  fields = {
    k: ml_collections.config_dict.placeholder(_NONE_TYPES[k]) if v is None and k in _NONE_TYPES else v
    for k, v in fields.items()
  }
  return ml_collections.ConfigDict(fields)


_NONE_TYPES = dict(
  data_dir=str,
  manual_dir=str,
  train_split=str,
  valid_split=str,
  test_split=str,
  repeat=bool,
  drop_remainder=bool,
  num_classes=int,
)


def resolve_config(
  data_config: ml_collections.ConfigDict | dict[str, Any],
) -> ml_collections.ConfigDict:
  """Defaults overlaid with `data_config`; rejects unknown fields."""
  given = dict(data_config.items() if hasattr(data_config, 'items') else data_config)
  if 'name' not in given:
    raise ValueError(f'data_config.name is required (one of {NAMES})')
  config = default_config(given['name'])
  unknown = sorted(set(given) - set(config.keys()))
  if unknown:
    raise ValueError(
      f'unknown data_config field(s) {unknown} for {given["name"]!r}; known fields: {sorted(config.keys())}'
    )
  with config.unlocked():
    for key, value in given.items():
      if isinstance(value, ml_collections.ConfigDict):
        value = value.to_dict()
      if value is None and key in _NONE_MEANS:
        value = _NONE_MEANS[key]
      config[key] = value
  # Internally None keeps meaning "the default" (pipeline.py tests for it).
  for key in ('repeat', 'drop_remainder'):
    if config[key] is None or (config[key] == -1 and not isinstance(config[key], bool)):
      config[key] = None
    else:
      config[key] = bool(config[key])  # 0 / 1 from the command line.
  for key in ('data_dir', 'manual_dir', 'class_list', 'validation_labels'):
    if key in config:
      # `--config.data.data_dir=~/x` reaches us unexpanded: bash expands a
      # tilde after '=' only in variable assignments.
      config[key] = os.path.expanduser(str(config[key] or ''))
  if config.on_corrupt not in ('raise', 'skip'):
    raise ValueError(f"data_config.on_corrupt must be 'raise' or 'skip', got {config.on_corrupt!r}")
  _check_choice(config, 'pos', ('crop', 'image', 'none'))
  _check_choice(config, 'modality', ('audio', 'video', 'audio_video'))
  _check_choice(config, 'audio_repr', ('raw', 'mel'))
  _check_choice(config, 'source', ('off', 'hdf5'))
  return config


# What a None from a Python caller means, for fields whose default is not None.
_NONE_MEANS = dict(
  data_dir='', manual_dir='', num_classes=0, class_list='', validation_labels='', repeat=-1, drop_remainder=-1
)


def _check_choice(config, field: str, choices: tuple[str, ...]) -> None:
  if field in config and config[field] not in choices:
    raise ValueError(f'data_config.{field} must be one of {choices}, got {config[field]!r}')
