"""Noise added to a modality's model input, on the device: training augmentation and the
robustness evaluator use the same functions, so a level means the same thing in both.

  audio: white Gaussian noise at a signal-to-noise ratio in dB, relative to each example's own
         waveform power (a clip that is already noisy gets that much more noise on top).
  image: Gaussian noise of a standard deviation given in pixel units of [0, 1] (the model input is
         normalised by dataset.modalities.image.std, so it is scaled by the same factor).
"""

import jax
import jax.numpy as jnp

from mmjax.errors import UserError

# modality → the level's name; the level is a float array [batch] (one level per example).
KINDS = {'audio': 'snr_db', 'image': 'std'}


def level_name(modality: str) -> str:
  if modality not in KINDS:
    raise UserError(f'no noise is defined for modality {modality!r}; noise exists for '
                    f'{", ".join(sorted(KINDS))}')
  return KINDS[modality]


def add_noise(x, modality: str, level, key, dataset_config):
  """x [batch, ...] with noise at `level` [batch] per example; `key` one PRNG key per example."""
  noise = jax.vmap(lambda k: jax.random.normal(k, x.shape[1:], jnp.float32))(key)
  axes = tuple(range(1, x.ndim))
  expand = lambda v: v.reshape((-1,) + (1,) * (x.ndim - 1))
  if modality == 'audio':
    power = jnp.mean(jnp.square(x.astype(jnp.float32)), axis=axes)
    std = jnp.sqrt(power / 10.0 ** (level / 10.0))
  elif modality == 'image':
    std = level / dataset_config.modalities.image.get('std', 0.5)
  else:
    level_name(modality)  # raises
  return (x + expand(std) * noise).astype(x.dtype)


def example_keys(key, indices):
  """One key per example: a pure function of (key, example index), not of batch or device count."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)
