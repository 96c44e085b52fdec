"""Optax optimizer and learning-rate schedule from `config.optimizer` (with per-group learning
rates, `optimizer.lr_multipliers`), and freezing by `config.freeze`.

The optimizer updates `{'model': params, 'objective': objective_params}` (see mmjax.training.steps).
"""

import re

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
  multipliers = dict(opt.get('lr_multipliers') or {})
  if multipliers:
    # The update of each matching parameter scaled: its learning rate times the factor, weight
    # decay included, as a PyTorch parameter group's lr acts.
    core = optax.chain(core, optax.stateless(lambda updates, params=None: scale_by_pattern(
        updates, multipliers)))
  clip = opt.get('grad_clip_norm', 0.0)
  tx = optax.chain(optax.clip_by_global_norm(clip), core) if clip else core
  freeze = config.get('freeze') or ''
  if not freeze:
    return tx
  # Frozen parameters get zero updates and no optimizer state (set_to_zero keeps none).
  return optax.partition({'train': tx, 'frozen': optax.set_to_zero()},
                         lambda tree: freeze_labels(tree, freeze))


def lr_factors(trainable, multipliers: dict):
  """Each parameter's learning-rate factor: that of the first pattern of `multipliers`
  ({regex over param_path: factor}) its path matches, else 1."""
  compiled = [(re.compile(pattern), float(factor)) for pattern, factor in multipliers.items()]
  return jax.tree_util.tree_map_with_path(
      lambda path, _: next((f for r, f in compiled if r.search(param_path(path))), 1.0), trainable)


def scale_by_pattern(updates, multipliers: dict):
  return jax.tree.map(lambda u, f: u if f == 1.0 else u * f, updates,
                      lr_factors(updates, multipliers))


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
  """Each pattern of `optimizer.lr_multipliers` matches a parameter and has a positive, finite
  factor; logs how many arrays each scales."""
  multipliers = dict(config.optimizer.get('lr_multipliers') or {})
  for pattern, factor in multipliers.items():
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not (
        0 < factor < float('inf')):
      raise UserError(f'optimizer.lr_multipliers[{pattern!r}]={factor!r} must be a positive, '
                      'finite number')
    try:
      re.compile(pattern)
    except re.error as e:
      raise UserError(f'optimizer.lr_multipliers: {pattern!r} is not a regular expression '
                      f'({e})') from None
  if not multipliers:
    return
  paths = [param_path(p) for p, _ in jax.tree_util.tree_leaves_with_path(state.trainable())]
  for pattern, factor in multipliers.items():
    matched = [p for p in paths if re.search(pattern, p)]
    if not matched:
      raise UserError(f'optimizer.lr_multipliers: {pattern!r} matches no parameter path (paths '
                      f'look like {_example_path(state)}); fix the pattern or remove it')
    writers.log('optimizer.lr_multipliers: %d parameter arrays at %g x the learning rate (%s)',
                len(matched), factor, pattern)


def _example_path(state) -> str:
  path, _ = jax.tree_util.tree_leaves_with_path(state.params)[0]
  return param_path(path)
