"""A run's randomness, every stream of it from `config.seed` alone.

- The model's initialisation: the seed's own key; the objective's parameters: that key folded
  with 1.
- Each train step's draws: the key of seed + 1 folded with the step, split into dropout and
  augmentation, folded with 2 (modality dropout), 3 (input noise) and 4 (the objective's gradient
  transform), so a run resumed from any checkpoint draws what an uninterrupted one does.
- The order of training examples: grain's shuffle (or the pair sampler's) seeded with the seed.
"""

import jax


def model_key(config) -> jax.Array:
  return jax.random.key(config.seed)


def step_key(config, step) -> jax.Array:
  return jax.random.fold_in(jax.random.key(config.seed + 1), step)


def shuffle_seed(config) -> int:
  return int(config.seed)
