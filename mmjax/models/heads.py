"""Classifier heads: one per task, all reading the same fused representation."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.errors import UserError

INITS = ('flax', 'torch')


def _dense(features: int, fan_in: int, param_init: str) -> nn.Dense:
  """'flax': LeCun-normal weights, zero biases. 'torch': PyTorch's nn.Linear default, weights and
  biases both U(+-1/sqrt(fan_in)) (a third of LeCun's weight variance)."""
  if param_init == 'flax':
    return nn.Dense(features)
  if param_init != 'torch':
    raise UserError(f'model.head.param_init={param_init!r}; valid values: {", ".join(INITS)}')
  bound = fan_in ** -0.5
  return nn.Dense(features,
                  kernel_init=nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform'),
                  bias_init=lambda key, shape, dtype=jnp.float32: jax.random.uniform(
                      key, shape, dtype, -bound, bound))


class MLP(nn.Module):
  """Dense → ReLU → Dropout per hidden size, then a linear output layer; `param_init` as in
  _dense."""
  hidden: Sequence[int]
  out: int
  dropout: float = 0.0
  param_init: str = 'flax'

  @nn.compact
  def __call__(self, x, train: bool = False):
    for size in self.hidden:
      x = _dense(size, x.shape[-1], self.param_init)(x)
      x = nn.relu(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return _dense(self.out, x.shape[-1], self.param_init)(x)


class TaskHeads(nn.Module):
  """{task: logits} from one representation; several tasks give task-level (multi-task) fusion."""
  tasks: dict  # task name → number of classes
  hidden: Sequence[int] = (128, 64)
  dropout: float = 0.5
  param_init: str = 'flax'

  @nn.compact
  def __call__(self, x, train: bool = False):
    return {task: MLP(self.hidden, n, self.dropout, self.param_init, name=task)(x, train)
            for task, n in sorted(self.tasks.items())}
