"""Cross-modal contrastive learning: `config.objective.name = 'contrastive'`.

Two modalities' pooled encodings (`MultimodalModel.encode`) go through a projection head each
(owned by the objective, so they live in `TrainState.objective_params` beside the temperature)
onto the unit sphere, and the loss pulls each example's pair together and pushes the other
examples of the batch apart:

- `loss='clip'`: symmetric InfoNCE with a learned logit scale (Radford et al., 2021: CLIP).
  `log_scale` starts at log(1/0.07) and the scale is clipped at 100, as in CLIP.
- `loss='siglip'`: the pairwise sigmoid loss with a learned logit scale and bias (Zhai et al.,
  2023: SigLIP), started at log(10) and -10 as in the paper.

The negatives are the whole global batch. The train and eval steps are jitted over the device
mesh with the batch as one global array, so the similarity matrix is [global batch, global batch]
whatever the device or process count (XLA gathers the embeddings): the loss on N devices equals the
loss on one device for the same batch. Labels are not used.

Examples absent from the batch (evaluation padding) or missing either modality are neither
anchors nor negatives.

Pairs: with `config.dataset.pair_id` (a feature naming the pair an example belongs to), the
examples of one pair are each other's positives, not negatives: AV-MNIST pairs each training image
with one of ~20 times fewer recordings, so a batch of 256 holds several images with one recording,
and single-positive InfoNCE would teach the audio tower to tell those copies apart. The loss is then
multi-positive InfoNCE (-log of the positives' total probability), and SigLIP's targets are +1 for
every positive pair. The id comes from the data's pairing, not from a label.

Memory: the [B, B] similarity matrix (and its gradient) grows with the square of the global
batch. `chunk_size = c` computes it c anchors at a time, recomputing each chunk in the backward
pass, so the largest array is [c, B]: the same loss and gradients for c× less of that memory.

config.objective: name='contrastive', loss ('clip' | 'siglip'), modalities (the model's two,
which must be all it encodes; default both), embed_dim, projection_hidden (hidden sizes of the
projection MLP; () linear), init_log_scale and init_bias (None: the paper's values), chunk_size
(0: the whole matrix).
Metrics: `loss`, `logit_scale`, `bias` (siglip), and the in-batch top-1 accuracy in each direction
(the top candidate is a positive), `in_batch/<a>_to_<b>/accuracy`.
"""

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.objectives.base import OBJECTIVES, Objective, apply
from mmjax.errors import UserError

LOSSES = ('clip', 'siglip')
_CLIP_MAX_SCALE = 100.0


class Projection(nn.Module):
  """Dense → ReLU per hidden size, then a linear map to `dim` (no bias), as CLIP's projections."""
  hidden: Sequence[int]
  dim: int

  @nn.compact
  def __call__(self, x):
    for size in self.hidden:
      x = nn.relu(nn.Dense(size)(x))
    return nn.Dense(self.dim, use_bias=False)(x)


def _normalize(x):
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


def positives(batch, size: int):
  """[B, B] bool: which examples are pairs of each other. With a `pair_id` in the batch
  (config.dataset.pair_id), every two examples of one pair (AV-MNIST: images paired with the
  same recording); otherwise each example with itself only."""
  if 'pair_id' not in batch:
    return jnp.eye(size, dtype=bool)
  ids = batch['pair_id']
  return ids[:, None] == ids[None, :]


def _rows(loss, logits, positive, valid):
  """Each anchor row of `logits` [n, B] against the valid candidates (columns): (its loss term
  [n], or None for loss=None; whether its top candidate is a positive [n])."""
  neg_inf = jnp.finfo(jnp.float32).min
  masked = jnp.where(valid[None, :], logits, neg_inf)
  correct = jnp.take_along_axis(positive, jnp.argmax(masked, axis=1)[:, None], axis=1)[:, 0]
  if loss == 'clip':   # -log of the positives' total probability
    term = jax.nn.logsumexp(masked, axis=1) - jax.nn.logsumexp(
        jnp.where(positive, masked, neg_inf), axis=1)
  elif loss == 'siglip':
    z = 2.0 * positive.astype(jnp.float32) - 1.0
    term = -(jax.nn.log_sigmoid(z * logits) * valid[None, :]).sum(axis=1)
  else:
    term = None
  return term, correct


