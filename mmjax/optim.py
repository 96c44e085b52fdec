"""Optax optimizer and learning-rate schedule from `config.optimizer` (with per-group learning
rates, `optimizer.lr_multipliers`), and freezing by `config.freeze`.

The optimizer updates `{'model': params, 'objective': objective_params}` (see mmjax.training.steps).
"""

import math
import numbers
import re
from typing import Any

import jax
import optax

from mmjax import writers
from mmjax.errors import UserError


def run_length(config) -> int:
  """A run's length in steps (`config.num_train_steps`): what its learning-rate schedule spans and
  the step its final checkpoint holds. The one reader of the field, for this run's config and a
  finished run's saved one alike."""
  return int(config.num_train_steps)


def schedule(config, steps: int) -> optax.Schedule:
  """`config.optimizer`'s learning rate over a run of `steps` steps."""
  opt = config.optimizer
  lr = opt.learning_rate
  warmup = min(opt.get('warmup_steps', 0), steps - 1)  # leave the decay at least one step
  if opt.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, steps, end_value=lr * opt.get(
        'end_learning_rate_factor', 0.0)) if warmup else optax.cosine_decay_schedule(lr, steps)
  if opt.schedule == 'constant':
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)],
                                [warmup]) if warmup else optax.constant_schedule(lr)
  raise UserError(f"unknown schedule {opt.schedule!r} (optimizer.schedule); valid names: "
                  "constant, cosine")


