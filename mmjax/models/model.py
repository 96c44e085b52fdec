"""The multimodal classifier: front end → encoder per modality → fusion → task heads."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from mmjax.models import encoders as _encoders  # noqa: F401  (registers the encoders)
from mmjax.models import frontend as _frontend  # noqa: F401  (registers the front ends)
from mmjax.models import fusion as _fusion  # noqa: F401  (registers the fusions)
from mmjax.models.base import ENCODERS, FRONTENDS, FUSIONS
from mmjax.models.heads import TaskHeads


def _kwargs(cfg) -> dict:
  d = cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg)
  d.pop('name')
  return d


class MultimodalModel(nn.Module):
  """inputs {modality: array}, present {modality: bool[B]} → {task: logits [B, classes]}.

  Modality order (for the presence mask given to fusion) is the sorted encoder names.
  """
  config: Any  # config.model (ConfigDict)
  tasks: dict  # task name → number of classes

  def setup(self):
    cfg = self.config
    self.modalities = tuple(sorted(cfg.encoders))
    self.frontends = {m: FRONTENDS.get(f.name, f'model.frontends.{m}.name')(**_kwargs(f))
                      for m, f in cfg.get('frontends', {}).items() if m in self.modalities}
    self.encoders = {m: ENCODERS.get(cfg.encoders[m].name, f'model.encoders.{m}.name')(
        **_kwargs(cfg.encoders[m])) for m in self.modalities}
    fusion_cls = FUSIONS.get(cfg.fusion.name, 'model.fusion.name')
    fusion_kwargs = _kwargs(cfg.fusion)
    if getattr(fusion_cls, 'outputs_logits', False):
      fusion_kwargs['tasks'] = self.tasks
    self.fusion = fusion_cls(**fusion_kwargs)
    self.heads = None if getattr(fusion_cls, 'outputs_logits', False) else TaskHeads(
        self.tasks, **cfg.get('head', {}))

  def encode(self, inputs, train: bool = False):
    """{modality: Encoding}: what transfer, distillation and contrastive learning reuse."""
    out = {}
    for m in self.modalities:
      x = inputs[m]
      if m in self.frontends:
        x = self.frontends[m](x, train=train)
      out[m] = self.encoders[m](x, train=train)
    return out

  def __call__(self, inputs, present, train: bool = False):
    encodings = self.encode(inputs, train)
    mask = jnp.stack([present[m] for m in self.modalities], axis=1)
    fused = self.fusion(encodings, mask, train=train)
    return fused if self.heads is None else self.heads(fused, train=train)
