"""`gated_fusion`: the gated multimodal unit (GMU, Arevalo et al., 2017)."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.base import FUSIONS, mask_encoding


@FUSIONS.register('gated_fusion')
class GatedFusion(nn.Module):
  """Σ_m g_m ⊙ tanh(W_m z_m), gates per modality and feature computed from concat_m(z_m).

  gate='softmax' normalises over the present modalities (with two, the paper's z / 1 - z);
  'sigmoid' gates each independently. Absent modalities get gate 0 and zeroed input, so a row with
  none present gives 0.
  """
  dim: int = 64
  gate: str = 'softmax'  # 'softmax' or 'sigmoid'

  @nn.compact
  def __call__(self, encodings, present, train: bool = False):
    if self.gate not in ('softmax', 'sigmoid'):
      raise ValueError(f'gate must be softmax or sigmoid, not {self.gate!r}')
    zs = [mask_encoding(encodings[m], present[:, i]).pooled for i, m in enumerate(encodings)]
    h = jnp.stack([jnp.tanh(nn.Dense(self.dim, name=f'{m}_proj')(z))
                   for m, z in zip(encodings, zs)], axis=1)  # [B, M, D]
    logits = nn.Dense(len(zs) * self.dim, name='gate')(jnp.concatenate(zs, axis=-1))
    logits = logits.reshape(h.shape)
    keep = present[:, :, None]
    if self.gate == 'softmax':
      # A finite fill instead of -inf keeps an all-absent row free of NaN.
      g = jax.nn.softmax(jnp.where(keep, logits, -1e30), axis=1)
    else:
      g = jax.nn.sigmoid(logits)
    return jnp.where(keep, g * h, 0.0).sum(axis=1)
