"""Convolutional encoders: the seed's 2D CNN, MultiBench's LeNet, and a 1D CNN over frames."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from mmjax.errors import UserError
from mmjax.models.base import ENCODERS, Encoding


def _max_pool_2x2(x):
  """PyTorch's `max_pool2d(x, 2)` on [B, H, W, C] (floor mode; a side of 1 is kept), as a max over
  a reshape: the same values as `nn.max_pool`, and a gradient XLA compiles about twice as fast
  and runs faster on a CPU than the select-and-scatter of a pooling window. (At exact ties the
  gradient is shared among the tied inputs rather than given to the first one; behind a ReLU the
  usual tie, at zero, gets no gradient either way.)"""
  b, h, w, c = x.shape
  wh, ww = (2 if h > 1 else 1), (2 if w > 1 else 1)
  x = x[:, :h // wh * wh, :w // ww * ww]
  return x.reshape(b, h // wh, wh, w // ww, ww, c).max(axis=(2, 4))


class ConvNet(nn.Module):
  """Conv → (BatchNorm) → ReLU → (max-pool by 2) blocks, then a flatten or mean readout.

  spatial_dims=2: images [B, H, W(, C)] or spectrograms [B, T, F] as one-channel images.
  spatial_dims=1: spectrograms [B, T, F] convolved along time with the F bins as channels.
  `kernel_sizes` and `pool` may be one value for every block. Tokens are the last feature map's
  positions.

  2D pooling is PyTorch's `max_pool2d(x, 2)`: floor mode, so an odd side loses its last row or
  column. A side already down to 1 is left as it is rather than pooled to an empty map (where
  PyTorch raises an error), so a deep stack still ends on a 1-wide map on a small input.
  """
  features: Sequence[int] = (32, 64, 128)
  kernel_sizes: int | Sequence[int] = 3
  pool: bool | Sequence[bool] = True
  batch_norm: bool = False
  readout: str = 'flatten'  # 'flatten' (the seed) or 'mean' (global average pooling)
  spatial_dims: int = 2
  kernel_init: Any = None   # None: flax's default (LeCun normal)
  input_mean: float = 0.0   # a fixed standardisation of the input: (x - input_mean) / input_std
  input_std: float = 1.0

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
    if (self.input_mean, self.input_std) != (0.0, 1.0):
      x = (x - self.input_mean) / self.input_std
    init = {} if self.kernel_init is None else {'kernel_init': self.kernel_init}
    for feat, k, pool in zip(self.features, self._per_block(self.kernel_sizes, 'kernel_sizes'),
                             self._per_block(self.pool, 'pool')):
      x = nn.Conv(feat, (k,) * self.spatial_dims, padding='SAME', use_bias=not self.batch_norm,
                  **init)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = nn.relu(x)
      if pool and self.spatial_dims == 1:
        x = nn.max_pool(x, (2,), strides=(2,), padding='SAME')  # keeps a last odd frame
      elif pool:
        x = _max_pool_2x2(x)
    b, c = x.shape[0], x.shape[-1]
    tokens = x.reshape(b, -1, c)
    pooled = x.reshape(b, -1) if self.readout == 'flatten' else tokens.mean(axis=1)
    return Encoding(pooled, tokens, jnp.ones(tokens.shape[:2], bool))


ENCODERS.register('cnn')(ConvNet)


@ENCODERS.register('lenet')
def lenet(channels: int = 6, additional_layers: int = 3, batch_norm: bool = True,
          input_mean: float = 0.0, input_std: float = 1.0) -> ConvNet:
  """MultiBench's LeNet(in_channels, channels, additional_layers) (unimodals/common_models.py).

  A 5x5 convolution (padding 2) to `channels`, then `additional_layers` 3x3 convolutions
  (padding 1) each doubling the channels; every convolution has no bias and is followed by
  BatchNorm, ReLU and a 2x2 max-pool, the first included. The output is the last feature map
  flattened: `channels * 2**additional_layers` features once the map is 1x1, as it is for
  LeNet(1,6,3) on 28x28 images (28-14-7-3-1) and LeNet(1,6,5) on 97x64 log-mel spectrograms
  (97x64-48x32-24x16-12x8-6x4-3x2-1x1). Convolution kernels start from PyTorch's
  `kaiming_uniform_` (U(+-sqrt(6 / fan_in))), as MultiBench initialises them.
  `batch_norm=False` drops the BatchNorms and gives every convolution a bias instead; without
  them the input's scale matters, and `input_mean` / `input_std` standardise it.
  """
  n = additional_layers + 1
  return ConvNet(features=tuple(channels * 2 ** i for i in range(n)),
                 kernel_sizes=(5,) + (3,) * additional_layers, pool=True, batch_norm=batch_norm,
                 readout='flatten', input_mean=input_mean, input_std=input_std,
                 kernel_init=nn.initializers.variance_scaling(2.0, 'fan_in', 'uniform'))


@ENCODERS.register('conv1d')
def conv1d(features=(64, 64, 64), kernel_sizes=(5, 3, 3), pool=True, batch_norm=True) -> ConvNet:
  """Convolution along time over a spectrogram [B, T, F]; pooled = mean over remaining frames."""
  return ConvNet(features=tuple(features), kernel_sizes=kernel_sizes, pool=pool,
                 batch_norm=batch_norm, readout='mean', spatial_dims=1)
