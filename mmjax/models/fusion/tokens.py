"""Each modality's Encoding as a masked token sequence, for the attention-based fusions."""

from typing import Optional

import flax.linen as nn

from mmjax.models import layers
from mmjax.models.base import Encoding, mask_encoding


class ModalityTokens(nn.Module):
  """Encoding, present [B] → tokens [B, L, dim] and mask [B, L] (all False where absent).

  An encoder without tokens contributes its pooled vector as a single token. The content is zeroed
  before the projection, so an absent modality's tokens do not depend on its input at all.
  """
  dim: int
  positions: Optional[str] = 'learned'  # layers.AddPositions kind, or None

  @nn.compact
  def __call__(self, enc: Encoding, present):
    enc = mask_encoding(enc, present)
    if enc.tokens is None:
      tokens, mask = enc.pooled[:, None], present[:, None]
    else:
      tokens, mask = enc.tokens, enc.token_mask
    x = nn.Dense(self.dim)(tokens)
    if self.positions:
      x = layers.AddPositions(self.positions)(x)
    return x, mask
