"""Classifier heads: one per task, all reading the same fused representation."""

from typing import Sequence

import flax.linen as nn


class MLP(nn.Module):
  """Dense → ReLU → Dropout per hidden size, then a linear output layer."""
  hidden: Sequence[int]
  out: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool = False):
    for size in self.hidden:
      x = nn.Dense(size)(x)
      x = nn.relu(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.out)(x)


class TaskHeads(nn.Module):
  """{task: logits} from one representation; several tasks give task-level (multi-task) fusion."""
  tasks: dict  # task name → number of classes
  hidden: Sequence[int] = (128, 64)
  dropout: float = 0.5

  @nn.compact
  def __call__(self, x, train: bool = False):
    return {task: MLP(self.hidden, n, self.dropout, name=task)(x, train)
            for task, n in sorted(self.tasks.items())}
