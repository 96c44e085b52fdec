"""A small ResNet (He et al., 2016) of basic blocks for images and spectrograms."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from mmjax.models import layers
from mmjax.models.base import ENCODERS, Encoding


class BasicBlock(nn.Module):
  """Two 3x3 conv + BatchNorm layers with an identity (or 1x1 projection) shortcut."""
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = lambda **kw: nn.BatchNorm(use_running_average=not train, momentum=0.9, **kw)
    h = nn.Conv(self.features, (3, 3), self.stride, padding='SAME', use_bias=False)(x)
    h = nn.relu(norm()(h))
    h = nn.Conv(self.features, (3, 3), padding='SAME', use_bias=False)(h)
    # Zero-initialised last scale: each block starts as the identity (Goyal et al., 2017).
    h = norm(scale_init=nn.initializers.zeros)(h)
    if x.shape != h.shape:
      x = nn.Conv(self.features, (1, 1), self.stride, use_bias=False)(x)
      x = norm()(x)
    return nn.relu(x + h)


@ENCODERS.register('resnet')
class ResNet(nn.Module):
  """3x3 stem, then stages of basic blocks (every stage after the first halves the resolution),
  then global average pooling. Input [B, H, W] or [B, H, W, C]; tokens are the last feature
  map's positions. No stem pooling: inputs here are small (28x28 images; from a 1-s AV-MNIST
  clip, 97x64 log-mels with the main job's front end, 61x32 with the default one)."""
  stage_sizes: Sequence[int] = (2, 2, 2)
  widths: Sequence[int] = (16, 32, 64)
  remat: bool = False  # recompute each block's activations in the backward pass

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.ndim == 3:
      x = x[..., None]
    x = nn.Conv(self.widths[0], (3, 3), padding='SAME', use_bias=False)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    n = 0
    for i, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
      for j in range(blocks):
        block = lambda module, x, width=width, stride=2 if i > 0 and j == 0 else 1, n=n: \
            BasicBlock(width, stride=stride, name=f'BasicBlock_{n}')(x, train=train)
        x = layers.remat_block(block, self.remat)(self, x)
        n += 1
    b, h, w, c = x.shape
    tokens = x.reshape(b, h * w, c)
    return Encoding(tokens.mean(axis=1), tokens, jnp.ones((b, h * w), bool))
