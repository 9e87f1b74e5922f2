"""Perceiver IO on bytes: the masked LM, a GLUE head on its encoder, metrics.

* ``build_masked_lm(model)``: the released architecture, rebuilt by
  ``models.build_from_reference_config`` from ``model`` (a reference-style
  config, the schema of ``checkpoints.published_config('language_masked_lm')``),
  so the released pickle and HF weights load into it unchanged.
* ``build_classifier(model, head)``: the same embedding, position encoding
  and encoder (same Haiku module names) with a decoder of one learned query
  (``ClassificationDecoder``) -> [B, num_outputs]. ``transfer_encoder``
  copies a masked LM's encoder-side parameters into it and leaves the head
  fresh; ``trainable_labels`` marks the encoder frozen for
  ``optax.multi_transform``.

Both take ``{'tokens': int32 [B, T], 'input_mask': int32 [B, T]}``.
``model.embed_init_scale`` (optional, ours): std of the byte embedding at
init. The reference uses Haiku's default 1.0, so with the tied output a
small model starts with logits of std ~sqrt(d_model) and its 0.02-scale
position encoding is drowned; HF initialises it with initializer_range 0.02.
``model.aligned_init`` (optional, ours, off by default): the position-aligned
init of ``perceiver.config.AlignedInitConfig`` (``position_aligned_init``).
``model.byte_conv`` (optional, ours, off by default): a byte n-gram layer
before the encoder (``perceiver.config.ByteConvConfig``), in both models.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence, Tuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from perceiver import config as config_lib
from perceiver import decoders as dec_lib
from perceiver import io_processors
from perceiver import models
from perceiver.encoders import PerceiverEncoder

# Modules of a masked LM that a classifier does not have (its decoder side).
MLM_DECODER_MODULES = ('basic_decoder', 'embedding_decoder')
HEAD_MODULE = 'classification_decoder'
BYTE_NGRAMS_MODULE = io_processors.BYTE_NGRAMS_MODULE  # model.byte_conv's layer
_REQUIRED = ('vocab_size', 'max_seq_len', 'd_model', 'encoder', 'decoder')


def _as_dict(cfg) -> Dict[str, Any]:
  return cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)


def reference_config(model_config) -> Dict[str, Any]:
  """``config.model`` -> a validated reference-style masked-LM config."""
  cfg = _as_dict(model_config)
  missing = [k for k in _REQUIRED if k not in cfg]
  if missing:
    raise ValueError(f'config.model is missing {missing} (see configs/language.py)')
  if cfg.get('model', 'masked_lm') != 'masked_lm':
    raise ValueError(f"config.model.model must be 'masked_lm', got {cfg.get('model')!r}")
  for key in ('vocab_size', 'max_seq_len', 'd_model'):
    if int(cfg[key]) <= 0:
      raise ValueError(f'config.model.{key} must be positive, got {cfg[key]}')
  scale = cfg.get('embed_init_scale')
  if scale is not None and float(scale) <= 0:
    raise ValueError(f'config.model.embed_init_scale must be positive, got {scale}')
  if cfg.get('aligned_init') is not None:
    cfg['aligned_init'] = config_lib.to_dict(
      config_lib.parse_section(config_lib.AlignedInitConfig, cfg['aligned_init'], 'config.model.aligned_init')
    )
  if cfg.get('byte_conv') is not None:
    cfg['byte_conv'] = config_lib.to_dict(
      config_lib.parse_section(config_lib.ByteConvConfig, cfg['byte_conv'], 'config.model.byte_conv')
    )
  cfg = dict(cfg, model='masked_lm')
  cfg.pop('classifier', None)
  return cfg


def _two_inputs(net: hk.TransformedWithState, cfg: Mapping[str, Any]) -> hk.TransformedWithState:
  """(tokens, input_mask) positional -> one dict input (the runner passes one).

  `cfg['embed_init_scale']`: the byte embedding is initialised with this
  standard deviation instead of Haiku's default 1.0 (the reference's);
  scaling the default truncated normal draw is the same distribution.
  `cfg['aligned_init']`: ``position_aligned_init`` when enabled. Only init changes.
  """
  embed_init_scale = cfg.get('embed_init_scale')
  aligned = config_lib.parse_section(config_lib.AlignedInitConfig, cfg.get('aligned_init'), 'config.model.aligned_init')

  def init(rng, inputs, *, is_training):
    params, state = net.init(rng, inputs['tokens'], inputs['input_mask'], is_training=is_training)
    if embed_init_scale is not None:
      params = dict(params, embed={'embeddings': params['embed']['embeddings'] * float(embed_init_scale)})
    if aligned.enabled:
      params = position_aligned_init(params, aligned)
    return params, state

  def apply(params, state, rng, inputs, *, is_training):
    return net.apply(params, state, rng, inputs['tokens'], inputs['input_mask'], is_training=is_training)

  return hk.TransformedWithState(init=init, apply=apply)


def build_masked_lm(model_config) -> hk.TransformedWithState:
  """inputs -> logits float32 [B, T, vocab_size] (the released model's graph)."""
  cfg = reference_config(model_config)
  return _two_inputs(models.build_from_reference_config(cfg).net, cfg)


def build_classifier(
  model_config, num_outputs: int, *, num_heads: int = 1, query_channels: int = -1, use_query_residual: bool = True
) -> hk.TransformedWithState:
  """inputs -> logits float32 [B, num_outputs] (regression: num_outputs=1).

  Head defaults follow HF's PerceiverForSequenceClassification (one query of
  the latent width, one head, query residual): the paper does not give them.
  """
  cfg = reference_config(model_config)
  if num_outputs < 1:
    raise ValueError(f'config.model.classifier.num_outputs must be >= 1, got {num_outputs}')
  max_seq_len = int(cfg['max_seq_len'])
  enc_kwargs = dict(cfg['encoder'])
  if cfg.get('layer_norm_eps') is not None:
    enc_kwargs['layer_norm_eps'] = cfg['layer_norm_eps']
  latent_channels = int(enc_kwargs.get('num_z_channels', 1024))
  query_channels = latent_channels if query_channels <= 0 else int(query_channels)

  def forward(tokens, input_mask, *, is_training):
    if tokens.ndim != 2 or tokens.shape[1] > max_seq_len:
      raise ValueError(f'tokens must be [B, T<={max_seq_len}], got {tokens.shape}')
    x, _ = models.byte_inputs(tokens, input_mask, cfg)  # [B, T, C], as in the MLM
    head = dec_lib.ClassificationDecoder(
      num_outputs,
      name=HEAD_MODULE,
      num_z_channels=latent_channels,
      num_heads=num_heads,
      use_query_residual=use_query_residual,
      position_encoding_type='trainable',
      trainable_position_encoding_kwargs=dict(num_channels=query_channels, init_scale=0.02),
      layer_norm_eps=enc_kwargs.get('layer_norm_eps', 1e-5),
    )
    model = models.Perceiver(encoder=PerceiverEncoder(**enc_kwargs), decoder=head)
    return model(x, is_training=is_training, input_mask=input_mask).astype(jnp.float32)

  return _two_inputs(hk.transform_with_state(forward), cfg)


# Module names of the masked LM (and the classifier's encoder side) that the
# aligned init sets; absent ones (the classifier has no decoder queries) are skipped.
_INPUT_POS = 'trainable_position_encoding'
_LATENTS = 'perceiver_encoder/~/trainable_position_encoding'
_QUERY_POS = 'basic_decoder/~/trainable_position_encoding'
_CROSS_QK = ('perceiver_encoder/~/cross_attention/attention', 'basic_decoder/cross_attention/attention')


def sinusoid_table(num_positions: int, num_channels: int, wavelength_base: float = 10000.0) -> np.ndarray:
  """[T, C] float32, channel pairs (sin, cos) of one frequency each, std 1.

  Pairs rather than the usual [all sines | all cosines] layout so that every
  attention head's slice of the channels holds whole pairs: the dot product of
  two rows on a head's slice is then a function of their distance only.
  """
  pos = np.arange(num_positions, dtype=np.float64)[:, None]
  freq = wavelength_base ** (-2.0 * np.arange((num_channels + 1) // 2) / num_channels)  # [C/2]
  table = np.stack([np.sin(pos * freq), np.cos(pos * freq)], -1).reshape(num_positions, -1)[:, :num_channels]
  return (table / table.std()).astype(np.float32)


def _gain_identity(shape: Sequence[int], width: int, gain: float) -> np.ndarray:
  w = np.zeros(shape, np.float32)  # [in, out]
  w[:width, :width] = gain * np.eye(width, dtype=np.float32)
  return w


def position_aligned_init(params: Mapping[str, Mapping[str, Any]], aligned) -> Dict[str, Dict[str, Any]]:
  """params of a fresh masked LM / classifier -> the position-aligned init.

  ``aligned``: a ``perceiver.config.AlignedInitConfig``. The input positions
  [T, C] and the decoder queries are ``input_scale`` x one sinusoid table;
  latent n [N, D] is ``latent_scale`` x the table's row at byte n x T / N on
  its first channels (0 on the rest); the query and key projections of each
  cross-attend are ``cross_attend_gain`` x the identity on the table's
  channels (0 elsewhere), those of the self-attends ``self_attend_gain`` x
  it (0: left random). So, before any step, latent n reads the bytes around
  n x T / N, output query t the latents around t, and (gain > 0) each latent
  its neighbours: the routing a random init lacks (see AlignedInitConfig).
  """
  out = {m: dict(leaves) for m, leaves in params.items()}
  num_positions, channels = np.shape(out[_INPUT_POS]['pos_embs'])
  table = sinusoid_table(num_positions, channels, aligned.wavelength_base)  # [T, C]
  out[_INPUT_POS]['pos_embs'] = jnp.asarray(aligned.input_scale * table)
  if _QUERY_POS in out:
    rows, query_channels = np.shape(out[_QUERY_POS]['pos_embs'])
    queries = sinusoid_table(rows, query_channels, aligned.wavelength_base)
    out[_QUERY_POS]['pos_embs'] = jnp.asarray(aligned.input_scale * queries)
  num_latents, latent_channels = np.shape(out[_LATENTS]['pos_embs'])
  at = (np.arange(num_latents) * num_positions) // num_latents  # the byte each latent starts at
  width = min(channels, latent_channels)
  latents = np.zeros((num_latents, latent_channels), np.float32)
  latents[:, :width] = aligned.latent_scale * table[at, :width]
  out[_LATENTS]['pos_embs'] = jnp.asarray(latents)

  def set_qk(module: str, gain: float) -> None:
    for name in ('linear', 'linear_1'):  # the query and key projections
      w = out[f'{module}/{name}']['w']
      out[f'{module}/{name}']['w'] = jnp.asarray(_gain_identity(np.shape(w), min(width, *np.shape(w)), gain))

  for module in _CROSS_QK:
    if f'{module}/linear' in out:
      set_qk(module, aligned.cross_attend_gain)
  if aligned.self_attend_gain > 0:
    for module in sorted(
      m[: -len('/linear')] for m in out if '/self_attention' in m and m.endswith('/attention/linear')
    ):
      set_qk(module, aligned.self_attend_gain)
  return out


def transfer_encoder(
  fresh: Mapping[str, Mapping[str, Any]], loaded: Mapping[str, Mapping[str, Any]]
) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, Sequence[str]]]:
  """A classifier's params with every encoder-side module taken from ``loaded``.

  ``fresh``: the classifier's initial params; ``loaded``: a masked LM's (or a
  classifier's) params in reference naming. Modules of the head, and of the
  byte n-gram layer (``model.byte_conv``), stay fresh unless ``loaded`` has
  them too (resuming a classifier); the masked LM's
  decoder modules are dropped. Raises CheckpointMismatchError if an encoder
  module is absent or shaped differently, or if ``loaded`` has the byte
  n-gram layer and the classifier has not. Returns (params, report) with
  report = {'loaded': [...], 'fresh': [...], 'dropped': [...]} module names.
  """
  from perceiver.checkpoints import CheckpointMismatchError  # pylint: disable=g-import-not-at-top

  out, report = {}, {'loaded': [], 'fresh': [], 'dropped': []}
  problems = []
  for module, leaves in fresh.items():
    if module not in loaded:
      # The byte n-gram layer starts as the identity (zero output), so a
      # classifier with it starts as the loaded encoder when the file lacks it.
      if module.startswith((HEAD_MODULE, BYTE_NGRAMS_MODULE)):
        out[module] = dict(leaves)
        report['fresh'].append(module)
        continue
      problems.append(f'missing module {module}')
      continue
    got = loaded[module]
    for name, value in leaves.items():
      if name not in got:
        problems.append(f'missing {module}/{name}')
      elif tuple(np.shape(got[name])) != tuple(np.shape(value)):
        problems.append(f'{module}/{name}: file {tuple(np.shape(got[name]))} vs model {tuple(np.shape(value))}')
    out[module] = {n: np.asarray(got.get(n, v), dtype=np.asarray(v).dtype) for n, v in leaves.items()}
    report['loaded'].append(module)
  report['dropped'] = sorted(m for m in loaded if m not in fresh)
  if any(m.startswith(BYTE_NGRAMS_MODULE) for m in report['dropped']):
    # Encoder-side: the loaded encoder learned on its output, so dropping it
    # would silently feed that encoder different inputs.
    problems.append(
      'the file has the byte n-gram layer and the classifier has not (set config.model.byte_conv as in the masked LM)'
    )
  if problems:
    raise CheckpointMismatchError(
      'checkpoint does not fit the classifier encoder: '
      + '; '.join(problems[:20])
      + (f' (+{len(problems) - 20} more)' if len(problems) > 20 else '')
    )
  return out, report


def trainable_labels(params: Mapping[str, Mapping[str, Any]], freeze_encoder: bool) -> Any:
  """'train' / 'freeze' per parameter: with freeze_encoder only the head trains."""
  return {
    m: {n: 'train' if (not freeze_encoder or m.startswith(HEAD_MODULE)) else 'freeze' for n in leaves}
    for m, leaves in params.items()
  }


# --- metrics ----------------------------------------------------------------


def masked_lm_outputs(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> Dict[str, jax.Array]:
  """Per-example sums over the predicted bytes: loss_sum, correct, count (all [B])."""
  logits = logits.astype(jnp.float32)  # [B, T, V]
  logp = jax.nn.log_softmax(logits)
  nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]  # [B, T]
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  return dict(loss_sum=jnp.sum(nll * weights, -1), correct=jnp.sum(correct * weights, -1), count=jnp.sum(weights, -1))


def glue_metrics(metric_names: Sequence[str], predictions: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
  """The GLUE task metrics (scikit-learn / scipy) as fractions (the tables print x100)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  from sklearn import metrics as skm  # pylint: disable=g-import-not-at-top

  out = {}
  for name in metric_names:
    if name == 'accuracy':
      out[name] = skm.accuracy_score(labels, predictions)
    elif name == 'f1':
      out[name] = skm.f1_score(labels, predictions, zero_division=0)
    elif name == 'mcc':
      out[name] = skm.matthews_corrcoef(labels, predictions)
    elif name == 'pearson':
      out[name] = float(stats.pearsonr(predictions, labels)[0]) if np.std(predictions) > 0 else 0.0
    elif name == 'spearman':
      out[name] = float(stats.spearmanr(predictions, labels)[0]) if np.std(predictions) > 0 else 0.0
    else:
      raise ValueError(f'unknown GLUE metric {name!r}')
  return out


def glue_score(metrics: Mapping[str, float]) -> float:
  """A task's single GLUE score: the mean of its metrics (MRPC/QQP: F1 and acc.)."""
  return float(np.mean(list(metrics.values())))


def glue_average(task_scores: Mapping[str, float]) -> float:
  """GLUE average over the tasks given, WNLI excluded (as BERT and Perceiver IO
  report it); MNLI-m and MNLI-mm are averaged into one MNLI entry first."""
  scores = {k.lower().replace('-', ''): v for k, v in task_scores.items()}
  mnli = [scores.pop(k) for k in ('mnlim', 'mnlimm', 'mnli_m', 'mnli_mm') if k in scores]
  if mnli:
    scores['mnli'] = float(np.mean(mnli))
  scores.pop('wnli', None)
  if not scores:
    raise ValueError('no GLUE task scores to average')
  return float(np.mean(list(scores.values())))
