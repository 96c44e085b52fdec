"""`mult` (MulT, Tsai et al., 2019): each modality attends to every other one, then to itself."""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from mmjax.models import layers
from mmjax.models.base import FUSIONS
from mmjax.models.fusion.tokens import ModalityTokens


@FUSIONS.register('mult')
class MulT(layers.BlockFields):
  """For each target modality t and source s ≠ t, `cross_layers` blocks in which t's tokens attend
  to s's tokens; the s→t outputs are concatenated feature-wise ([B, L_t, (M-1) dim]), run through
  `self_layers` of self-attention and mean-pooled. Output: concat over targets, [B, M (M-1) dim].

  An absent source is masked as keys, and its cross blocks leave the target unchanged (with every
  key masked, attention would be uniform over padding); an absent target's output is zero.
  """
  dim: int = 32
  cross_layers: int = 1
  self_layers: int = 1
  positions: Optional[str] = 'sinusoidal'

  @nn.compact
  def __call__(self, encodings, present, train: bool = False):
    names = list(encodings)
    if len(names) < 2:
      raise ValueError('mult needs at least two modalities')
    seqs = {m: ModalityTokens(self.dim, self.positions, name=f'{m}_tokens')(
        encodings[m], present[:, i]) for i, m in enumerate(names)}
    pooled = []
    for t in names:
      xt, mask_t = seqs[t]
      streams = []
      for s in names:
        if s == t:
          continue
        xs, mask_s = seqs[s]
        mask = layers.attention_mask(mask_t, mask_s)
        has_keys = mask_s.any(axis=1)[:, None, None]
        x = xt
        for layer in range(self.cross_layers):
          block = layers.transformer_block(self, f'{s}_to_{t}_{layer}', train)
          x = jnp.where(has_keys, block(x, mask, context=xs), x)
        streams.append(x)
      x = jnp.concatenate(streams, axis=-1)
      x = layers.Transformer(num_layers=self.self_layers, num_heads=self.num_heads,
                             mlp_ratio=self.mlp_ratio, dropout=self.dropout, remat=self.remat,
                             name=f'{t}_self')(x, mask_t, train=train)
      pooled.append(layers.masked_mean(x, mask_t))  # zero for an absent target: mask_t is False
    return jnp.concatenate(pooled, axis=-1)
