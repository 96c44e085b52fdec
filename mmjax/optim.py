"""Optax optimizer and learning-rate schedule from `config.optimizer`, and freezing by
`config.freeze`.

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
  clip = opt.get('grad_clip_norm', 0.0)
  tx = optax.chain(optax.clip_by_global_norm(clip), core) if clip else core
  freeze = config.get('freeze') or ''
  if not freeze:
    return tx
  # Frozen parameters get zero updates and no optimizer state (set_to_zero keeps none).
  return optax.partition({'train': tx, 'frozen': optax.set_to_zero()},
                         lambda tree: freeze_labels(tree, freeze))


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


def _example_path(state) -> str:
  path, _ = jax.tree_util.tree_leaves_with_path(state.params)[0]
  return param_path(path)
