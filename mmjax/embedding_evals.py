"""Evaluators of learned representations: cross-modal retrieval and a linear probe.

`retrieval` (needs `objective.name='contrastive'`): every example of the split is embedded in
both modalities of the objective's pair with the projection heads; each example's embedding in
one modality queries the split's embeddings in the other (cosine similarity). Metrics, for each
direction `<a>_to_<b>` and each k in `ks` (default 1, 5, 10):
  - `<a>_to_<b>/class/R@k`: the fraction of queries with an example of the query's class (cfg
    `task`) among the k most similar (same digit, on AV-MNIST);
  - `<a>_to_<b>/pair/R@k`: the fraction of queries whose own pair ranks among the first k, the
    rank being the number of gallery items strictly more similar than the pair.
Gallery items with the same embedding (cosine similarity within 1e-5 of 1: the same content, e.g.
one AV-MNIST recording paired with ~33 test images) count once, so copies of one item do not fill
the top k. Every example is a query. Chance is about k/N for `pair` (N distinct gallery items) and
1-(1-p)^k for `class` (p the class frequency). On AV-MNIST audio→image `pair` cannot exceed ~1/33
at k=1: the audio does not tell which of its ~33 images is the pair. The line also holds the objective's metrics
(loss, in-batch accuracy) on the split.

`linear_probe`: a multinomial logistic regression (L2 `l2` on the weights, `steps` iterations of
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

from mmjax import evaluators
from mmjax import objectives
from mmjax import parallel
from mmjax.data import input_pipeline
from mmjax.errors import UserError
from mmjax.models.base import modality_order
from mmjax.models.model import build_model

_QUERY_CHUNK = 1024
_SAME = 1e-5  # cosine distance below which two gallery embeddings are the same item


def _task(name, cfg, config) -> str:
  task = cfg.get('task') or (sorted(config.tasks)[0] if len(config.tasks) == 1 else None)
  if task not in config.tasks:
    raise UserError(f'evals.{name}.task={task!r}: name one of the tasks {sorted(config.tasks)}')
  return task


def _collect(data, mesh, fn, state):
  """Runs jitted `fn(state, global batch) -> (sums, {name: [B, ...]})`, whose dict includes the
  batch's `mask` and `label`, over `data`: (summed sums, {name: rows of the real examples})."""
  total, rows = None, {}
  for batch in data:
    sums, out = jax.device_get(fn(state, parallel.global_batch(batch, mesh)))
    total = sums if total is None else jax.tree.map(np.add, total, sums)
    real = np.asarray(out.pop('mask')).astype(bool)
    for k, v in out.items():
      rows.setdefault(k, []).append(np.asarray(v)[real])
  return total, {k: np.concatenate(v) for k, v in rows.items()}


def _with_labels(fn, task):
  """`fn`'s outputs plus the batch's mask and `task` labels (global, on every process)."""
  def wrapped(state, batch):
    sums, out = fn(state, batch)
    return sums, {**out, 'mask': batch['mask'], 'label': batch['labels'][task]}
  return wrapped


def distinct(embeddings, tolerance: float = _SAME) -> np.ndarray:
  """For each row of unit-norm `embeddings`, the index of the first row with the same embedding
  (cosine similarity above 1 - tolerance): the same content, e.g. one recording paired with
  several images."""
  out = np.empty(len(embeddings), np.int64)
  for start in range(0, len(embeddings), _QUERY_CHUNK):
    sims = embeddings[start:start + _QUERY_CHUNK] @ embeddings.T
    out[start:start + len(sims)] = np.argmax(sims > 1 - tolerance, axis=1)  # first match
  return out


def recall_at_k(queries, gallery, query_labels, gallery_labels, ks) -> dict:
  """{'class/R@k', 'pair/R@k'} for unit-norm `queries` [N, d] against `gallery` [N, d], query i's
  pair being gallery item i (see the module docstring). Gallery items with the same embedding
  count once."""
  first = distinct(gallery)
  unique = np.flatnonzero(first == np.arange(len(gallery)))
  position = np.full(len(gallery), -1)
  position[unique] = np.arange(len(unique))
  target = position[first]        # query i's pair, as an index into the distinct items
  gallery, gallery_labels = gallery[unique], gallery_labels[unique]
  n, kmax = len(queries), min(max(ks), len(gallery))
  class_hits = {k: 0 for k in ks}
  pair_hits = {k: 0 for k in ks}
  for start in range(0, n, _QUERY_CHUNK):
    q = queries[start:start + _QUERY_CHUNK]
    sims = q @ gallery.T                                        # [chunk, distinct items]
    index = np.arange(start, start + len(q))
    own = sims[np.arange(len(q)), target[index]]
    rank = (sims > own[:, None]).sum(axis=1)
    top = np.argpartition(-sims, kmax - 1, axis=1)[:, :kmax]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind='stable')
    top = np.take_along_axis(top, order, axis=1)
    same = gallery_labels[top] == query_labels[index][:, None]  # [chunk, kmax]
    for k in ks:
      class_hits[k] += int(same[:, :k].any(axis=1).sum())
      pair_hits[k] += int((rank < k).sum())
  out = {}
  for k in ks:
    out[f'class/R@{k}'] = class_hits[k] / n
    out[f'pair/R@{k}'] = pair_hits[k] / n
  return out


