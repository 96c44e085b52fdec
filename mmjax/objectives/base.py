"""Objectives: what a run minimises, chosen by `config.objective.name`.

An objective turns the model's outputs on a batch into (loss, metric sums). It may own trainable
parameters (`init`), e.g. learned task weights: they live in `TrainState.objective_params`, are
optimised with the model's and checkpointed with them, so a resumed run stays bitwise exact.

Metric sums are sums over the batch's real examples plus `count`, so they add up exactly across
steps, devices and padded evaluation batches; `finalize` divides on the host. Every objective
reports `loss` (the total it minimises).

Adding one: subclass `Objective`, register it, name it in the config. What the trainer calls:
`init_from_example` (its parameters; by default `init`), `apply_model` (the forward pass),
`__call__` (loss and metric sums) and `transform_gradients` (by default none).
"""

import jax
import jax.numpy as jnp
import optax

from mmjax.errors import UserError
from mmjax.registry import Registry

OBJECTIVES = Registry('objective',
                      providers=('mmjax.contrastive', 'mmjax.distill', 'mmjax.imbalance'))


class Objective:
  """The default: the model's forward pass on the batch, scored by `__call__`."""

  def __init__(self, config, model):
    self.config = config
    self.model = model

  def init(self, rng) -> dict:
    """The objective's own trainable parameters ({} for none)."""
    del rng
    return {}

  def init_from_example(self, rng, variables, batch) -> dict:
    """What the trainer initialises the objective's parameters with: for an objective that sizes
    them from the model's outputs (e.g. projection heads) on a batch; by default `init(rng)`."""
    del variables, batch
    return self.init(rng)

  def transform_gradients(self, grads, sums, step, key):
    """(grads, sums) between the backward pass and the optimizer, e.g. OGM-GE's per-encoder
    modulation (mmjax.imbalance); by default unchanged."""
    del step, key
    return grads, sums

  def apply_model(self, variables, batch, *, train: bool, rngs=None):
    """(outputs, updated batch_stats); batch_stats are only updated in training."""
    if not train:
      return self.model.apply(variables, batch['inputs'], batch['present'], train=False), None
    outputs, updates = self.model.apply(variables, batch['inputs'], batch['present'], train=True,
                                        rngs=rngs, mutable=['batch_stats'])
    return outputs, updates.get('batch_stats', {})

  def __call__(self, params, outputs, batch):
    """(scalar loss, {metric: sum}) with `count`, the number of real examples."""
    raise NotImplementedError


def _cross_entropy(logits, labels, mask):
  xent = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  correct = jnp.argmax(logits, -1) == labels
  return (xent * mask).sum(), (correct * mask).sum()


@OBJECTIVES.register('classification')
class Classification(Objective):
  """Cross-entropy on every head the model outputs, summed over tasks (multi-task learning).

  config.objective:
    task_weighting: 'fixed' — loss = Σ_t weight_t · L_t with `config.tasks[t].weight`;
      'uncertainty' — Kendall, Gal & Cipolla (CVPR 2018), classification form:
      Σ_t weight_t · (exp(-s_t) · L_t + s_t / 2) with a learned log-variance s_t per task.
    aux_weight: weight of the auxiliary heads `<task>/<head>` (task-level fusion) beside `<task>`.
  Metrics: `loss`; `<head>/loss` and `<head>/accuracy` for every head; `accuracy` when there is
  one task; `<task>/log_var` with uncertainty weighting.
  """

  def __init__(self, config, model):
    super().__init__(config, model)
    cfg = config.get('objective') or {}
    self.weighting = cfg.get('task_weighting', 'fixed')
    if self.weighting not in ('fixed', 'uncertainty'):
      raise UserError(f"objective.task_weighting={self.weighting!r}; valid values: fixed, "
                      "uncertainty")
    self.aux_weight = float(cfg.get('aux_weight', 1.0))
    self.tasks = sorted(config.tasks)
    self.task_weights = {t: float(config.tasks[t].get('weight', 1.0)) for t in self.tasks}

  def init(self, rng) -> dict:
    del rng
    if self.weighting == 'uncertainty':
      return {'log_var': {t: jnp.zeros((), jnp.float32) for t in self.tasks}}
    return {}

  def __call__(self, params, outputs, batch):
    mask = batch['mask'].astype(jnp.float32)
    count = mask.sum()
    denom = jnp.maximum(count, 1.0)
    task_loss = {t: 0.0 for t in self.tasks}
    sums = {'count': count}
    for head, logits in sorted(outputs.items()):
      task = head.split('/')[0]
      xent, correct = _cross_entropy(logits, batch['labels'][task], mask)
      sums[f'{head}/loss'], sums[f'{head}/accuracy'] = xent, correct
      task_loss[task] += (1.0 if head == task else self.aux_weight) * xent / denom
    loss = 0.0
    for t in self.tasks:
      if self.weighting == 'uncertainty':
        s = params['log_var'][t]
        loss += self.task_weights[t] * (jnp.exp(-s) * task_loss[t] + s / 2)
        sums[f'{t}/log_var'] = s * count
      else:
        loss += self.task_weights[t] * task_loss[t]
    sums['loss'] = loss * count
    if len(self.tasks) == 1:  # one task: its accuracy is the run's, logged once
      sums['accuracy'] = sums.pop(f'{self.tasks[0]}/accuracy')
    return loss, sums


def build(config, model) -> Objective:
  name = (config.get('objective') or {}).get('name', 'classification')
  return OBJECTIVES.get(name, 'objective.name')(config, model)


def finalize(sums: dict) -> dict:
  """Metric sums → means; `count` becomes `num_examples`."""
  count = float(sums['count'])
  out = {k: float(v) / max(count, 1.0) for k, v in sums.items() if k != 'count'}
  out['num_examples'] = int(count)
  return out


def add_sums(a: dict, b: dict) -> dict:
  return jax.tree.map(lambda x, y: x + y, a, b)