def _total(loss, a2b, b2a, valid):
  """The summed loss over valid anchors: InfoNCE's two directions averaged; SigLIP's sum over
  valid pairs (its a→b rows already hold every pair once)."""
  return (0.5 * (a2b + b2a) * valid).sum() if loss == 'clip' else (a2b * valid).sum()


def clip_loss(logits, valid, positive=None):
  """Symmetric InfoNCE over the valid rows and columns of `logits` [B, B]; the positives of
  anchor i are `positive[i]` (default: the diagonal), and its loss is -log of their total
  probability (multi-positive InfoNCE: several examples of one pair are not each other's
  negatives). (Sum over valid examples of the mean of both directions' losses, per-direction
  correct counts.)"""
  return _matrix_loss('clip', logits, valid, positive)


def siglip_loss(logits, valid, positive=None):
  """SigLIP's sigmoid loss: -Σ_ij log σ(z_ij · logits_ij), z = +1 for positive pairs (default:
  the diagonal) and -1 otherwise, over valid pairs; (sum over valid anchors, per-direction
  correct counts)."""
  return _matrix_loss('siglip', logits, valid, positive)


def _matrix_loss(loss, logits, valid, positive):
  positive = jnp.eye(logits.shape[0], dtype=bool) if positive is None else positive
  a2b, correct_a2b = _rows(loss, logits, positive, valid)
  b2a, correct_b2a = _rows(loss if loss == 'clip' else None, logits.T, positive.T, valid)
  return (_total(loss, a2b, b2a, valid), (correct_a2b & valid).sum(),
          (correct_b2a & valid).sum())


