"""What every encoder and fusion module agrees on, and the registries that name them."""

from typing import Optional

import flax
import jax.numpy as jnp

from mmjax.registry import Registry

# An encoder maps one modality's input to an `Encoding`; a fusion maps {modality: Encoding} plus
# a presence mask [batch, n_modalities] to one vector per example (or, for decision-level fusion,
# to logits per task). A module is added with `@ENCODERS.register('name')`.
ENCODERS = Registry('encoder')
FUSIONS = Registry('fusion')
FRONTENDS = Registry('front end')


@flax.struct.dataclass
class Encoding:
  """One modality's representation.

  pooled: [batch, dim] summary vector.
  tokens: [batch, length, dim] sequence for attention-based fusion, or None.
  token_mask: [batch, length] bool, True at real (non-padding) tokens, or None.
  """
  pooled: jnp.ndarray
  tokens: Optional[jnp.ndarray] = None
  token_mask: Optional[jnp.ndarray] = None


def modality_order(model_config) -> tuple[str, ...]:
  """The modalities of a model, in the order of the presence mask given to every fusion."""
  return tuple(sorted(model_config.encoders))


def mask_encoding(enc: Encoding, present: jnp.ndarray) -> Encoding:
  """Zeroes an absent modality's features so nothing of its content (even NaN) reaches fusion."""
  pooled = jnp.where(present[:, None], enc.pooled, 0)
  tokens = token_mask = None
  if enc.tokens is not None:
    real = jnp.ones(enc.tokens.shape[:2], bool) if enc.token_mask is None else enc.token_mask
    token_mask = real & present[:, None]
    tokens = jnp.where(token_mask[..., None], enc.tokens, 0)
  return Encoding(pooled, tokens, token_mask)
