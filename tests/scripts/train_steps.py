"""Runs a few train steps on a fixed global batch and saves the loss curve and parameters.

Run in a fresh process so XLA_FLAGS (the fake device count) takes effect:
  python tests/scripts/train_steps.py OUT.npz [paradigms | accumulate=K]

`paradigms` trains two tasks with learned uncertainty weights, task-level heads, a frozen
encoder, modality dropout and training noise, and runs the robustness evaluator at the end.
`accumulate=K` trains the plain config with SGD and without dropout, its batch as K
micro-batches (grad_accum_steps; K=1 is the same config without accumulation).
`remat=CONFIG,0|1` trains configs/CONFIG.py:synthetic on image and audio without or with `remat`
on every encoder and on the fusion. `fsdp=0|1` trains the plain config with SGD, its state
replicated or split over the devices (config.fsdp).
"""

import importlib
import sys

import jax
import numpy as np

from mmjax import compilation, evaluators, parallel
from mmjax.training import steps
from mmjax.data import input_pipeline
from configs import default
from tests.conftest import override, small_config, tiny_config


def _config(variant):
  if variant.startswith('remat='):
    name, on = variant[6:].split(',')
    config = importlib.import_module(f'configs.{name}').get_config('synthetic')
    # Image and audio: text's LSTM has no blocks, and a third modality adds more of the same
    # cross-modal blocks (and their compile time), no other kind.
    config = default.keep_modalities(config, ('image', 'audio'))
    blocks = list(config.model.encoders.values())
    if config.model.fusion.name in ('mult', 'bottleneck_fusion', 'early_fusion'):
      blocks.append(config.model.fusion)
    for part in blocks:
      part.remat = on == '1'
    # SGD, as for accumulate=K: Adam would magnify the float rounding of the recomputation
    return override(config, batch_size=64, num_train_steps=4, log_every_steps=4,
                    **{'optimizer.name': 'sgd', 'optimizer.learning_rate': 0.05})
  if variant.startswith('fsdp='):
    return small_config(batch_size=64, num_train_steps=4, fsdp=variant == 'fsdp=1', ema_decay=0.9,
                        **{'model.head.dropout': 0.0, 'optimizer.name': 'sgd',
                           'optimizer.momentum': 0.9, 'optimizer.learning_rate': 0.05})
  if variant.startswith('accumulate='):
    return small_config(batch_size=64, num_train_steps=4, grad_accum_steps=int(variant[11:]),
                        # SGD: Adam's g/sqrt(v) turns float rounding in a near-zero gradient
                        # into a visible step
                        **{'model.head.dropout': 0.0, 'optimizer.name': 'sgd',
                           'optimizer.learning_rate': 0.05})
  if variant != 'paradigms':
    return small_config(batch_size=8, num_train_steps=4)
  config = tiny_config()
  # The synthetic data has one label; a second head on it exercises the two-task path.
  config.tasks = {'label': {'num_classes': 10, 'weight': 1.0},
                  'label_again': {'num_classes': 10, 'weight': 0.5}}
  config.dataset.labels = {'label': 'label', 'label_again': 'label'}
  config.evals = {'robustness': {
      'type': 'robustness', 'split': 'validation',
      'noise': {'audio': {'snr_db': (-6.0,)}, 'image': {'std': (0.5,)}}}}
  return override(config, batch_size=8, num_train_steps=4, freeze='heads/label_again', **{
      'objective.task_weighting': 'uncertainty', 'optimizer.learning_rate': 0.01,
      'model.unimodal_heads': {'hidden': (8,)}, 'modality_dropout': {'image': 0.3},
      'modality_noise': {'audio': {'p': 0.5, 'snr_db': (-6.0, 6.0)},
                         'image': {'p': 0.5, 'std': (0.0, 0.5)}}})


def _residual_bytes(objective, state, batch) -> int:
  """What the backward pass keeps from the forward one: the bytes of the residuals jax.vjp of the
  loss (the model in inference mode) saves, from their shapes alone. Rematerialised blocks keep
  only their inputs; XLA:GPU and TPU hold these, while XLA:CPU's compiled temporary memory does
  not show the difference (it drops the barriers)."""
  def loss(params):
    outputs, _ = objective.apply_model({**state.variables(), 'params': params}, batch,
                                       train=False)
    return objective(state.objective_params, outputs, batch)[0]
  shapes = jax.eval_shape(lambda p: jax.tree.leaves(jax.vjp(loss, p)[1]), state.params)
  return int(sum(np.prod(s.shape) * s.dtype.itemsize for s in shapes))


def main(out, variant=''):
  # The session's persistent cache (tests/conftest.py), as mmjax.main uses it: the runs a test
  # compares share programs (the init of one model, whatever the step does with it).
  compilation.enable_cache('auto')
  config = _config(variant)
  mesh = parallel.make_mesh()
  batch = next(input_pipeline.train_iterator(config))
  trainer = steps.build_trainer(config, mesh)
  state = trainer.init_state(batch)
  # Compiled once: XLA's own account of the step's scratch memory (activations live at once),
  # per device, is of the executable the steps below run.
  lowered = trainer.train_step.lower(state, parallel.global_batch(batch, mesh))
  step = lowered.compile()
  memory = step.memory_analysis()
  # jax.checkpoint marks each rematerialised block's recomputation with a barrier.
  barriers = lowered.as_text().count('stablehlo.optimization_barrier')
  residual_bytes = _residual_bytes(trainer.objective, state, batch)
  losses = []
  for _ in range(config.num_train_steps):
    state, sums = step(state, parallel.global_batch(batch, mesh))
    losses.append(float(sums['loss'] / sums['count']))
  trained = jax.device_get({'params': state.params, 'objective': state.objective_params})
  leaves = jax.tree_util.tree_leaves_with_path(trained)
  results = {jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves}
  if variant == 'paradigms':
    for line in evaluators.build(config.evals, trainer.eval_fns)['robustness'].run(state):
      results[f'robustness {line["condition"]}'] = np.array(
          [line['label/accuracy'], line['label_again/loss']])
  # How many of the state's arrays are split over the devices (config.fsdp), and what the step's
  # arguments (state and batch) take on each device.
  split = sum(not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(state))
  np.savez(out, losses=np.array(losses), devices=jax.device_count(),
           temp_bytes=memory.temp_size_in_bytes, barriers=barriers, split_arrays=split,
           argument_bytes=memory.argument_size_in_bytes, residual_bytes=residual_bytes,
           **results)


if __name__ == '__main__':
  main(*sys.argv[1:])
