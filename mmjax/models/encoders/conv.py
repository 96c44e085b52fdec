"""Convolutional encoders: the seed's 2D CNN, MultiBench's LeNet, and a 1D CNN over frames."""

from typing import Any, Sequence

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from mmjax.errors import UserError
from mmjax.models import layers
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


CONV_IMPLS = ('auto', 'xla', 'shift', 'patches')


def _same_pads(x, kernel):
  return lax.padtype_to_pads(x.shape[1:3], kernel.shape[:2], (1, 1), 'SAME')


def _xla_conv(x, kernel):
  return lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _shifted_views(x, kernel):
  """The k_h * k_w views of the padded input that each kernel tap multiplies, [B, H, W, C] each."""
  (kh, kw), (h, w) = kernel.shape[:2], x.shape[1:3]
  xp = jnp.pad(x, ((0, 0), *_same_pads(x, kernel), (0, 0)))
  return [xp[:, i:i + h, j:j + w, :] for i in range(kh) for j in range(kw)]


@jax.custom_vjp
def _shift_conv(x, kernel):
  """One input channel: a sum of k_h * k_w shifted, scaled copies of the input, which XLA fuses
  into one loop; its gradients are XLA's own convolution gradients (autodiff of the sum would
  reduce over the whole output once per tap)."""
  taps = kernel.reshape(-1, kernel.shape[-1])
  return sum(view * tap for view, tap in zip(_shifted_views(x, kernel), taps))


def _shift_conv_fwd(x, kernel):
  return _shift_conv(x, kernel), (x, kernel)


def _shift_conv_bwd(residuals, g):
  return jax.vjp(_xla_conv, *residuals)[1](g)


_shift_conv.defvjp(_shift_conv_fwd, _shift_conv_bwd)


def _patches_conv(x, kernel):
  """im2col: the k_h * k_w * C patch of every position, times the kernel, as one matmul (and its
  gradients as matmuls too)."""
  b, h, w, _ = x.shape
  patches = jnp.stack(_shifted_views(x, kernel), axis=3).reshape(b * h * w, -1)
  return (patches @ kernel.reshape(-1, kernel.shape[-1])).reshape(b, h, w, -1)


def choose_conv_impl(impl: str, x_shape, kernel_shape, backend: str) -> str:
  """What 'auto' means: on a CPU, per layer, the formulation measured fastest there for the
  LeNets' shapes (docs/performance.md: one input channel → 'shift', a map of at most 64 positions
  → 'patches', else XLA's convolution); on GPUs and TPUs always XLA's convolution."""
  if impl != 'auto':
    return impl
  if backend != 'cpu' or kernel_shape[0] % 2 == 0 or kernel_shape[1] % 2 == 0:
    return 'xla'
  if kernel_shape[2] == 1:
    return 'shift'
  return 'patches' if x_shape[1] * x_shape[2] <= 64 else 'xla'


class Conv2D(nn.Module):
  """A stride-1 'SAME' 2D convolution over [B, H, W, C] with nn.Conv's parameters (`kernel`
  [k_h, k_w, C, features], `bias`), computed as `impl` says: 'xla' (lax.conv_general_dilated),
  'shift' (one input channel only: a sum of shifted copies), 'patches' (im2col and a matmul), or
  'auto' (choose_conv_impl). Every formulation gives the same function; XLA:CPU runs its own
  convolutions several times slower than these on small maps and single channels."""
  features: int
  kernel_size: tuple[int, int]
  use_bias: bool = True
  kernel_init: Any = nn.initializers.lecun_normal()
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x):
    if self.impl not in CONV_IMPLS:
      raise UserError(f'encoder conv_impl={self.impl!r}; valid values: {", ".join(CONV_IMPLS)}')
    kernel = self.param('kernel', self.kernel_init,
                        (*self.kernel_size, x.shape[-1], self.features))
    dtype = jnp.result_type(x, kernel)
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    impl = choose_conv_impl(self.impl, x.shape, kernel.shape, jax.default_backend())
    if impl == 'shift' and x.shape[-1] != 1:
      raise UserError(f"conv_impl='shift' needs one input channel, not {x.shape[-1]}; use 'auto'")
    y = {'xla': _xla_conv, 'shift': _shift_conv, 'patches': _patches_conv}[impl](x, kernel)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros_init(), (self.features,)).astype(dtype)
    return y


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
  conv_impl: str = 'auto'   # how 2D convolutions are computed (Conv2D); 1D ones use nn.Conv
  remat: bool = False       # recompute each block's activations in the backward pass

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
    blocks = zip(self.features, self._per_block(self.kernel_sizes, 'kernel_sizes'),
                 self._per_block(self.pool, 'pool'))
    for i, (feat, k, pool) in enumerate(blocks):
      block = lambda module, x, i=i, feat=feat, k=k, pool=pool: module._block(
          x, i, feat, k, pool, init, train)
      x = layers.remat_block(block, self.remat)(self, x)
    b, c = x.shape[0], x.shape[-1]
    tokens = x.reshape(b, -1, c)
    pooled = x.reshape(b, -1) if self.readout == 'flatten' else tokens.mean(axis=1)
    return Encoding(pooled, tokens, jnp.ones(tokens.shape[:2], bool))

  def _block(self, x, i, feat, k, pool, init, train):
    """Conv → (BatchNorm) → ReLU → (pool), its layers named as nn.compact would name them, so
    checkpoints and parameter paths are the same with and without remat."""
    if self.spatial_dims == 2:
      x = Conv2D(feat, (k, k), use_bias=not self.batch_norm, impl=self.conv_impl,
                 name=f'Conv_{i}', **init)(x)
    else:
      x = nn.Conv(feat, (k,), padding='SAME', use_bias=not self.batch_norm, name=f'Conv_{i}',
                  **init)(x)
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f'BatchNorm_{i}')(x)
    x = nn.relu(x)
    if pool and self.spatial_dims == 1:
      return nn.max_pool(x, (2,), strides=(2,), padding='SAME')  # keeps a last odd frame
    return _max_pool_2x2(x) if pool else x


ENCODERS.register('cnn')(ConvNet)


@ENCODERS.register('lenet')
def lenet(channels: int = 6, additional_layers: int = 3, batch_norm: bool = True,
          input_mean: float = 0.0, input_std: float = 1.0, conv_impl: str = 'auto',
          remat: bool = False) -> ConvNet:
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
                 kernel_init=nn.initializers.variance_scaling(2.0, 'fan_in', 'uniform'),
                 conv_impl=conv_impl, remat=remat)


@ENCODERS.register('conv1d')
def conv1d(features=(64, 64, 64), kernel_sizes=(5, 3, 3), pool=True, batch_norm=True,
           remat: bool = False) -> ConvNet:
  """Convolution along time over a spectrogram [B, T, F]; pooled = mean over remaining frames."""
  return ConvNet(features=tuple(features), kernel_sizes=kernel_sizes, pool=pool,
                 batch_norm=batch_norm, readout='mean', spatial_dims=1, remat=remat)
