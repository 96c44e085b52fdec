"""The keys and seed a run's randomness comes from, all from `config.seed` alone; the streams are
derived where they are drawn (mmjax.training.steps, the input pipeline):

- the model's initialisation: `model_key`; the objective's parameters: that key folded with 1;
- each train step's draws: `step_key` (the key of seed + 1 folded with the step), split into
  dropout and augmentation, and folded with 2 (modality dropout), 3 (input noise) and 4 (the
  objective's gradient transform), so a run resumed from any checkpoint draws what an
  uninterrupted one does;
- the order of training examples: grain's shuffle (or the pair sampler's) seeded with
  `shuffle_seed`.
"""

import jax


def model_key(config) -> jax.Array:
  return jax.random.key(config.seed)


def step_key(config, step) -> jax.Array:
  return jax.random.fold_in(jax.random.key(config.seed + 1), step)


def shuffle_seed(config) -> int:
  return int(config.seed)
