"""Evaluators, configured as a dict: `config.evals = {name: {'type': ..., 'split': ...,
'every_steps': N}}`. Each runs every N steps (0: never during training) and at the end of
training, and returns metrics lines that the trainer writes with `"split": name` (plus a
`"condition"` field where an evaluator has several).

Every evaluator sees each example of its split exactly once (the last batch is padded and the
padding masked out). None builds or compiles a model, nor reads the run's config: each gets its
own dict (`cfg`) and the `Functions` the trainer built once for the run
(mmjax.training.steps.eval_functions), as big_vision's evaluators get a `predict_fn`.

Adding one: a module in this package that subclasses `Evaluator` and registers it, imported in
the package's `__init__`; name its type in `config.evals`.
"""

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from mmjax import objectives
from mmjax import parallel
from mmjax.errors import UserError
from mmjax.registry import Registry

EVALUATORS = Registry('evaluator type')


@dataclasses.dataclass(frozen=True)
class Functions:
  """What evaluators get from the run. The compiled functions, each `(state, global batch)` → on
  every process the same, replicated result:

  metrics: the objective's metric sums on the batch (the model in inference mode);
  features: ({'count'}, rows) with rows the encoders' pooled features {modality: [B, d]};
  predict: ({'count'}, rows) with rows each head's predicted class `predictions/<head>` [B]
    (classification objectives, whose outputs are logits per head);
  embed: (the objective's metric sums, rows) with rows the objective's embeddings
    {modality: [B, d]} of `embedding_modalities`; None when the objective embeds nothing.
  Rows also hold the batch's `mask` and `labels/<task>`.

  And what they may ask of the run: `data(split)`, the split for evaluation (each example once,
  in global batches); `modalities`, the model's, in order; `num_classes`, {task: classes};
  `add_noise(inputs, modality, levels, keys)`, mmjax.corrupt's noise with the dataset's scaling;
  `objective_name`.
  """
  mesh: Any
  metrics: Callable
  features: Callable
  data: Callable
  modalities: tuple[str, ...]
  num_classes: dict
  add_noise: Callable
  objective_name: str
  predict: Callable | None = None
  embed: Callable | None = None
  embedding_modalities: tuple[str, ...] = ()


class Evaluator:
  """Scores the model on one split with the objective's metrics."""

  def __init__(self, name: str, cfg, fns: Functions):
    self.name, self.cfg, self.fns = name, cfg, fns
    self.mesh = fns.mesh
    self.every_steps = int(cfg.get('every_steps', 0))
    self.data = fns.data(cfg.get('split', 'test'))

  def due(self, step: int) -> bool:
    return self.every_steps > 0 and step % self.every_steps == 0

  def run(self, state) -> list[dict]:
    """Metrics lines (one dict each, with `num_examples`) for the model in `state`."""
    raise NotImplementedError

  def metric_names(self, state) -> set[str]:
    """The metrics of the one line `run` gives, found by tracing the eval step on one batch of
    the split (no compile, no scoring), so that select_best can be checked before training. An
    evaluator that gives a line per condition returns none: select_best needs one value."""
    batch = parallel.global_batch(next(iter(self.data)), self.mesh)
    sums = jax.eval_shape(self.fns.metrics, state, batch)
    return {k for k in sums if k != 'count'} | {'num_examples'}

  def _pass(self, state, host_fn=None, device_fn=None) -> dict:
    """Metrics over every example once; `host_fn(batch)` / `device_fn(batch, batch_index)` may
    alter each batch before it is scored."""
    total = None
    for i, batch in enumerate(self.data):
      if host_fn is not None:
        batch = host_fn(batch)
      batch = parallel.global_batch(batch, self.mesh)
      if device_fn is not None:
        batch = device_fn(batch, i)
      sums = jax.device_get(self.fns.metrics(state, batch))  # a host sync per batch (see README)
      total = sums if total is None else jax.tree.map(np.add, total, sums)
    metrics = objectives.finalize(total)
    if metrics['num_examples'] != self.data.num_examples:
      raise RuntimeError(f'{self.name}: evaluated {metrics["num_examples"]} examples, expected '
                         f'{self.data.num_examples}')
    return metrics


def collect(data, mesh, fn, state):
  """Runs `fn(state, global batch) -> (sums, rows)` (see `Functions`) over `data`: (summed sums,
  {name: rows of the real examples})."""
  total, rows = None, {}
  for batch in data:
    sums, out = jax.device_get(fn(state, parallel.global_batch(batch, mesh)))
    total = sums if total is None else jax.tree.map(np.add, total, sums)
    real = np.asarray(out.pop('mask')).astype(bool)
    for k, v in out.items():
      rows.setdefault(k, []).append(np.asarray(v)[real])
  return total, {k: np.concatenate(v) for k, v in rows.items()}


def task_of(name, cfg, fns: Functions) -> str:
  """The task an evaluator's cfg names (`task`), or the run's only task."""
  tasks = sorted(fns.num_classes)
  task = cfg.get('task') or (tasks[0] if len(tasks) == 1 else None)
  if task not in tasks:
    raise UserError(f'evals.{name}.task={task!r}: name one of the tasks {tasks}')
  return task


def build(evals, fns: Functions) -> dict[str, Evaluator]:
  """{name: evaluator} from `evals` (a config's `evals` dict), in its order."""
  out = {}
  for name, cfg in (evals or {}).items():
    if name == 'train':
      raise UserError("evals: 'train' names the training metrics; call the evaluator otherwise")
    kind = cfg.get('type', 'classification')
    out[name] = EVALUATORS.get(kind, f'evals.{name}.type')(name, cfg, fns)
  return out
