"""Input pipelines (tf.data + TFDS) for ImageNet, AudioSet, ModelNet40 and Kinetics.

    ds = perceiver.data.get_dataset(data_config, split='train',
                                    batch_size=64, shuffle_seed=0)

Each pipeline reads the dataset's public format from `manual_dir`
(docs/data.md: layouts, your own data), builds TFDS records once into
`data_dir` (files skipped, converted or missing are listed in the records'
build_report.tsv) and applies the papers' preprocessing. TensorFlow never
sees accelerators.

Batches (dicts of tensors, batch first):
  imagenet2012: image f32 [B, S, S, 3] (normalised), pos f32 [B, S*S, 2]
                (unless pos='none'), label i32 [B], or f32 [B, K] soft
                targets when MixUp/CutMix is on (training).
  audioset:     audio f32 [B, 480, 128] (raw) or [B, 96, 50] (mel frames
                x bins: 4,800 inputs once flattened), video f32
                [B, 32, S, S, 3] or
                [B, 12544, 384] (video_patched), label f32 multi-hot [B, K].
                Eval ('valid'/'test') adds a clip axis after B:
                [B, num_eval_clips, ...]; average the scores over it
                (`audioset.average_clip_scores`) and use
                `audioset.mean_average_precision`.
  modelnet40:   points f32 [B, N, 3], label i32 [B].
  kinetics:     video f32 [B, T, S, S, 3] in [0, 1], audio f32
                [B, T * 1920, 1] in [-1, 1] (48 kHz), label i32 [B]
                (multimodal autoencoding; see kinetics.py).

data_config fields (ml_collections.ConfigDict; unknown fields are rejected;
see config.py for every default):
  all:      name ('imagenet2012' | 'audioset' | 'modelnet40' | 'kinetics'), data_dir,
            manual_dir ('' = none), on_corrupt ('raise' | 'skip'), prepare,
            train_split / valid_split / test_split (TFDS split strings behind
            split='train' / 'valid' / 'test'), shuffle_buffer, repeat,
            drop_remainder, cache, num_parallel_calls.
  imagenet2012: num_classes, class_list, validation_labels (the user's own
            class list / validation labels; docs/data.md), image_size,
            crop_area_range, crop_aspect_range,
            random_flip, randaugment_num_layers, randaugment_magnitude,
            mixup_alpha, cutmix_alpha, mix_switch_prob, eval_crop_padding,
            pos ('crop' | 'image' | 'none').
  audioset: num_classes, modality ('audio' | 'video' | 'audio_video'),
            audio_repr ('raw' | 'mel'), clip_samples, audio_patch_size,
            mel_frames, mel_bins, specaugment, spec_num_freq_masks,
            spec_freq_mask_max, spec_num_time_masks, spec_time_mask_max,
            video_frames, video_size, video_crop_area_range,
            video_color_augment, video_random_flip, video_patched,
            video_patch_shape, video_dropout, num_eval_clips,
            stored_video_size.
  modelnet40: num_classes, source ('off' | 'hdf5'), num_points,
            stored_points, scale_range.
  kinetics: num_classes, num_frames, video_size, audio_samples_per_frame,
            stored_video_size.
"""

from perceiver.data.config import default_config
from perceiver.data.config import resolve_config
from perceiver.data.errors import CorruptDataError
from perceiver.data.errors import MissingDataError


def __getattr__(name: str):
  # The pipelines import TensorFlow (seconds); configs import this package for
  # default_config, so the launcher can check its flags without loading TF.
  if name in ('get_builder', 'get_dataset'):
    from perceiver.data import pipeline  # pylint: disable=g-import-not-at-top

    return getattr(pipeline, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = [
  'CorruptDataError',
  'MissingDataError',
  'default_config',
  'get_builder',
  'get_dataset',
  'resolve_config',
]
