"""`linear_probe`: a multinomial logistic regression (L2 `l2` on the weights, `steps` iterations of
L-BFGS, features standardised on the fit set) trained on frozen pooled encoder features of
`fit_split` (its first `max_fit_examples` examples; 0: all) and scored on `split`. One line per
feature set, `condition: features=<modality>` and `features=all` (the modalities' features
concatenated): `accuracy`, `loss` (cross-entropy) on the split, `fit_accuracy`, `fit_examples`.
Works for any model, whatever its objective.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmjax.errors import UserError
from mmjax.evaluators.base import EVALUATORS, Evaluator, collect, task_of


def _standardize(fit, *others):
  mean, std = fit.mean(axis=0), fit.std(axis=0) + 1e-6
  return [(x - mean) / std for x in (fit, *others)]


@functools.partial(jax.jit, static_argnames=('num_classes', 'steps'))
def fit_logistic_regression(x, y, *, num_classes: int, steps: int, l2: float):
  """(weights [d, C], bias [C]) minimising the mean cross-entropy + l2/2 ||W||² with L-BFGS,
  started at zero (deterministic)."""
  params = {'w': jnp.zeros((x.shape[1], num_classes), jnp.float32),
            'b': jnp.zeros((num_classes,), jnp.float32)}

  def loss_fn(p):
    logits = x @ p['w'] + p['b']
    xent = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return xent + 0.5 * l2 * jnp.sum(p['w'] ** 2)

  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss_fn)

  def body(_, carry):
    p, state = carry
    value, grad = value_and_grad(p, state=state)
    updates, state = solver.update(grad, state, p, value=value, grad=grad, value_fn=loss_fn)
    return optax.apply_updates(p, updates), state

  params, _ = jax.lax.fori_loop(0, steps, body, (params, solver.init(params)))
  return params['w'], params['b']


def _score(w, b, x, y):
  logits = np.asarray(x @ np.asarray(w) + np.asarray(b), np.float64)
  logits -= logits.max(axis=1, keepdims=True)
  logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  return float(-logp[np.arange(len(y)), y].mean()), float((logits.argmax(axis=1) == y).mean())


class _Prefix:
  """The first `limit` real examples of an EvalData (whole batches; 0: all)."""

  def __init__(self, data, limit: int):
    self.data, self.limit = data, limit

  def __iter__(self):
    seen = 0
    for batch in self.data:
      if self.limit and seen >= self.limit:
        break
      seen += int(np.asarray(batch['mask']).sum()) * jax.process_count()
      yield batch


@EVALUATORS.register('linear_probe')
class LinearProbe(Evaluator):
  """A linear classifier on frozen encoder features; see the module docstring."""

  def __init__(self, name, cfg, fns):
    super().__init__(name, cfg, fns)
    self.task = task_of(name, cfg, fns)
    self.num_classes = int(fns.num_classes[self.task])
    self.limit = int(cfg.get('max_fit_examples', 0))
    self.fit_data = _Prefix(fns.data(cfg.get('fit_split', 'train')), self.limit)
    self.steps = int(cfg.get('steps', 300))
    self.l2 = float(cfg.get('l2', 1e-4))
    if self.steps < 1 or self.l2 < 0:
      raise UserError(f'evals.{name}: steps={self.steps} must be >= 1 and l2={self.l2} >= 0')
    self.modalities = fns.modalities

  def feature_sets(self, feats: dict) -> dict:
    sets = {m: feats[m] for m in self.modalities}
    if len(self.modalities) > 1:
      sets['all'] = np.concatenate([feats[m] for m in self.modalities], axis=1)
    return sets

  def run(self, state) -> list[dict]:
    _, fit_feats = collect(self.fit_data, self.mesh, self.fns.features, state)
    fit_y = fit_feats[f'labels/{self.task}']
    if self.limit:
      fit_feats = {k: v[:self.limit] for k, v in fit_feats.items()}
      fit_y = fit_y[:self.limit]
    sums, eval_feats = collect(self.data, self.mesh, self.fns.features, state)
    eval_y = eval_feats[f'labels/{self.task}']
    if int(sums['count']) != self.data.num_examples:
      raise RuntimeError(f'{self.name}: embedded {int(sums["count"])} examples, expected '
                         f'{self.data.num_examples}')
    lines = []
    fit_sets, eval_sets = self.feature_sets(fit_feats), self.feature_sets(eval_feats)
    for key in fit_sets:
      x_fit, x_eval = _standardize(fit_sets[key], eval_sets[key])
      w, b = jax.device_get(fit_logistic_regression(
          jnp.asarray(x_fit), jnp.asarray(fit_y), num_classes=self.num_classes, steps=self.steps,
          l2=self.l2))
      _, fit_accuracy = _score(w, b, x_fit, fit_y)
      loss, accuracy = _score(w, b, x_eval, eval_y)
      lines.append({'condition': f'features={key}', 'loss': loss, 'accuracy': accuracy,
                    'fit_accuracy': fit_accuracy, 'fit_examples': len(fit_y),
                    'num_examples': len(eval_y)})
    return lines

  def metric_names(self, state) -> set[str]:
    if len(self.modalities) > 1:
      return set()  # a line per feature set (each modality's, and all)
    return {'loss', 'accuracy', 'fit_accuracy', 'fit_examples', 'num_examples'}
