"""`robustness`: accuracy with each modality missing in turn, swapped between examples in turn,
and with noise at a list of levels."""

import functools
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from mmjax import corrupt
from mmjax import parallel
from mmjax.errors import UserError
from mmjax.evaluators.base import EVALUATORS, Evaluator


@EVALUATORS.register('robustness')
class Robustness(Evaluator):
  """Accuracy with each modality absent in turn, swapped between examples in turn, and with noise
  at a list of levels.

  cfg: split; missing: modalities to remove one at a time; swapped: modalities to swap one at a
  time (each defaults to every modality, when more than one); noise: {modality: {level name:
  (levels...)}} (audio `snr_db`, image `std`, see mmjax.corrupt); seed. One line per condition:
  `all`, `missing=<m>`, `swapped=<m>`, `noise=<m>,<level name>=<level>`.

  `swapped=<m>` gives each example modality m of the next example in its batch (the last takes
  the first's), every other modality its own: a model that uses m loses accuracy, one that
  ignores m loses none. Unlike removal, the input stays one the model trained on, so a fusion
  that multiplies its modalities' features (and cannot run on one alone) is judged fairly. The
  swap is within each process's part of the batch, so its figure depends on the batch size and
  the process count (not the device count); noise is a pure function of (seed, condition,
  example index), so reruns, device counts and batch sizes give the same noise figures.
  """

  def __init__(self, name, cfg, fns):
    super().__init__(name, cfg, fns)
    self.modalities = fns.modalities
    default_missing = self.modalities if len(self.modalities) > 1 else ()
    self.missing = tuple(cfg.get('missing', default_missing))
    self.swapped = tuple(cfg.get('swapped', default_missing))
    self.noise = {m: dict(levels) for m, levels in (cfg.get('noise') or {}).items()}
    for m in (*self.missing, *self.swapped, *self.noise):
      if m not in self.modalities:
        raise UserError(f'evals.{name}: modality {m!r} is not in the model (model.encoders: '
                        f'{list(self.modalities)})')
    for field in ('missing', 'swapped'):
      if getattr(self, field) and len(self.modalities) == 1:
        raise UserError(f'evals.{name}.{field} needs a second modality; set it to ()')
    for m, levels in self.noise.items():
      if set(levels) != {corrupt.level_name(m)}:
        raise UserError(f'evals.{name}.noise.{m} takes {{{corrupt.level_name(m)!r}: (levels)}}, '
                        f'not {sorted(levels)}')
    self.seed = int(cfg.get('seed', 0))
    sharded = parallel.data_sharded(self.mesh)

    def add(batch_inputs, modality, level, key, batch_index):
      x = batch_inputs[modality]
      indices = batch_index * x.shape[0] + jnp.arange(x.shape[0])  # the global batch's
      keys = corrupt.example_keys(key, indices)
      levels = jnp.full((x.shape[0],), level, jnp.float32)
      return {**batch_inputs, modality: fns.add_noise(x, modality, levels, keys)}
    self._add = jax.jit(add, static_argnums=1, out_shardings=sharded)

  def conditions(self) -> list[str]:
    names = (['all'] + [f'missing={m}' for m in self.missing] +
             [f'swapped={m}' for m in self.swapped])
    for m, levels in sorted(self.noise.items()):
      kind = corrupt.level_name(m)
      names += [f'noise={m},{kind}={float(v):g}' for v in levels[kind]]
    return names

  def metric_names(self, state) -> set[str]:
    return set()  # a line per condition

  def run(self, state) -> list[dict]:
    lines = []
    for condition in self.conditions():
      host_fn = device_fn = None
      if condition.startswith('missing='):
        m = condition.split('=', 1)[1]
        host_fn = lambda b, m=m: {**b, 'present': {**b['present'], m: np.zeros_like(
            b['present'][m])}}
      elif condition.startswith('swapped='):
        host_fn = functools.partial(swap_with_next, modality=condition.split('=', 1)[1])
      elif condition.startswith('noise='):
        m, level = condition[len('noise='):].split(',')
        level = float(level.split('=')[1])
        key = jax.random.fold_in(jax.random.key(self.seed),
                                 zlib.crc32(condition.encode()) & 0x7FFFFFFF)
        device_fn = lambda b, j, m=m, level=level, key=key: {
            **b, 'inputs': self._add(b['inputs'], m, level, key, j)}
      lines.append({'condition': condition, **self._pass(state, host_fn, device_fn)})
    return lines


def swap_with_next(batch: dict, modality: str) -> dict:
  """`batch` with each real example's `modality` (input and presence) taken from the next real
  example, the last real one's from the first; padding (at the end) stays in place."""
  order = np.arange(len(batch['mask']))
  real = int(np.sum(batch['mask']))
  order[:real] = np.roll(order[:real], -1)
  take = lambda d: {**d, modality: np.asarray(d[modality])[order]}
  return {**batch, 'inputs': take(batch['inputs']), 'present': take(batch['present'])}
