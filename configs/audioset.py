"""AudioSet multi-label classification: Perceiver (ICML 2021), Table 3 (mAP).

  python -m experiments.main --config=configs/audioset.py:<preset> --workdir=DIR

Presets (audio / video / audio+video mAP of the paper):
  audio_raw              raw audio, 480 patches of 128 samples: 38.3.
  audio_mel              mel spectrogram, 4,800 inputs, SpecAugment: 38.4.
  video                  32 frames, 2x8x8 space-time patches: 25.8.
  audio_video            raw audio + video, video dropout 0.3: 43.5.
  audio_video_mel        mel + video: 43.2.
  audio_video_mel_tuned  mel + video, SpecAugment off, spectrogram dropped
                         with probability 0.1: 44.2.
  small_data             A CPU-sized audio Perceiver and recipe for small
                         sets (docs/data.md); not a paper experiment.
  smoke                  A tiny audio+video model on synthetic data.

Model (PAPERS.md): the ImageNet Perceiver except 2 cross-attends, 8
self-attends per latent block and no weight sharing. Sigmoid cross-entropy,
mAP over classes, 100 epochs, evaluation averages the scores of 16
overlapping 32-frame clips per video (the pipeline's eval clip axis).
"""

from perceiver_configs import common

NUM_CLASSES = 527


def _audio_input(mel: bool):
  """Raw: 128-sample patches; mel: each (frame, bin) one input.

  Silent in the paper: the Fourier bands of audio/video. We keep the
  ImageNet choice (64 bands, max_resolution = the input grid, like mu=224
  on 224x224 images).
  """
  model_input = common.model_input(
    modality='audio', prep_type='mel' if mel else 'patches', num_bands=64, max_resolution=()
  )
  with model_input.unlocked():
    model_input.samples_per_patch = 128  # 61,440 samples -> 480 x 128.
    model_input.mel_patch_shape = (1, 1)  # 4,800 single-value inputs.
  return model_input


def _video_input():
  """32x224x224 frames -> 2x8x8 patches: 16x28x28 = 12,544 inputs of 384
  channels, with 3-D Fourier features (t, y, x) concatenated."""
  return common.model_input(
    modality='video',
    prep_type='patches',
    input_channels=3,
    spatial_downsample=8,
    temporal_downsample=2,
    num_bands=64,
    max_resolution=(),
  )


def _config(modality: str, mel: bool = False):
  config = common.base_config()
  if modality == 'audio':
    model_input = _audio_input(mel)
  elif modality == 'video':
    model_input = _video_input()
  else:
    # Fused at the input: each modality is padded with a learned
    # modality-specific encoding to a common width (video gets 4 channels,
    # audio as many as needed: min_padding_size=4); the whole video stream
    # is zeroed with probability 0.3 per training example (+3 mAP).
    model_input = common.model_input(modality='audio_video')
    with model_input.unlocked():
      model_input.audio = _audio_input(mel)
      model_input.video = _video_input()
      model_input.min_padding_size = 4
      model_input.video_dropout_prob = 0.3
      model_input.audio_dropout_prob = 0.0
  config.model = common.model(
    'perceiver',
    NUM_CLASSES,
    input=model_input,
    encoder=common.model_encoder(
      num_cross_attends=2,
      num_blocks=2,
      num_self_attends_per_block=8,
      share_cross_attends=False,
      share_latent_transformers=False,
    ),
  )
  from perceiver.data import config as data_config  # pylint: disable=g-import-not-at-top

  config.data = data_config.default_config('audioset')
  config.data.update(
    dict(
      num_classes=0,
      modality=modality,  # 0: from class_labels_indices.csv.
      audio_repr='mel' if mel else 'raw',
      # Video dropout is the model's (video_dropout_prob above, drawn from
      # the step's RNG); the pipeline's copy stays off so it is not applied
      # twice.
      video_dropout=0.0,
    )
  )
  config.train.loss = 'sigmoid'
  config.train.num_epochs = 100.0
  # Silent in the paper: batch size and optimizer for AudioSet. We keep the
  # ImageNet recipe (batch 1024, LAMB 4e-3, weight decay 0.1, clipping 10)
  # with its step decay at the same fractions of training (84/120, 102/120,
  # 114/120 -> epochs 70, 85, 95).
  config.train.batch_size = 1024
  config.optimizer = common.optimizer(
    schedule=dict(name='step', base_lr=4e-3, decay_epochs=(70.0, 85.0, 95.0), decay_rate=0.1)
  )
  config.eval.split = 'test'  # AudioSet's eval segments.
  config.eval.clip_axis = True  # [B, 16 clips, ...]; scores averaged.
  config.eval.batch_size = 64  # Videos: 64 x 16 = 1,024 clips per batch.
  config.checkpoint.every_steps = 1000
  return config


def audio_raw():
  return _config('audio')


def audio_mel():
  return _config('audio', mel=True)  # SpecAugment: pipeline default (on).


def video():
  return _config('video')


def audio_video():
  return _config('audio_video')


def audio_video_mel():
  return _config('audio_video', mel=True)


def audio_video_mel_tuned():
  config = _config('audio_video', mel=True)
  config.data.specaugment = False
  config.model.input.audio_dropout_prob = 0.1
  return config


def small_data():
  """A few hundred to thousands of audio clips on a CPU (docs/data.md).

  Not a paper recipe: log-mel input with one input per mel frame (96 frames
  of 50 bins, 8-band 1-D Fourier features of the frame index), SpecAugment
  on, the small encoder, the small_data_recipe (AdamW 2e-3, 600 steps of
  16), evaluated on 16 clips per segment; the class count of the sample set
  (8, from its class_labels_indices.csv).
  """
  config = audio_mel()
  model_input = common.model_input(modality='audio', prep_type='mel', num_bands=8, max_resolution=(96, 1))
  with model_input.unlocked():
    model_input.samples_per_patch = 128
    model_input.mel_patch_shape = (1, 50)  # One input per frame.
  config.model = common.model('perceiver', 8, input=model_input, encoder=common.small_encoder())
  # The sample's 150 training segments: 9 steps per epoch, warm-up ~30.
  common.small_data_recipe(config, num_steps=600, batch_size=16, base_lr=2e-3, warmup_epochs=3.0)
  config.eval.batch_size = 8
  return config


def smoke():
  """audio_video structure, tiny, on synthetic data with an eval clip axis."""
  from perceiver.train import input_pipeline  # pylint: disable=g-import-not-at-top

  config = audio_video()
  for section in (config.model.input.audio, config.model.input.video):
    section.num_bands = 2
  config.model.input.video.spatial_downsample = 4
  config.model.encoder = common.tiny_encoder(share_cross_attends=False, share_latent_transformers=False)
  config.model.decoder.num_classes = 6
  config.data = input_pipeline.synthetic_config(
    {'audio': (12, 128), 'video': (4, 8, 8, 3)}, 6, multi_label=True, num_eval_clips=2
  )
  common.smoke_runner(config)
  config.eval.batch_size = 4
  return config


PRESETS = dict(
  audio_raw=audio_raw,
  audio_mel=audio_mel,
  video=video,
  audio_video=audio_video,
  audio_video_mel=audio_video_mel,
  audio_video_mel_tuned=audio_video_mel_tuned,
  small_data=small_data,
  smoke=smoke,
)


def get_config(arg=None):
  return common.select(PRESETS, arg, 'audio_video')
