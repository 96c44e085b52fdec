"""`early_fusion`: every modality's tokens in one joint transformer."""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from mmjax.models import layers
from mmjax.models.base import FUSIONS
from mmjax.models.fusion.tokens import ModalityTokens


@FUSIONS.register('early_fusion')
class EarlyFusion(layers.BlockFields):
  """Tokens projected to `dim`, tagged with a learned modality embedding, concatenated into one
  sequence for a Transformer; output is the mean over the real tokens of present modalities.

  An absent modality's tokens are masked out as keys and left out of the mean.
  """
  dim: int = 64
  num_layers: int = 2
  positions: Optional[str] = 'learned'  # per modality, before concatenation

  @nn.compact
  def __call__(self, encodings, present, train: bool = False):
    xs, masks = [], []
    for i, m in enumerate(encodings):
      x, mask = ModalityTokens(self.dim, self.positions, name=f'{m}_tokens')(
          encodings[m], present[:, i])
      xs.append(x + self.param(f'{m}_embedding', nn.initializers.normal(0.02), (self.dim,)))
      masks.append(mask)
    x, mask = jnp.concatenate(xs, axis=1), jnp.concatenate(masks, axis=1)
    x = layers.Transformer(num_layers=self.num_layers, num_heads=self.num_heads,
                           mlp_ratio=self.mlp_ratio, dropout=self.dropout, remat=self.remat)(
        x, mask, train=train)
    return layers.masked_mean(x, mask)
