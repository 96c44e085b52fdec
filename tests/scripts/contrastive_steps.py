"""The contrastive loss on one fixed global batch, a few train steps from it, and the retrieval
evaluator on the result, for both losses.

Run in a fresh process so XLA_FLAGS (the fake device count) takes effect:
  python tests/scripts/contrastive_steps.py OUT.npz
"""

import sys

import jax
import numpy as np

from configs import contrastive
from mmjax import compilation, evaluators, parallel
from mmjax.training import steps
from mmjax.data import input_pipeline
from tests.conftest import override


def small_config(variant):
  """configs/contrastive.py:<variant> with one-block CNNs, batch 16."""
  config = contrastive.get_config(variant)
  small = {'name': 'cnn', 'features': (8,), 'kernel_sizes': (3,), 'pool': (True,)}
  config.model.encoders = {'image': dict(small), 'audio': dict(small)}
  config.model.frontends.audio.n_mels = 16
  return override(config, batch_size=16, num_train_steps=6, **{'optimizer.learning_rate': 0.01,
                                                                'optimizer.warmup_steps': 0})


def main(out):
  # The session's persistent cache (tests/conftest.py), as mmjax.main uses it.
  compilation.enable_cache('auto')
  results = {'devices': jax.device_count()}
  for loss in ('clip', 'siglip'):
    config = small_config('synthetic' if loss == 'clip' else 'synthetic_siglip')
    mesh = parallel.make_mesh()
    batch = next(input_pipeline.train_iterator(config))
    trainer = steps.build_trainer(config, mesh)
    state = trainer.init_state(batch)
    eval_step = trainer.eval_fns.metrics
    train_step = trainer.train_step
    batch = parallel.global_batch(batch, mesh)
    sums = jax.device_get(eval_step(state, batch))
    results[f'{loss}/eval_loss'] = sums['loss'] / sums['count']
    losses = []
    for _ in range(config.num_train_steps):
      state, sums = train_step(state, batch)
      losses.append(float(sums['loss'] / sums['count']))
    results[f'{loss}/train_losses'] = np.array(losses)
    results[f'{loss}/log_scale'] = np.asarray(state.objective_params['log_scale'])
    config.evals = {'retrieval': {'type': 'retrieval', 'split': 'validation', 'ks': (1, 5)}}
    [line] = evaluators.build(config.evals, trainer.eval_fns)['retrieval'].run(state)
    for name, value in line.items():
      results[f'{loss}/retrieval/{name}'] = np.asarray(value)
  np.savez(out, **results)


if __name__ == '__main__':
  main(*sys.argv[1:])
