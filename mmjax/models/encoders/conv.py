"""Convolutional encoders: the seed's 2D CNN, MultiBench's LeNet, and a 1D CNN over frames."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from mmjax.errors import UserError
from mmjax.models.base import ENCODERS, Encoding


class ConvNet(nn.Module):
  """Conv → (BatchNorm) → ReLU → (max-pool by 2) blocks, then a flatten or mean readout.

  spatial_dims=2: images [B, H, W(, C)] or spectrograms [B, T, F] as one-channel images.
  spatial_dims=1: spectrograms [B, T, F] convolved along time with the F bins as channels.
  `kernel_sizes` and `pool` may be one value for every block. Tokens are the last feature map's
  positions.
  """
  features: Sequence[int] = (32, 64, 128)
  kernel_sizes: int | Sequence[int] = 3
  pool: bool | Sequence[bool] = True
  batch_norm: bool = False
  readout: str = 'flatten'  # 'flatten' (the seed) or 'mean' (global average pooling)
  spatial_dims: int = 2

  def _per_block(self, value, name):
    values = (value,) * len(self.features) if isinstance(value, (int, bool)) else tuple(value)
    if len(values) != len(self.features):
      raise UserError(f'encoder {name}={value} needs one value per block of '
                      f'features={self.features}')
    return values

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.ndim == self.spatial_dims + 1:
      x = x[..., None] if self.spatial_dims == 2 else x
    window = (2,) * self.spatial_dims
    for feat, k, pool in zip(self.features, self._per_block(self.kernel_sizes, 'kernel_sizes'),
                             self._per_block(self.pool, 'pool')):
      x = nn.Conv(feat, (k,) * self.spatial_dims, padding='SAME', use_bias=not self.batch_norm)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = nn.relu(x)
      if pool:
        x = nn.max_pool(x, window, strides=window, padding='SAME' if self.spatial_dims == 1 else
                        'VALID')  # 1D keeps a last odd frame
    b, c = x.shape[0], x.shape[-1]
    tokens = x.reshape(b, -1, c)
    pooled = x.reshape(b, -1) if self.readout == 'flatten' else tokens.mean(axis=1)
    return Encoding(pooled, tokens, jnp.ones(tokens.shape[:2], bool))


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


@ENCODERS.register('conv1d')
def conv1d(features=(64, 64, 64), kernel_sizes=(5, 3, 3), pool=True, batch_norm=True) -> ConvNet:
  """Convolution along time over a spectrogram [B, T, F]; pooled = mean over remaining frames."""
  return ConvNet(features=tuple(features), kernel_sizes=kernel_sizes, pool=pool,
                 batch_norm=batch_norm, readout='mean', spatial_dims=1)
