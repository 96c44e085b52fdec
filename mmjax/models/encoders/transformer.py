"""Transformer encoders: over token ids or frames ('transformer'), over image patches ('vit',
Dosovitskiy et al., 2021) and over spectrogram patches ('ast', Gong et al., 2021)."""

from typing import Optional, Sequence, Union

import flax.linen as nn
import jax.numpy as jnp

from mmjax.models import layers
from mmjax.models.base import ENCODERS, Encoding
from mmjax.models.encoders.recurrent import embed_sequence

Size2D = Union[int, Sequence[int]]


class TransformerEncoder(layers.BlockFields):
  """Tokens → positions → `layers.Transformer`; one class for all three input kinds.

  patch_size None: input is token ids [B, L] (0 = padding, masked out) or frames [B, T, F].
  Otherwise: input is an image [B, H, W, C] or a spectrogram [B, T, F], cut into patches by a
  conv of stride `patch_stride` (default: the patch size, so no overlap); 'SAME' padding keeps
  the edge that a size not divisible by the patch leaves over.
  pooled = the CLS token's output if `cls_token`, else the mean over real tokens. tokens never
  include CLS; padding positions are zero.
  """
  patch_size: Optional[Size2D] = None
  patch_stride: Optional[Size2D] = None
  vocab_size: int = 64
  dim: int = 64
  num_layers: int = 2
  cls_token: bool = False
  positions: str = 'learned'  # 'learned' or 'sinusoidal'
  max_length: int = 512       # learned positions: most tokens (CLS included) ever seen

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.patch_size is None:
      h, mask = embed_sequence(x, self.vocab_size, self.dim)
    else:
      h = self._patches(x)
      mask = jnp.ones(h.shape[:2], bool)
    b = h.shape[0]
    if self.cls_token:
      cls = self.param('cls', nn.initializers.zeros, (1, 1, self.dim))
      h = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.dim)), h], axis=1)
      mask = jnp.concatenate([jnp.ones((b, 1), bool), mask], axis=1)
    h = layers.AddPositions(self.positions, self.max_length)(h)
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = layers.Transformer(num_layers=self.num_layers, num_heads=self.num_heads,
                           mlp_ratio=self.mlp_ratio, dropout=self.dropout, remat=self.remat)(
        h, mask, train=train)
    h = h * mask[..., None]
    if self.cls_token:
      return Encoding(h[:, 0], h[:, 1:], mask[:, 1:])
    return Encoding(layers.masked_mean(h, mask), h, mask)

  def _patches(self, x):
    if x.ndim == 3:  # spectrogram [B, T, F]: one channel
      x = x[..., None]
    pair = lambda s: (s, s) if isinstance(s, int) else tuple(s)
    size = pair(self.patch_size)
    stride = size if self.patch_stride is None else pair(self.patch_stride)
    x = nn.Conv(self.dim, size, stride, padding='SAME', name='patch_embed')(x)
    b, gh, gw, d = x.shape
    # Row-major over (H, W), i.e. time-major for spectrograms: a patch keeps its learned
    # position whatever the clip length.
    return x.reshape(b, gh * gw, d)


ENCODERS.register('transformer')(TransformerEncoder)


@ENCODERS.register('vit')
def vit(patch_size: Size2D = 4, cls_token: bool = True, **kwargs) -> TransformerEncoder:
  """28x28 images → 49 patches of 4x4."""
  return TransformerEncoder(patch_size=patch_size, cls_token=cls_token, **kwargs)


@ENCODERS.register('ast')
def ast(patch_size: Size2D = 8, cls_token: bool = True, **kwargs) -> TransformerEncoder:
  """Log-mel [B, T, F] → (T/8)x(F/8) patches; AST's overlap is `patch_stride` < `patch_size`."""
  return TransformerEncoder(patch_size=patch_size, cls_token=cls_token, **kwargs)
