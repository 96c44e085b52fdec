"""2D convolutional encoders for images and spectrograms (the seed's CNN and MultiBench's LeNet)."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from mmjax.models.base import ENCODERS, Encoding


class ConvNet(nn.Module):
  """Conv → (BatchNorm) → ReLU → (2x2 max-pool) blocks, then a flatten or mean readout.

  Input [B, H, W] or [B, H, W, C]. Tokens are the last feature map's positions.
  """
  features: Sequence[int] = (32, 64, 128)
  kernel_sizes: Sequence[int] = (3, 3, 3)
  pool: Sequence[bool] = (True, True, True)
  batch_norm: bool = False
  readout: str = 'flatten'  # 'flatten' (the seed) or 'mean' (global average pooling)

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.ndim == 3:
      x = x[..., None]
    for feat, k, pool in zip(self.features, self.kernel_sizes, self.pool, strict=True):
      x = nn.Conv(feat, (k, k), padding='SAME', use_bias=not self.batch_norm)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = nn.relu(x)
      if pool:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    b, h, w, c = x.shape
    tokens = x.reshape(b, h * w, c)
    pooled = x.reshape(b, -1) if self.readout == 'flatten' else tokens.mean(axis=1)
    return Encoding(pooled, tokens, jnp.ones((b, h * w), bool))


ENCODERS.register('cnn')(ConvNet)


@ENCODERS.register('lenet')
def lenet(channels: int = 6, additional_layers: int = 3) -> ConvNet:
  """MultiBench's LeNet(in, channels, additional_layers): a 5x5 conv, then 3x3 conv + pool layers
  doubling the channels, BatchNorm, global average pooling (output 6 * 2**layers features)."""
  n = additional_layers + 1
  return ConvNet(features=tuple(channels * 2 ** i for i in range(n)),
                 kernel_sizes=(5,) + (3,) * additional_layers,
                 pool=(False,) + (True,) * additional_layers,
                 batch_norm=True, readout='mean')
