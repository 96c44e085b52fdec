"""Classifier heads: one per task, all reading the same fused representation."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.errors import UserError

INITS = ('flax', 'torch')


def _dense(features: int, fan_in: int, init: str) -> nn.Dense:
  """'flax': LeCun-normal weights, zero biases. 'torch': PyTorch's nn.Linear default, weights and
  biases both U(+-1/sqrt(fan_in)) (a third of LeCun's weight variance)."""
  if init == 'flax':
    return nn.Dense(features)
  if init != 'torch':
    raise UserError(f'model.head.init={init!r}; valid values: {", ".join(INITS)}')
  bound = fan_in ** -0.5
  return nn.Dense(features,
                  kernel_init=nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform'),
                  bias_init=lambda key, shape, dtype=jnp.float32: jax.random.uniform(
                      key, shape, dtype, -bound, bound))


class MLP(nn.Module):
  """Dense → ReLU → Dropout per hidden size, then a linear output layer; `init` as in _dense."""
  hidden: Sequence[int]
  out: int
  dropout: float = 0.0
  init: str = 'flax'

  @nn.compact
  def __call__(self, x, train: bool = False):
    for size in self.hidden:
      x = _dense(size, x.shape[-1], self.init)(x)
      x = nn.relu(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return _dense(self.out, x.shape[-1], self.init)(x)


class TaskHeads(nn.Module):
  """{task: logits} from one representation; several tasks give task-level (multi-task) fusion."""
  tasks: dict  # task name → number of classes
  hidden: Sequence[int] = (128, 64)
  dropout: float = 0.5
  init: str = 'flax'

  @nn.compact
  def __call__(self, x, train: bool = False):
    return {task: MLP(self.hidden, n, self.dropout, self.init, name=task)(x, train)
            for task, n in sorted(self.tasks.items())}
