"""Noise added to a modality's model input, on the device: training augmentation and the
robustness evaluator use the same functions, so a level means the same thing in both; and the
training-time corruptions a config asks for (`modality_dropout`, `modality_noise`).

  audio: white Gaussian noise at a signal-to-noise ratio in dB, relative to each example's own
         waveform power (a clip that is already noisy gets that much more noise on top).
  image: Gaussian noise of a standard deviation given in pixel units of [0, 1] (the model input is
         normalised by dataset.modalities.image.std, so it is scaled by the same factor:
         mmjax.data.input_pipeline.pixel_scale).
"""

import functools

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


def add_noise(x, modality: str, level, key, pixel_scale: float):
  """x [batch, ...] with noise at `level` [batch] per example; `key` one PRNG key per example;
  `pixel_scale`: model-input units per pixel unit (mmjax.data.input_pipeline.pixel_scale)."""
  noise = jax.vmap(lambda k: jax.random.normal(k, x.shape[1:], jnp.float32))(key)
  axes = tuple(range(1, x.ndim))
  expand = lambda v: v.reshape((-1,) + (1,) * (x.ndim - 1))
  if modality == 'audio':
    power = jnp.mean(jnp.square(x.astype(jnp.float32)), axis=axes)
    std = jnp.sqrt(power / 10.0 ** (level / 10.0))
  elif modality == 'image':
    std = level * pixel_scale
  else:
    level_name(modality)  # raises
  return (x + expand(std) * noise).astype(x.dtype)


def example_keys(key, indices):
  """One key per example: a pure function of (key, example index), not of batch or device count."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)


def drop_modalities(config, modalities: tuple[str, ...], present: dict, key) -> dict:
  """Marks modality m of each example absent with probability `config.modality_dropout[m]`;
  `modalities`: the model's (MultimodalModel.modalities), whose draws come in that order.

  An example whose draw would leave it no modality keeps all it had.
  """
  rates = {m: float(p) for m, p in (config.get('modality_dropout') or {}).items() if float(p) > 0}
  if not rates:
    return present
  u = jax.random.uniform(key, (present[modalities[0]].shape[0], len(modalities)))
  kept = {m: present[m] & (u[:, i] >= rates.get(m, 0.0)) for i, m in enumerate(modalities)}
  any_left = functools.reduce(jnp.logical_or, kept.values())
  return {**present, **{m: jnp.where(any_left, kept[m], present[m]) for m in modalities}}


def noised_in_training(config) -> set[str]:
  """The modalities `config.modality_noise` adds noise to in training."""
  return set(config.get('modality_noise') or {})


def inject_noise(config, inputs: dict, key, pixel_scale: float) -> dict:
  """Training-time noise, `config.modality_noise = {modality: {'p': prob, <level>: (lo, hi)}}`:
  each example's modality gets, with probability p, noise at a level drawn uniformly in [lo, hi]
  (audio `snr_db`, image `std`; see `add_noise`)."""
  spec = config.get('modality_noise') or {}
  if not spec:
    return inputs
  out = dict(inputs)
  for i, m in enumerate(sorted(spec)):
    cfg = spec[m]
    lo, hi = cfg[level_name(m)]
    k_apply, k_level, k_noise = jax.random.split(jax.random.fold_in(key, i), 3)
    batch = inputs[m].shape[0]
    apply = jax.random.uniform(k_apply, (batch,)) < cfg.get('p', 1.0)
    level = jax.random.uniform(k_level, (batch,), minval=lo, maxval=hi)
    keys = example_keys(k_noise, jnp.arange(batch))
    noisy = add_noise(inputs[m], m, level, keys, pixel_scale)
    out[m] = jnp.where(apply.reshape((-1,) + (1,) * (noisy.ndim - 1)), noisy, inputs[m])
  return out
