"""Runs a few train steps on a fixed global batch and saves the loss curve and parameters.

Run in a fresh process so XLA_FLAGS (the fake device count) takes effect:
  python tests/scripts/train_steps.py OUT.npz
"""

import sys

import jax
import numpy as np

from mmjax import optim, parallel, train
from mmjax.data import input_pipeline
from tests.conftest import small_config


def main(out):
  config = small_config(batch_size=8, num_train_steps=4)
  mesh = parallel.make_mesh()
  model, tx = train.build_model(config), optim.make(config)
  batch = next(input_pipeline.train_iterator(config))
  state = train.init_state(config, model, tx, batch, mesh)
  step = train.make_train_step(config, model, tx, mesh)
  losses = []
  for _ in range(config.num_train_steps):
    state, sums = step(state, parallel.global_batch(batch, mesh))
    losses.append(float(sums['loss'] / sums['count']))
  leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(state.params))
  np.savez(out, losses=np.array(losses), devices=jax.device_count(),
           **{jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves})


if __name__ == '__main__':
  main(sys.argv[1])
