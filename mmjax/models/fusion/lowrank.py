"""`lowrank_fusion` (LMF, Liu et al., 2018): TFN's function class through rank-r factors."""

import flax.linen as nn
import jax.numpy as jnp

from mmjax.models.base import FUSIONS, mask_encoding


@FUSIONS.register('lowrank_fusion')
class LowRankFusion(nn.Module):
  """Σ_r λ_r ∏_m (W_m^(r) [z_m; 1]) + b → [B, dim], z_m the pooled vectors.

  Equals a linear map of TFN's vec(⊗_m [z_m; 1]) whose weight tensor has rank ≤ `rank` per output,
  without building the outer product. An absent modality's z_m is zero, so its factor reduces to
  the row acting on the 1.
  """
  dim: int = 64
  rank: int = 4

  @nn.compact
  def __call__(self, encodings, present, train: bool = False):
    init = nn.initializers.lecun_normal(in_axis=0, out_axis=2, batch_axis=(1,))
    fused = 1.0
    for i, m in enumerate(encodings):
      z = mask_encoding(encodings[m], present[:, i]).pooled
      z = jnp.concatenate([z, jnp.ones_like(z[:, :1])], axis=-1)
      factor = self.param(f'{m}_factor', init, (z.shape[-1], self.rank, self.dim))
      fused = fused * jnp.einsum('bi,ird->brd', z, factor)
    weights = self.param('rank_weights', nn.initializers.constant(self.rank ** -0.5), (self.rank,))
    bias = self.param('bias', nn.initializers.zeros, (self.dim,))
    return jnp.einsum('brd,r->bd', fused, weights) + bias
