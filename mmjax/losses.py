"""Losses and metrics over any number of task heads, weighted by the example mask.

Metrics are kept as sums (plus the example count) so they add up exactly across steps, devices and
padded eval batches; `finalize` divides on the host.
"""

import jax.numpy as jnp
import optax


def classification(logits: dict, labels: dict, mask, weights: dict):
  """Weighted sum of per-task mean cross-entropies → (loss, metric sums)."""
  mask = mask.astype(jnp.float32)
  count = mask.sum()
  denom = jnp.maximum(count, 1.0)
  loss = 0.0
  sums = {'count': count}
  for task, task_logits in logits.items():
    xent = optax.softmax_cross_entropy_with_integer_labels(
        task_logits.astype(jnp.float32), labels[task]) * mask
    correct = (jnp.argmax(task_logits, -1) == labels[task]) * mask
    loss = loss + weights.get(task, 1.0) * xent.sum() / denom
    prefix = '' if len(logits) == 1 else f'{task}/'
    sums[f'{prefix}loss'] = xent.sum()
    sums[f'{prefix}accuracy'] = correct.sum()
  return loss, sums


def finalize(sums: dict) -> dict:
  """Metric sums → means; `count` becomes `num_examples`."""
  count = float(sums['count'])
  out = {k: float(v) / max(count, 1.0) for k, v in sums.items() if k != 'count'}
  out['num_examples'] = int(count)
  return out
