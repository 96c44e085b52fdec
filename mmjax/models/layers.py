"""Building blocks shared by the transformer encoders and the attention-based fusions."""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


def remat_block(block, enabled: bool):
  """`block(module, *arrays)` as it is, or with its activations recomputed in the backward pass
  instead of stored (`nn.remat`, per block) when `enabled`: the memory of a deep stack's
  activations for about one more forward pass. Blocks create their layers inside `block` under
  explicit names, so parameters, their paths and their initial values are the same either way."""
  return nn.remat(block) if enabled else block


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
  """[length, dim] fixed sine/cosine position codes (Vaswani et al., 2017)."""
  pos = np.arange(length)[:, None]
  freq = np.exp(-np.log(10000.0) * np.arange(0, dim, 2) / dim)
  pe = np.zeros((length, dim), np.float32)
  pe[:, 0::2] = np.sin(pos * freq)
  pe[:, 1::2] = np.cos(pos * freq)[:, : dim // 2]
  return pe


class AddPositions(nn.Module):
  """Adds learned or sinusoidal position embeddings to [B, L, D]."""
  kind: str = 'learned'  # 'learned' or 'sinusoidal'
  max_length: int = 512

  @nn.compact
  def __call__(self, x):
    length, dim = x.shape[-2:]
    if self.kind == 'sinusoidal':
      return x + sinusoidal_positions(length, dim).astype(x.dtype)
    table = self.param('positions', nn.initializers.normal(0.02), (self.max_length, dim))
    return x + table[:length]


def attention_mask(query_mask, key_mask):
  """[B, Lq], [B, Lk] bool → [B, 1, Lq, Lk] for nn.MultiHeadDotProductAttention."""
  return nn.make_attention_mask(query_mask, key_mask)


class TransformerBlock(nn.Module):
  """Pre-LayerNorm block: (cross-)attention then MLP, both residual.

  Keys/values come from `context` (self-attention when None); `mask` is [B, 1, Lq, Lk].
  """
  num_heads: int = 4
  mlp_ratio: int = 4
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, mask=None, context=None, train: bool = False):
    dim = x.shape[-1]
    h = nn.LayerNorm()(x)
    kv = h if context is None else nn.LayerNorm()(context)
    h = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dropout_rate=self.dropout,
                                        deterministic=not train)(h, kv, mask=mask)
    x = x + nn.Dropout(self.dropout, deterministic=not train)(h)
    h = nn.LayerNorm()(x)
    h = nn.Dense(dim * self.mlp_ratio)(h)
    h = nn.gelu(h)
    h = nn.Dense(dim)(h)
    return x + nn.Dropout(self.dropout, deterministic=not train)(h)


class BlockFields(nn.Module):
  """The fields of every module built of TransformerBlocks (`transformer_block` reads them)."""
  num_heads: int = 4
  mlp_ratio: int = 4
  dropout: float = 0.0
  remat: bool = False  # recompute each block's activations in the backward pass (remat_block)


class Transformer(BlockFields):
  """A stack of self-attention blocks over [B, L, D] with a padding mask [B, L]; final LayerNorm."""
  num_layers: int = 2

  @nn.compact
  def __call__(self, x, token_mask, train: bool = False):
    mask = attention_mask(token_mask, token_mask)
    for i in range(self.num_layers):
      x = transformer_block(self, f'TransformerBlock_{i}', train)(x, mask)
    return nn.LayerNorm()(x)


def transformer_block(parent: nn.Module, name: str, train: bool):
  """`(x, mask, context=None) -> x`: the TransformerBlock `name` of `parent`, built from its
  num_heads, mlp_ratio and dropout, rematerialised (remat_block) when `parent.remat`."""
  def block(module, x, mask, context):
    del module  # the block is created in the scope remat_block gives it
    return TransformerBlock(parent.num_heads, parent.mlp_ratio, parent.dropout, name=name)(
        x, mask, context=context, train=train)
  return lambda x, mask, context=None: remat_block(block, parent.remat)(parent, x, mask, context)


def masked_mean(tokens, token_mask):
  """Mean over real tokens: [B, L, D], [B, L] → [B, D] (zeros where a row has no real token)."""
  w = token_mask.astype(tokens.dtype)[..., None]
  return (tokens * w).sum(axis=1) / jnp.maximum(w.sum(axis=1), 1.0)
