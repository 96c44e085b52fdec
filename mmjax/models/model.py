"""The multimodal classifier: front end → encoder per modality → fusion → task heads."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mmjax.errors import UserError
from mmjax.models import encoders as _encoders  # noqa: F401  (registers the encoders)
from mmjax.models import frontend as _frontend  # noqa: F401  (registers the front ends)
from mmjax.models import fusion as _fusion  # noqa: F401  (registers the fusions)
from mmjax.models.base import ENCODERS, FRONTENDS, FUSIONS, modality_order
from mmjax.models.heads import TaskHeads


def _kwargs(cfg) -> dict:
  d = cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg)
  d.pop('name')
  return d


def build_frontend(model_config, modality: str):
  """The front end `model_config.frontends[modality]` names (e.g. the log-mel), or None."""
  cfg = model_config.get('frontends', {}).get(modality)
  return None if cfg is None else FRONTENDS.get(cfg.name, f'model.frontends.{modality}.name')(
      **_kwargs(cfg))


def _frontends(model_config) -> dict:
  """{modality: front end} of the modalities `model_config` encodes that have one."""
  return {m: build_frontend(model_config, m) for m in model_config.get('frontends', {})
          if m in model_config.encoders}


def encoded_frontends(config) -> dict:
  """The front ends a run's model (`config.model`) applies, {modality: front end}."""
  return _frontends(config.model)


DTYPES = ('float32', 'bfloat16')
# What a model with unimodal heads predicts each task with (MultimodalModel's docstring).
PREDICTIONS = ('average', 'fused')


def compute_dtype(config) -> jnp.dtype:
  """`config.dtype`: what the model computes in. Parameters, optimizer state, loss and metrics
  stay float32 whatever it is (mixed precision)."""
  name = config.get('dtype', 'float32')
  if name not in DTYPES:
    raise UserError(f'dtype={name!r}; valid values: {", ".join(DTYPES)}')
  return jnp.dtype(name)


def build_model(config) -> 'MultimodalModel':
  """The model a run's config describes (`config.model`, `config.tasks` and `config.dtype`)."""
  tasks = {name: t.num_classes for name, t in config.tasks.items()}
  return MultimodalModel(config.model, tasks, compute_dtype(config))


