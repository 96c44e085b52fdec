"""Recurrent encoders for token sequences (text) and frame sequences (audio spectrograms)."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.base import ENCODERS, Encoding


def embed_sequence(x, vocab_size: int, dim: int):
  """Token ids [B, L] (0 = padding) or frames [B, T, F] → vectors [B, L, dim], mask [B, L]."""
  if jnp.issubdtype(x.dtype, jnp.integer):
    return nn.Embed(vocab_size, dim)(x), x != 0
  return nn.Dense(dim)(x), jnp.ones(x.shape[:2], bool)


class Recurrent(nn.Module):
  """Stacked (bi)LSTM/GRU; pooled = the last real step's output, so padding never matters."""
  hidden: Sequence[int] = (64, 64)
  cell: str = 'lstm'
  bidirectional: bool = False
  vocab_size: int = 64
  embed_dim: int = 64

  @nn.compact
  def __call__(self, x, train: bool = False):
    h, mask = embed_sequence(x, self.vocab_size, self.embed_dim)
    lengths = mask.sum(axis=1).astype(jnp.int32)
    cell = {'lstm': nn.OptimizedLSTMCell, 'gru': nn.GRUCell}[self.cell]
    for size in self.hidden:
      # The carry in the inputs' dtype (flax starts it in float32), so that a bfloat16 model's
      # recurrence stays in bfloat16.
      carry = jax.tree.map(lambda c: c.astype(h.dtype), cell(size, parent=None).initialize_carry(
          jax.random.key(0), h[:, 0].shape))
      fwd = nn.RNN(cell(size))
      if self.bidirectional:
        h = nn.Bidirectional(fwd, nn.RNN(cell(size)))(h, initial_carry=(carry, carry),
                                                       seq_lengths=lengths)
      else:
        h = fwd(h, initial_carry=carry, seq_lengths=lengths)
    last = jnp.take_along_axis(h, jnp.maximum(lengths - 1, 0)[:, None, None], axis=1)[:, 0]
    if self.bidirectional:  # the backward half has seen the whole sequence at step 0
      half = h.shape[-1] // 2
      last = jnp.concatenate([last[:, :half], h[:, 0, half:]], axis=-1)
    h = h * mask[..., None]
    return Encoding(last, h, mask)


ENCODERS.register('lstm')(Recurrent)


@ENCODERS.register('bilstm')
def bilstm(**kwargs) -> Recurrent:
  return Recurrent(bidirectional=True, **kwargs)


@ENCODERS.register('gru')
def gru(**kwargs) -> Recurrent:
  return Recurrent(cell='gru', **kwargs)
