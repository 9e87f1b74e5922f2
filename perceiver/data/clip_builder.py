"""What the AudioSet and Kinetics TFDS builders share.

Both store the same clip features (int16 audio at 48 kHz, JPEG frames at
25 fps with the shorter side shrunk to `stored_video_size`), keep one TFDS
config per stored frame size (records built at another size are not reused),
follow `on_corrupt` for unreadable files and publish the per-build lists of
rows they counted (missing files, ...) in `info.metadata`.
"""

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from perceiver.data import errors

VIDEO_EXTS = ('.mp4', '.mkv', '.webm', '.avi', '.mov')


def clip_features() -> dict:
  """The stored `audio` (int16 at 48 kHz) and `video` (JPEG frames at
  25 fps) features."""
  return {
    'audio': tfds.features.Tensor(
      shape=(None,), dtype=np.int16, encoding=tfds.features.Encoding.BYTES
    ),  # Raw, fast to parse.
    'video': tfds.features.Sequence(tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg')),
  }


class ClipBuilder(errors.SkipsCorruptFiles, tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the clip builders; subclasses add their row features and splits."""

  HOMEPAGE: str = ''
  # Names of the per-build lists of row ids the builder counts (e.g.
  # 'missing_audio'), published in info.metadata under the same names.
  TALLIES: tuple[str, ...] = ()

  def __init__(self, *, stored_video_size: int = 256, on_corrupt: str = 'raise', **kwargs):
    self._video_size = stored_video_size
    self._init_corrupt(on_corrupt, logging)
    self._tallies: dict[str, list[str]] = {name: [] for name in self.TALLIES}
    kwargs.setdefault('config', tfds.core.BuilderConfig(name=f'video{stored_video_size}'))
    super().__init__(**kwargs)

  def _row_features(self) -> dict:
    """The features stored beside `clip_features()` (labels, ids)."""
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict({**clip_features(), **self._row_features()}),
      # The subclass's class lists, then skipped_files and the TALLIES.
      metadata=tfds.core.MetadataDict(),
      homepage=self.HOMEPAGE,
    )

  def _publish_metadata(self, **values) -> None:
    """`values`, skipped_files and the tallies into info.metadata.

    The lists are the live ones, filled while the examples are generated, so
    the metadata TFDS writes after generation holds their final contents.
    """
    self.info.metadata.update(values)
    self.info.metadata['skipped_files'] = self._corrupt.skipped
    self.info.metadata.update(self._tallies)