class MultimodalModel(nn.Module):
  """inputs {modality: array}, present {modality: bool[B]} → {head: logits [B, classes]}.

  The output holds one entry per task, named by the task. With `config.unimodal_heads` (task-level
  fusion) it also holds `<task>/<modality>` (a classifier on that modality's encoding alone) and,
  with `unimodal_heads.prediction='average'` (the default), `<task>/fused` (the fused head), and
  `<task>` is then their log-probabilities averaged over the heads whose modality is present; with
  `prediction='fused'`, `<task>` is the fused head itself and the modalities' heads are trained
  beside it but predict nothing (deep supervision; gradient blending, configs/gradient_blending.py).
  """
  config: Any  # config.model (ConfigDict)
  tasks: dict  # task name → number of classes
  # The encoders' input dtype. With bfloat16 parameters (cast by mmjax.training.steps) every layer
  # after the front ends then computes in bfloat16; the front ends (log-mel) compute in float32.
  dtype: Any = jnp.float32

  @property
  def modalities(self) -> tuple[str, ...]:
    """The modalities it encodes, in the order of the presence mask every fusion receives."""
    return modality_order(self.config)

  @property
  def prediction(self) -> str:
    """What predicts each task beside `unimodal_heads` (PREDICTIONS; the class docstring)."""
    return (self.config.get('unimodal_heads') or {}).get('prediction', 'average')

  @property
  def head_names(self) -> tuple[str, ...]:
    """What `<task>/<name>` heads it has beside `<task>`: 'fused' and each modality with
    `unimodal_heads` ('fused' is `<task>` itself with prediction='fused'), else none."""
    if not self.config.get('unimodal_heads'):
      return ()
    return (() if self.prediction == 'fused' else ('fused',)) + self.modalities

  def setup(self):
    cfg = self.config
    self.frontends = _frontends(cfg)
    self.encoders = {m: ENCODERS.get(cfg.encoders[m].name, f'model.encoders.{m}.name')(
        **_kwargs(cfg.encoders[m])) for m in self.modalities}
    fusion_cls = FUSIONS.get(cfg.fusion.name, 'model.fusion.name')
    fusion_kwargs = _kwargs(cfg.fusion)
    if getattr(fusion_cls, 'outputs_logits', False):
      fusion_kwargs['tasks'] = self.tasks
    self.fusion = fusion_cls(**fusion_kwargs)
    self.heads = None if getattr(fusion_cls, 'outputs_logits', False) else TaskHeads(
        self.tasks, **cfg.get('head', {}))
    unimodal = dict(cfg.get('unimodal_heads') or {})
    unimodal.pop('prediction', None)  # not a head's field
    if self.prediction not in PREDICTIONS:
      raise UserError(f'model.unimodal_heads.prediction={self.prediction!r}; valid values: '
                      f'{", ".join(PREDICTIONS)}')
    self.unimodal_heads = {m: TaskHeads(self.tasks, **unimodal, name=f'unimodal_head_{m}')
                           for m in self.modalities} if unimodal else {}

  def encode(self, inputs, train: bool = False):
    """{modality: Encoding}: each encoder's output before fusion, which contrastive learning,
    the linear-probe evaluator and OGM-GE read."""
    out = {}
    for m in self.modalities:
      x = inputs[m]
      if m in self.frontends:
        x = self._through_frontend(m, x, train)
      if jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(self.dtype)
      out[m] = self.encoders[m](x, train=train)
    return out

  def _through_frontend(self, modality: str, x, train: bool):
    """A waveform [B, T] through the modality's front end; features it computed before, once per
    recording (`precompute_frontends`, mmjax.training.features), arrive as its output
    [B, frames, bins] and pass as they are. A front end without `bins` (identity) takes anything."""
    frontend = self.frontends[modality]
    bins = getattr(frontend, 'bins', None)
    if bins is None or x.ndim == 2:
      return frontend(x, train=train)
    if x.ndim == 3 and x.shape[-1] == bins:
      return x
    raise UserError(f'{modality} input of shape {x.shape[1:]} per example: its front end '
                    f'({type(frontend).__name__}) takes a waveform [samples] or its own output '
                    f'[frames, {bins}]; store the {modality} as a 1-D waveform')

  def fused_logits(self, encodings, mask, train: bool = False):
    """{task: logits} of the fusion and its head on `encodings` with presence `mask`
    [B, modalities]: the fused head alone, which OGM-GE also scores each modality through."""
    fused = self.fusion(encodings, mask, train=train)
    return fused if self.heads is None else self.heads(fused, train=train)

  def __call__(self, inputs, present, train: bool = False):
    encodings = self.encode(inputs, train)
    mask = jnp.stack([present[m] for m in self.modalities], axis=1)
    logits = self.fused_logits(encodings, mask, train)
    if not self.unimodal_heads:
      return logits
    per_head = {'fused': logits}
    per_head.update({m: head(encodings[m].pooled, train=train)
                     for m, head in self.unimodal_heads.items()})
    if self.prediction == 'fused':
      return {**logits, **{f'{task}/{m}': per_head[m][task] for task in self.tasks
                           for m in self.modalities}}
    # The fused head always counts; a modality's head only where that modality is present.
    weight = jnp.stack([jnp.ones(mask.shape[0], bool)] + [present[m] for m in self.modalities],
                       axis=1).astype(jnp.float32)
    weight = weight / weight.sum(axis=1, keepdims=True)
    out = {}
    for task in self.tasks:
      logp = jnp.stack([jax.nn.log_softmax(per_head[h][task].astype(jnp.float32))
                        for h in ('fused', *self.modalities)], axis=1)  # [B, heads, C]
      out[task] = jnp.einsum('bh,bhc->bc', weight, logp)
      out.update({f'{task}/{h}': per_head[h][task] for h in per_head})
    return out
