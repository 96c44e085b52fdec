"""`bottleneck_fusion` (MBT, Nagrani et al., 2021): modalities exchange information only through a
few shared bottleneck tokens."""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from mmjax.models import layers
from mmjax.models.base import FUSIONS
from mmjax.models.fusion.tokens import ModalityTokens


@FUSIONS.register('bottleneck_fusion')
class BottleneckFusion(layers.BlockFields):
  """A transformer per modality; from layer `fusion_layer` on, each modality's layer sees
  [its tokens; the bottleneck tokens], and after each layer the bottleneck is the mean of the
  modalities' updated copies.

  Only present modalities enter that mean (a row with none keeps its bottleneck). pool='concat'
  gives concat_m of each modality's mean over its real tokens (zero for an absent one), [B, M dim];
  pool='bottleneck' the mean of the bottleneck tokens, [B, dim].
  """
  dim: int = 64
  num_layers: int = 2
  fusion_layer: int = 1
  num_bottlenecks: int = 4
  positions: Optional[str] = 'learned'
  pool: str = 'concat'  # 'concat' or 'bottleneck'

  @nn.compact
  def __call__(self, encodings, present, train: bool = False):
    if self.pool not in ('concat', 'bottleneck'):
      raise ValueError(f'pool must be concat or bottleneck, not {self.pool!r}')
    names = list(encodings)
    seqs = [ModalityTokens(self.dim, self.positions, name=f'{m}_tokens')(
        encodings[m], present[:, i]) for i, m in enumerate(names)]
    xs, masks = [x for x, _ in seqs], [mask for _, mask in seqs]
    batch = present.shape[0]
    bottleneck = self.param('bottleneck', nn.initializers.normal(0.02),
                            (self.num_bottlenecks, self.dim))
    bottleneck = jnp.broadcast_to(bottleneck, (batch,) + bottleneck.shape)
    weight = present.astype(bottleneck.dtype)[:, :, None, None]  # [B, M, 1, 1]
    for layer in range(self.num_layers):
      fused = layer >= self.fusion_layer
      updates = []
      for i, m in enumerate(names):
        block = layers.transformer_block(self, f'{m}_layer{layer}', train)
        if not fused:
          xs[i] = block(xs[i], layers.attention_mask(masks[i], masks[i]))
          continue
        mask = jnp.concatenate([masks[i], jnp.ones((batch, self.num_bottlenecks), bool)], axis=1)
        out = block(jnp.concatenate([xs[i], bottleneck], axis=1),
                    layers.attention_mask(mask, mask))
        length = xs[i].shape[1]
        xs[i] = out[:, :length]
        updates.append(out[:, length:])
      if fused:
        total = (jnp.stack(updates, axis=1) * weight).sum(axis=1)
        count = weight.sum(axis=1)
        bottleneck = jnp.where(count > 0, total / jnp.maximum(count, 1.0), bottleneck)
    if self.pool == 'bottleneck':
      return nn.LayerNorm(name='bottleneck_norm')(bottleneck).mean(axis=1)
    return jnp.concatenate([layers.masked_mean(nn.LayerNorm(name=f'{m}_norm')(x), mask)
                            for m, x, mask in zip(names, xs, masks)], axis=-1)
