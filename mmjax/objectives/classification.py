"""Classification: cross-entropy on every head, summed over tasks (multi-task learning)."""

import jax.numpy as jnp
import optax

from mmjax.errors import UserError
from mmjax.objectives.base import OBJECTIVES, Objective


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
    head_weights: {head: weight} for the fused head ('fused') and each modality's head, in place
      of aux_weight (and of 1 for `<task>` where it is the fused head,
      model.unimodal_heads.prediction='fused'): e.g. gradient blending's weights.
  Metrics: `loss`; `<head>/loss` and `<head>/accuracy` for every head, except that with one task
  its own head's accuracy is logged as `accuracy`; `<task>/log_var` with uncertainty weighting.
  """

  def __init__(self, config, model):
    super().__init__(config, model)
    cfg = config.get('objective') or {}
    self.weighting = cfg.get('task_weighting', 'fixed')
    if self.weighting not in ('fixed', 'uncertainty'):
      raise UserError(f"objective.task_weighting={self.weighting!r}; valid values: fixed, "
                      "uncertainty")
    self.aux_weight = float(cfg.get('aux_weight', 1.0))
    self.head_weights = {h: float(w) for h, w in (cfg.get('head_weights') or {}).items()}
    if self.head_weights:
      heads = ('fused', *model.modalities)
      if set(self.head_weights) - set(heads) or min(self.head_weights.values()) < 0:
        raise UserError(f'objective.head_weights={self.head_weights}: weights >= 0 of heads '
                        f'among {", ".join(heads)}')
    self.tasks = sorted(model.tasks)  # the model's heads, one per task of config.tasks
    self.task_weights = {t: float(config.tasks[t].get('weight', 1.0)) for t in self.tasks}

  def _weight(self, task, name, outputs) -> float:
    """The weight of head `<task>/<name>` (`<task>` itself where name is '')."""
    if name:
      return self.head_weights.get(name, self.aux_weight)
    # `<task>` is the fused head unless the model also outputs `<task>/fused` beside it.
    return 1.0 if f'{task}/fused' in outputs else self.head_weights.get('fused', 1.0)

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
      task, _, name = head.partition('/')
      xent, correct = _cross_entropy(logits, batch['labels'][task], mask)
      sums[f'{head}/loss'], sums[f'{head}/accuracy'] = xent, correct
      task_loss[task] += self._weight(task, name, outputs) * xent / denom
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