@evaluators.EVALUATORS.register('retrieval')
class Retrieval(evaluators.Evaluator):
  """Cross-modal Recall@k, class-match and exact-pair; see the module docstring."""

  def __init__(self, name, cfg, config, eval_step, mesh):
    objective_name = (config.get('objective') or {}).get('name', 'classification')
    if objective_name != 'contrastive':
      raise UserError(f'evals.{name}: type retrieval needs objective.name=contrastive (its '
                      f'projection heads embed the modalities), not {objective_name!r}')
    super().__init__(name, cfg, config, eval_step, mesh)
    self.task = _task(name, cfg, config)
    self.ks = tuple(int(k) for k in cfg.get('ks', (1, 5, 10)))
    if not self.ks or min(self.ks) < 1:
      raise UserError(f'evals.{name}.ks={self.ks!r} must be positive integers')
    model = build_model(config)
    objective = objectives.build(config, model)
    self.modalities = objective.modalities

    def embed(state, batch):
      pooled, _ = objective.apply_model(state.eval_variables(), batch, train=False)
      _, sums = objective(state.objective_params, pooled, batch)
      return sums, objective.embed(state.objective_params, pooled)

    self._embed = jax.jit(_with_labels(embed, self.task),
                          in_shardings=(parallel.replicated(mesh), parallel.data_sharded(mesh)),
                          out_shardings=parallel.replicated(mesh))

  def run(self, state) -> list[dict]:
    sums, z = _collect(self.data, self.mesh, self._embed, state)
    labels = z.pop('label')
    metrics = objectives.finalize(sums)
    if metrics['num_examples'] != self.data.num_examples:
      raise RuntimeError(f'{self.name}: embedded {metrics["num_examples"]} examples, expected '
                         f'{self.data.num_examples}; every example needs both '
                         f'{" and ".join(self.modalities)}')
    for query, gallery in self._directions():
      for key, value in recall_at_k(z[query], z[gallery], labels, labels, self.ks).items():
        metrics[f'{query}_to_{gallery}/{key}'] = value
    return [metrics]

  def _directions(self):
    a, b = self.modalities
    return (a, b), (b, a)

  def metric_names(self, state) -> set[str]:
    return super().metric_names(state) | {
        f'{query}_to_{gallery}/{match}/R@{k}' for query, gallery in self._directions()
        for match in ('class', 'pair') for k in self.ks}


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


@evaluators.EVALUATORS.register('linear_probe')
class LinearProbe(evaluators.Evaluator):
  """A linear classifier on frozen encoder features; see the module docstring."""

  def __init__(self, name, cfg, config, eval_step, mesh):
    super().__init__(name, cfg, config, eval_step, mesh)
    self.task = _task(name, cfg, config)
    self.num_classes = int(config.tasks[self.task].num_classes)
    self.fit_data = _Prefix(input_pipeline.eval_data(config, cfg.get('fit_split', 'train')),
                            int(cfg.get('max_fit_examples', 0)))
    self.limit = int(cfg.get('max_fit_examples', 0))
    self.steps = int(cfg.get('steps', 300))
    self.l2 = float(cfg.get('l2', 1e-4))
    if self.steps < 1 or self.l2 < 0:
      raise UserError(f'evals.{name}: steps={self.steps} must be >= 1 and l2={self.l2} >= 0')
    self.modalities = modality_order(config.model)
    model = build_model(config)

    def features(state, batch):
      encodings = model.apply(state.eval_variables(), batch['inputs'], False, method='encode')
      return {'count': batch['mask'].astype(jnp.float32).sum()}, {
          m: e.pooled.astype(jnp.float32) for m, e in encodings.items()}

    self._features = jax.jit(_with_labels(features, self.task),
                             in_shardings=(parallel.replicated(mesh), parallel.data_sharded(mesh)),
                             out_shardings=parallel.replicated(mesh))

  def feature_sets(self, feats: dict) -> dict:
    sets = {m: feats[m] for m in self.modalities}
    if len(self.modalities) > 1:
      sets['all'] = np.concatenate([feats[m] for m in self.modalities], axis=1)
    return sets

  def run(self, state) -> list[dict]:
    _, fit_feats = _collect(self.fit_data, self.mesh, self._features, state)
    fit_y = fit_feats.pop('label')
    if self.limit:
      fit_feats = {k: v[:self.limit] for k, v in fit_feats.items()}
      fit_y = fit_y[:self.limit]
    sums, eval_feats = _collect(self.data, self.mesh, self._features, state)
    eval_y = eval_feats.pop('label')
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
    return {'loss', 'accuracy', 'fit_accuracy', 'fit_examples', 'num_examples'}