def _kernels(params):
  """Every parameter of 2 or more dimensions (kernels, embedding tables, learned positions); not
  the 1-D ones (biases, norm scales, early fusion's modality embeddings)."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


DECAY_MASKS = {'kernels': _kernels, 'all': None}  # optimizer.weight_decay_on


def _decay_mask(opt):
  on = opt.get('weight_decay_on', 'kernels')
  if on not in DECAY_MASKS:
    raise UserError(f'optimizer.weight_decay_on={on!r}; valid values: {", ".join(DECAY_MASKS)}')
  return DECAY_MASKS[on]


def make(config, lr: optax.Schedule) -> optax.GradientTransformation:
  """`config.optimizer` at the learning rates `lr` (`schedule`), `config.freeze` kept fixed."""
  opt = config.optimizer
  mask = _decay_mask(opt)
  if opt.name == 'adamw':
    core = optax.adamw(lr, b1=opt.get('b1', 0.9), b2=opt.get('b2', 0.999),
                       weight_decay=opt.weight_decay, mask=mask)
  elif opt.name == 'sgd':
    core = optax.chain(optax.add_decayed_weights(opt.weight_decay, mask=mask),
                       optax.sgd(lr, momentum=opt.get('momentum', 0.9) or None,
                                 nesterov=opt.get('nesterov', False)))
  else:
    raise UserError(f'unknown optimizer {opt.name!r} (optimizer.name); valid names: adamw, sgd')
  multipliers = lr_multipliers(config)
  if multipliers:
    core = _scaled(core, multipliers)
  clip = opt.get('grad_clip_norm', 0.0)
  tx = optax.chain(optax.clip_by_global_norm(clip), core) if clip else core
  freeze = config.get('freeze') or ''
  if not freeze:
    return tx
  # Frozen parameters get zero updates and no optimizer state (set_to_zero keeps none).
  return optax.partition({'train': tx, 'frozen': optax.set_to_zero()},
                         lambda tree: freeze_labels(tree, freeze))


def lr_multipliers(config) -> tuple[tuple[str, float], ...]:
  """`optimizer.lr_multipliers`: ((regex over param_path, factor), ...), in the order written (the
  first pattern a parameter's path matches gives its factor); a one-line error unless each is a
  regular expression with a positive, finite factor."""
  pairs = config.optimizer.get('lr_multipliers') or ()
  out = []
  for pair in pairs:
    pattern, factor = pair if isinstance(pair, (tuple, list)) and len(pair) == 2 else (pair, None)
    if not isinstance(pattern, str) or isinstance(factor, bool) or not isinstance(
        factor, numbers.Real) or not 0 < factor < math.inf:
      raise UserError(f'optimizer.lr_multipliers: {pair!r} must be a (regular expression, '
                      "positive factor) pair, e.g. (('encoders_audio', 3.0),)")
    try:
      re.compile(pattern)
    except re.error as e:
      raise UserError(f'optimizer.lr_multipliers: {pattern!r} is not a regular expression '
                      f'({e})') from None
    out.append((pattern, float(factor)))
  return tuple(out)


def _first_match(path: str, multipliers) -> tuple[str, float]:
  """The (pattern, factor) of `multipliers` that gives the parameter at `path` its factor: the
  first whose pattern it matches, else ('', 1.0)."""
  return next(((p, f) for p, f in multipliers if re.search(p, path)), ('', 1.0))


def lr_factors(trainable, multipliers) -> Any:
  """Each parameter's learning-rate factor (`_first_match` of its `param_path`)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: _first_match(param_path(path), multipliers)[1], trainable)


def _scaled(core: optax.GradientTransformation, multipliers) -> optax.GradientTransformation:
  """`core` with each parameter's update times its factor: its learning rate times the factor,
  weight decay included, as a PyTorch parameter group's lr acts. The state is `core`'s own, so a
  run can add or change the factors when it resumes."""
  def update(updates, state, params=None):
    updates, state = core.update(updates, state, params)
    return jax.tree.map(lambda u, f: u if f == 1.0 else u * f, updates,
                        lr_factors(updates, multipliers)), state
  return optax.GradientTransformation(core.init, update)


def param_path(path) -> str:
  """'encoders_image/Conv_0/kernel' for a model parameter, 'objective/...' for the objective's."""
  names = [str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path]
  return '/'.join(names[1:] if names and names[0] in ('model', 'params') else names)


def freeze_labels(trainable, pattern: str):
  """'frozen' for every parameter whose path (`param_path`) matches the regex `pattern`."""
  regex = re.compile(pattern)
  return jax.tree_util.tree_map_with_path(
      lambda path, _: 'frozen' if regex.search(param_path(path)) else 'train', trainable)


def check_freeze(config, state) -> None:
  """`config.freeze` must match at least one parameter, and not all of them; logs the count."""
  pattern = config.get('freeze') or ''
  if not pattern:
    return
  labels = jax.tree.leaves(freeze_labels(state.trainable(), pattern))
  frozen = labels.count('frozen')
  if frozen == 0:
    raise UserError(f'freeze={pattern!r} matches no parameter path (paths look like '
                    f'{_example_path(state)}); fix the pattern or set freeze=""')
  if frozen == len(labels):
    raise UserError(f'freeze={pattern!r} freezes every parameter; nothing would train')
  writers.log('freeze: %d of %d parameter arrays frozen (%s)', frozen, len(labels), pattern)


def check_lr_multipliers(config, state) -> None:
  """Each pattern of `optimizer.lr_multipliers` gives its factor to at least one trained
  parameter (the first matching pattern's applies; frozen ones do not train); logs how many."""
  multipliers = lr_multipliers(config)
  if not multipliers:
    return
  frozen = config.get('freeze') or ''
  labels = jax.tree_util.tree_leaves_with_path(freeze_labels(state.trainable(), frozen))
  trained = [param_path(p) for p, label in labels if not frozen or label == 'train']
  for pattern, factor in multipliers:
    given = [p for p in trained if _first_match(p, multipliers)[0] == pattern]
    if not given:
      raise UserError(f'optimizer.lr_multipliers: {pattern!r} gives its factor to no trained '
                      f'parameter (paths look like {_example_path(state)}; an earlier pattern '
                      'or freeze may take them); fix the pattern or remove it')
    writers.log('optimizer.lr_multipliers: %d parameter arrays at %g x the learning rate (%s)',
                len(given), factor, pattern)


def _example_path(state) -> str:
  path, _ = jax.tree_util.tree_leaves_with_path(state.params)[0]
  return param_path(path)
