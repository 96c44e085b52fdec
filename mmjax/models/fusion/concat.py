"""`late_fusion`: pooled unimodal representations concatenated (MultiBench's late fusion)."""

import flax.linen as nn
import jax.numpy as jnp

from mmjax.models.base import FUSIONS, mask_encoding


@FUSIONS.register('late_fusion')
class LateFusion(nn.Module):
  """concat_m(present_m * z_m); the task heads' MLP does the joint modelling."""

  @nn.compact
  def __call__(self, encodings, present, train: bool = False):
    return jnp.concatenate(
        [mask_encoding(encodings[m], present[:, i]).pooled for i, m in enumerate(encodings)],
        axis=-1)
