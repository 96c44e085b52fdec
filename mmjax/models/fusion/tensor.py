"""`tensor_fusion` (TFN, Zadeh et al., 2017): the outer product of [z_m; 1] over modalities."""

import flax.linen as nn
import jax.numpy as jnp

from mmjax.models.base import FUSIONS, mask_encoding


@FUSIONS.register('tensor_fusion')
class TensorFusion(nn.Module):
  """vec(⊗_m [z_m; 1]) with z_m = Dense(dim)(pooled_m): every unimodal, bimodal, ... product term.

  The output has prod(dim + 1) entries (17**3 = 4913 for three modalities at dim 16), including
  each z_m itself and the constant 1. An absent modality's z_m is zero, so only its 1 survives
  and the output holds just the present modalities' terms.
  """
  dim: int = 16

  @nn.compact
  def __call__(self, encodings, present, train: bool = False):
    out = None
    for i, m in enumerate(encodings):
      z = nn.Dense(self.dim, name=f'{m}_proj')(mask_encoding(encodings[m], present[:, i]).pooled)
      z = jnp.where(present[:, i, None], z, 0.0)  # the projection's bias too
      z = jnp.concatenate([z, jnp.ones_like(z[:, :1])], axis=-1)
      out = z if out is None else jnp.einsum('bi,bj->bij', out, z).reshape(z.shape[0], -1)
    return out
