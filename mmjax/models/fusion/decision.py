"""`decision_fusion`: a classifier per modality, predictions combined (model-level fusion)."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.base import FUSIONS
from mmjax.models.heads import TaskHeads


@FUSIONS.register('decision_fusion')
class DecisionFusion(nn.Module):
  """Per-modality heads; log-probabilities averaged over present modalities.

  combine='mean' weighs modalities equally, 'learned' by softmax weights learned per task. Absent
  modalities get zero weight and the rest are renormalised, so they cannot leak.
  """
  tasks: dict
  hidden: Sequence[int] = (64,)
  dropout: float = 0.0
  combine: str = 'mean'
  outputs_logits = True  # the model skips its shared heads

  @nn.compact
  def __call__(self, encodings, present, train: bool = False):
    if self.combine not in ('mean', 'learned'):
      raise ValueError(f'combine must be mean or learned, not {self.combine!r}')
    names = list(encodings)
    per_mod = [TaskHeads(self.tasks, self.hidden, self.dropout, name=f'{m}_head')(
        encodings[m].pooled, train) for m in names]
    out = {}
    for task in self.tasks:
      logp = jnp.stack([jax.nn.log_softmax(p[task]) for p in per_mod], axis=1)  # [B, M, C]
      w = jnp.ones(len(names))
      if self.combine == 'learned':
        w = jax.nn.softmax(self.param(f'{task}_weights', nn.initializers.zeros, (len(names),)))
      w = w[None, :] * present
      w = w / jnp.maximum(w.sum(axis=1, keepdims=True), 1e-9)
      out[task] = jnp.einsum('bm,bmc->bc', w, logp)
    return out