def _direction(loss, anchors, candidates, valid, logit_fn, ids, chunk):
  """`_rows` for the logits of `anchors` [B, d] against `candidates` [B, d], `chunk` anchors at a
  time (0: all at once), each chunk's logits recomputed in the backward pass instead of kept."""
  n = anchors.shape[0]
  chunk = n if not chunk or chunk >= n else chunk
  blocks = -(-n // chunk)
  padded = jnp.pad(anchors, ((0, blocks * chunk - n), (0, 0)))
  padded_ids = None if ids is None else jnp.pad(ids, (0, blocks * chunk - n))

  def block(start):
    rows = start + jnp.arange(chunk)
    logits = logit_fn(jax.lax.dynamic_slice_in_dim(padded, start, chunk) @ candidates.T)
    positive = (rows[:, None] == jnp.arange(n)[None, :] if ids is None else
                jax.lax.dynamic_slice_in_dim(padded_ids, start, chunk)[:, None] == ids[None, :])
    return _rows(loss, logits, positive, valid)

  if blocks == 1:
    return block(0)
  term, correct = jax.lax.map(jax.checkpoint(block), jnp.arange(blocks) * chunk)
  flat = lambda x: None if x is None else x.reshape(-1)[:n]
  return flat(term), flat(correct)


def embedding_loss(loss, a, b, valid, logit_fn, ids=None, chunk=0):
  """`clip_loss` / `siglip_loss` of the logits `logit_fn(a @ b.T)` of unit embeddings a, b
  [B, d], computed `chunk` rows at a time (0: the whole [B, B] matrix at once): with chunks the
  largest array is [chunk, B], forward and backward. `ids`: pair ids (`positives`)."""
  a2b, correct_a2b = _direction(loss, a, b, valid, logit_fn, ids, chunk)
  b2a, correct_b2a = _direction(loss if loss == 'clip' else None, b, a, valid, logit_fn, ids,
                                chunk)
  return (_total(loss, a2b, b2a, valid), (correct_a2b & valid).sum(),
          (correct_b2a & valid).sum())


@OBJECTIVES.register('contrastive')
class Contrastive(Objective):
  """See the module docstring."""

  def __init__(self, config, model):
    super().__init__(config, model)
    cfg = config.get('objective') or {}
    self.loss = cfg.get('loss', 'clip')
    if self.loss not in LOSSES:
      raise UserError(f'objective.loss={self.loss!r}; valid values: {", ".join(LOSSES)}')
    available = model.modalities
    pair = tuple(cfg.get('modalities') or available[:2])
    if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(available):
      raise UserError(f'objective.modalities={pair!r} must name two different modalities of the '
                      f'model (model.encoders: {list(available)})')
    others = [m for m in available if m not in pair]
    if others:  # only the pair is encoded and trained
      raise UserError(f'objective.modalities={pair!r}: the model also encodes {", ".join(others)}, '
                      'which contrastive pre-training would never train; keep only the pair in '
                      'model.encoders (configs.default.keep_modalities)')
    self.embedding_modalities = pair
    self.embed_dim = int(cfg.get('embed_dim', 64))
    self.hidden = tuple(cfg.get('projection_hidden', ()))
    default_scale = math.log(1 / 0.07) if self.loss == 'clip' else math.log(10.0)
    init_log_scale = cfg.get('init_log_scale')
    init_bias = cfg.get('init_bias')
    self.init_log_scale = default_scale if init_log_scale is None else float(init_log_scale)
    self.init_bias = -10.0 if init_bias is None else float(init_bias)
    self.chunk_size = cfg.get('chunk_size', 0)
    if not isinstance(self.chunk_size, int) or self.chunk_size < 0:
      raise UserError(f'objective.chunk_size={self.chunk_size!r} must be an integer >= 0 (0: the '
                      'whole similarity matrix at once)')
    self.projections = {m: Projection(self.hidden, self.embed_dim)
                        for m in self.embedding_modalities}

  # An example batch sizes the projection heads (steps.init_state calls this instead of `init`).
  def init_from_example(self, rng, variables, batch) -> dict:
    pooled, _ = self.apply_model(variables, batch, train=False)
    keys = jax.random.split(rng, len(self.embedding_modalities))
    params = {m: self.projections[m].init(k, pooled[m])['params']
              for k, m in zip(keys, self.embedding_modalities)}
    params = {'projection': params, 'log_scale': jnp.asarray(self.init_log_scale, jnp.float32)}
    if self.loss == 'siglip':
      params['bias'] = jnp.asarray(self.init_bias, jnp.float32)
    return params

  def init(self, rng) -> dict:
    raise NotImplementedError('the contrastive objective is initialised by init_from_example')

  def apply_model(self, variables, batch, *, train: bool, rngs=None):
    """({modality: pooled encoding}, updated batch_stats)."""
    inputs = {m: batch['inputs'][m] for m in self.embedding_modalities}
    encodings, batch_stats = apply(self.model, variables, inputs, train=train, rngs=rngs,
                                   method='encode')
    return {m: e.pooled for m, e in encodings.items()}, batch_stats

  def embed(self, params, pooled) -> dict:
    """{modality: unit-norm projected embedding [B, embed_dim]} of the pair's modalities."""
    return {m: _normalize(self.projections[m].apply({'params': params['projection'][m]},
                                                    pooled[m])) for m in self.embedding_modalities}

  def logit_scale(self, params):
    log_scale = params['log_scale']
    if self.loss == 'clip':
      log_scale = jnp.minimum(log_scale, math.log(_CLIP_MAX_SCALE))
    return jnp.exp(log_scale)

  def __call__(self, params, outputs, batch):
    a, b = self.embedding_modalities
    z = self.embed(params, outputs)
    valid = batch['mask'] & batch['present'][a] & batch['present'][b]
    count = valid.astype(jnp.float32).sum()
    scale = self.logit_scale(params)
    bias = params['bias'] if self.loss == 'siglip' else 0.0
    total, correct_a2b, correct_b2a = embedding_loss(
        self.loss, z[a], z[b], valid, lambda similarity: scale * similarity + bias,
        batch.get('pair_id'), self.chunk_size)
    loss = total / jnp.maximum(count, 1.0)
    sums = {'count': count, 'loss': total, 'logit_scale': scale * count,
            f'in_batch/{a}_to_{b}/accuracy': correct_a2b.astype(jnp.float32),
            f'in_batch/{b}_to_{a}/accuracy': correct_b2a.astype(jnp.float32)}
    if self.loss == 'siglip':
      sums['bias'] = params['bias'] * count
    return loss, sums
