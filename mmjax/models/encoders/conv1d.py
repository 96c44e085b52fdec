"""1D convolution over time for spectrograms: the mel bins are the input channels."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from mmjax.models.base import ENCODERS, Encoding


@ENCODERS.register('conv1d')
class Conv1D(nn.Module):
  """Conv → (BatchNorm) → ReLU → (max-pool by 2) along time; input [B, T, F].

  pooled = mean over the remaining frames; tokens = those frames.
  """
  features: Sequence[int] = (64, 64, 64)
  kernel_sizes: Sequence[int] = (5, 3, 3)
  pool: Sequence[bool] = (True, True, True)
  batch_norm: bool = True

  @nn.compact
  def __call__(self, x, train: bool = False):
    for feat, k, pool in zip(self.features, self.kernel_sizes, self.pool, strict=True):
      x = nn.Conv(feat, (k,), padding='SAME', use_bias=not self.batch_norm)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = nn.relu(x)
      if pool:
        x = nn.max_pool(x, (2,), strides=(2,), padding='SAME')  # keeps a last odd frame
    return Encoding(x.mean(axis=1), x, jnp.ones(x.shape[:2], bool))
