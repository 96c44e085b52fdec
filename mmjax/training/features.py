"""Front ends computed once per stored recording (`precompute_frontends`).

AV-MNIST's audio is 3,000 recordings joined by id to 70,000 examples, and the main job's log-mel
is fixed: nothing before it varies per example. With `precompute_frontends=True` such a
modality's front end runs once over the joined table, at the start, on the device, and training
reads the features instead of the waveforms (the model skips a front end whose input is already
its output, MultimodalModel.encode). Evaluation keeps the waveforms: the robustness evaluator adds
its noise to them.

A modality keeps the waveform path where it needs one: stored per example (no join), noise added
in training (`modality_noise`), a front end that augments in training (SpecAugment), or an
objective that runs the inputs through a model of its own (distillation's teacher).

On a CPU the features are the front end's own, bit for bit (tests/test_precompute_frontends.py;
on a GPU another batch shape may pick another matmul kernel); the train step is not: XLA fuses the
front end with the first convolution when both run in one program, so the two paths' updates
differ in the last bits (about 1e-7 of a parameter after one step) and a run's trajectory drifts
from there.
"""

import time

import jax
import numpy as np

from mmjax import corrupt
from mmjax import objectives
from mmjax import writers
from mmjax.data import input_pipeline
from mmjax.models.model import encoded_frontends

# Rows of the table per call of the front end: bounds the device memory of a large table; the
# last chunk is padded to this size so the front end compiles once.
CHUNK = 512


def reasons_to_keep_waveforms(config) -> dict[str, str]:
  """{modality with a front end: why it cannot be precomputed}; modalities absent from it can."""
  joined, noised = input_pipeline.joined_modalities(config), corrupt.noised_in_training(config)
  objective = objectives.OBJECTIVES.get(objectives.name_of(config), 'objective.name')
  reasons = {}
  for m, frontend in sorted(encoded_frontends(config).items()):
    if m not in joined:
      reasons[m] = 'stored per example, not once per id (dataset.joins)'
    elif m in noised:
      reasons[m] = 'training adds noise to it (modality_noise)'
    elif not getattr(frontend, 'fixed', False):  # a front end that does not say is not
      reasons[m] = 'its front end augments in training'
    elif objective.feeds_another_model:
      reasons[m] = f'objective {objectives.name_of(config)!r} feeds the inputs to another model'
  return reasons


def table_features(config) -> dict:
  """{modality: table → feature table} for `input_pipeline.train_iterator`: each modality whose
  front end can run once per stored row, when `precompute_frontends`; else {}."""
  if not config.get('precompute_frontends', False):
    return {}
  reasons = reasons_to_keep_waveforms(config)
  for m, why in reasons.items():
    writers.log('precompute_frontends: %s keeps its waveforms: %s', m, why)
  return {m: _computed_by(frontend, m) for m, frontend in encoded_frontends(config).items()
          if m not in reasons}


def _computed_by(frontend, modality: str):
  apply = jax.jit(lambda x: frontend.apply({}, x))

  def compute(table: np.ndarray) -> np.ndarray:
    start = time.perf_counter()
    n = len(table)
    padded = np.concatenate([table, np.zeros((-n % CHUNK,) + table.shape[1:], table.dtype)])
    out = np.concatenate([np.asarray(apply(padded[i:i + CHUNK]))
                          for i in range(0, len(padded), CHUNK)])[:n]
    writers.log('precompute_frontends: %s front end computed once per stored row: %d rows, '
                'features %s, %.1f s', modality, n, out.shape[1:], time.perf_counter() - start)
    return out

  return compute
