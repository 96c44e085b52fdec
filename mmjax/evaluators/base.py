"""Evaluators, configured as a dict: `config.evals = {name: {'type': ..., 'split': ...,
'every_steps': N}}`. Each runs every N steps (0: never during training) and at the end of
training, and returns metrics lines that the trainer writes with `"split": name` (plus a
`"condition"` field where an evaluator has several).

Every evaluator sees each example of its split exactly once (the last batch is padded and the
padding masked out). Classification and robustness share the run's one compiled eval step, which
scores a batch with the objective's metrics; retrieval and the linear probe compile their own
embedding functions (mmjax.embedding_evals).

Adding one: subclass `Evaluator`, register it, name its type in `config.evals`.
"""

import zlib

import jax
import jax.numpy as jnp
import numpy as np

from mmjax import corrupt
from mmjax import objectives
from mmjax import parallel
from mmjax.data import input_pipeline
from mmjax.errors import UserError
from mmjax.models.base import modality_order
from mmjax.registry import Registry

EVALUATORS = Registry('evaluator type', providers=('mmjax.embedding_evals',))


class Evaluator:
  """Scores the model on one split with the objective's metrics."""

  def __init__(self, name: str, cfg, config, eval_step, mesh):
    self.name, self.cfg, self.config = name, cfg, config
    self.every_steps = int(cfg.get('every_steps', 0))
    self.eval_step, self.mesh = eval_step, mesh
    self.data = input_pipeline.eval_data(config, cfg.get('split', 'test'))

  def due(self, step: int) -> bool:
    return self.every_steps > 0 and step % self.every_steps == 0

  def run(self, state) -> list[dict]:
    """Metrics lines (one dict each) for the model in `state`."""
    raise NotImplementedError

  def metric_names(self, state) -> set[str]:
    """The metrics `run` gives, found by tracing the eval step on one batch of the split (no
    compile, no scoring), so that select_best can be checked before training."""
    batch = parallel.global_batch(next(iter(self.data)), self.mesh)
    sums = jax.eval_shape(self.eval_step, state, batch)
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
      sums = jax.device_get(self.eval_step(state, batch))  # a host sync per batch (see README)
      total = sums if total is None else jax.tree.map(np.add, total, sums)
    metrics = objectives.finalize(total)
    if metrics['num_examples'] != self.data.num_examples:
      raise RuntimeError(f'{self.name}: evaluated {metrics["num_examples"]} examples, expected '
                         f'{self.data.num_examples}')
    return metrics


@EVALUATORS.register('classification')
class Classification(Evaluator):
  """The objective's metrics (loss, accuracy per task and head) on a split."""

  def run(self, state) -> list[dict]:
    return [self._pass(state)]


@EVALUATORS.register('robustness')
class Robustness(Evaluator):
  """Accuracy with each modality absent in turn, and with noise at a list of levels.

  cfg: split; missing: modalities to remove one at a time (default: every modality, when more
  than one); noise: {modality: {level name: (levels...)}} (audio `snr_db`, image `std`, see
  mmjax.corrupt); seed. One line per condition: `all`, `missing=<m>`,
  `noise=<m>,<level name>=<level>`. Noise is a pure function of (seed, condition, example index),
  so reruns, device counts and batch sizes give the same figures.
  """

  def __init__(self, name, cfg, config, eval_step, mesh):
    super().__init__(name, cfg, config, eval_step, mesh)
    self.modalities = modality_order(config.model)
    default_missing = self.modalities if len(self.modalities) > 1 else ()
    self.missing = tuple(cfg.get('missing', default_missing))
    self.noise = {m: dict(levels) for m, levels in (cfg.get('noise') or {}).items()}
    for m in (*self.missing, *self.noise):
      if m not in self.modalities:
        raise UserError(f'evals.{name}: modality {m!r} is not in the model (model.encoders: '
                        f'{list(self.modalities)})')
    if len(self.missing) >= len(self.modalities) and len(self.modalities) == 1:
      raise UserError(f'evals.{name}.missing would remove the only modality; set it to ()')
    for m, levels in self.noise.items():
      if set(levels) != {corrupt.level_name(m)}:
        raise UserError(f'evals.{name}.noise.{m} takes {{{corrupt.level_name(m)!r}: (levels)}}, '
                        f'not {sorted(levels)}')
    self.seed = int(cfg.get('seed', 0))
    batch = config.batch_size
    sharded = parallel.data_sharded(mesh)

    def add(batch_inputs, modality, level, key, batch_index):
      x = batch_inputs[modality]
      indices = batch_index * batch + jnp.arange(x.shape[0])
      keys = corrupt.example_keys(key, indices)
      levels = jnp.full((x.shape[0],), level, jnp.float32)
      return {**batch_inputs, modality: corrupt.add_noise(x, modality, levels, keys,
                                                          config.dataset)}
    self._add = jax.jit(add, static_argnums=1, out_shardings=sharded)

  def conditions(self) -> list[str]:
    names = ['all'] + [f'missing={m}' for m in self.missing]
    for m, levels in sorted(self.noise.items()):
      kind = corrupt.level_name(m)
      names += [f'noise={m},{kind}={float(v):g}' for v in levels[kind]]
    return names

  def run(self, state) -> list[dict]:
    lines = []
    for condition in self.conditions():
      host_fn = device_fn = None
      if condition.startswith('missing='):
        m = condition.split('=', 1)[1]
        host_fn = lambda b, m=m: {**b, 'present': {**b['present'], m: np.zeros_like(
            b['present'][m])}}
      elif condition.startswith('noise='):
        m, level = condition[len('noise='):].split(',')
        level = float(level.split('=')[1])
        key = jax.random.fold_in(jax.random.key(self.seed), zlib.crc32(condition.encode()) & 0x7FFFFFFF)
        device_fn = lambda b, j, m=m, level=level, key=key: {
            **b, 'inputs': self._add(b['inputs'], m, level, key, j)}
      lines.append({'condition': condition, **self._pass(state, host_fn, device_fn)})
    return lines


def build(config, eval_step, mesh) -> dict[str, Evaluator]:
  """{name: evaluator} from `config.evals`, in config order."""
  out = {}
  for name, cfg in (config.get('evals') or {}).items():
    if name == 'train':
      raise UserError("evals: 'train' names the training metrics; call the evaluator otherwise")
    kind = cfg.get('type', 'classification')
    out[name] = EVALUATORS.get(kind, f'evals.{name}.type')(name, cfg, config, eval_step, mesh)
  return out

