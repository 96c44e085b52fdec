"""Config values that would otherwise fail deep inside JAX get a one-line error here, before
anything is written (the labels' range is checked once the first batch is read)."""

import math
import re

import jax
import numpy as np

from mmjax import corrupt
from mmjax import objectives
from mmjax.data import input_pipeline
from mmjax.errors import UserError


def validate(config) -> None:
  for key in ('log_every_steps', 'checkpoint_every_steps', 'batch_size'):
    if int(config[key]) <= 0:
      raise UserError(f'{key}={config[key]} must be positive')
  if int(config.num_train_steps) < 0:
    raise UserError(f'num_train_steps={config.num_train_steps} must be >= 0 (0 only evaluates)')
  epochs = config.get('num_train_epochs', 0.0)
  if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or not (
      0 <= epochs < math.inf):
    raise UserError(f'num_train_epochs={epochs!r} must be a finite number >= 0 (0: train '
                    'num_train_steps steps)')
  lr = config.optimizer.learning_rate
  if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
    raise UserError(f'optimizer.learning_rate={lr} must be positive and finite')
  keep = config.get('max_checkpoints_to_keep', 1)  # None keeps every checkpoint
  if keep is not None and int(keep) < 1:
    raise UserError(f'max_checkpoints_to_keep={keep} must be at least 1 (or None, every '
                    'checkpoint): a run keeps its latest checkpoint to resume from')
  if not 0 <= float(config.get('ema_decay', 0.0)) < 1:
    raise UserError(f'ema_decay={config.ema_decay} must be in [0, 1) (0: no moving average)')
  if config.on_nonfinite not in ('stop', 'skip'):
    raise UserError(f"on_nonfinite={config.on_nonfinite!r}; valid values: stop, skip")
  _validate_early_stopping(config)
  for task in config.tasks:
    if '/' in task:
      raise UserError(f"task name {task!r} contains '/', which separates metric names; rename it")
  modalities = set(config.model.encoders)
  missing = modalities - set(config.dataset.modalities)
  if missing:
    raise UserError(f'model.encoders has modalities {sorted(missing)} that the dataset lacks '
                    f'(dataset.modalities: {sorted(config.dataset.modalities)})')
  _validate_modality_dropout(config, modalities)
  _validate_modality_noise(config, modalities)
  _validate_evals(config)
  for key in ('freeze', 'init_from_pattern'):
    try:
      re.compile(config.get(key) or '')
    except re.error as e:
      raise UserError(f'{key}={config.get(key)!r} is not a regular expression ({e})') from None
  init_from = config.get('init_from')
  if init_from is not None and not isinstance(init_from, str):
    raise UserError(f'init_from={init_from!r} must be a workdir path or ""')
  input_pipeline.local_batch_size(config.batch_size)
  _validate_grad_accum(config)
  _validate_one_example_per_pair(config)


def _validate_grad_accum(config) -> None:
  k = config.get('grad_accum_steps', 1)
  if isinstance(k, bool) or not isinstance(k, int) or k < 1:
    raise UserError(f'grad_accum_steps={k!r} must be a positive integer (1: no accumulation)')
  if k == 1:
    return
  per_device = config.batch_size // jax.device_count()
  if per_device % k:
    raise UserError(f'grad_accum_steps={k} must divide the per-device batch ({config.batch_size} '
                    f'over {jax.device_count()} devices = {per_device}); change batch_size or '
                    'grad_accum_steps')
  if objectives.name_of(config) == 'contrastive':
    raise UserError('grad_accum_steps>1 with objective contrastive: its loss compares the examples '
                    'of a batch with each other, so micro-batches would change it; lower batch_size '
                    'instead')


def _validate_one_example_per_pair(config) -> None:
  value = config.dataset.get('one_example_per_pair', False)
  if not isinstance(value, bool):
    raise UserError(f'dataset.one_example_per_pair={value!r} must be True or False')
  if value and not config.dataset.get('pair_id'):
    raise UserError(input_pipeline.ONE_PER_PAIR_NEEDS_PAIR_ID)


def _validate_early_stopping(config) -> None:
  patience = config.get('early_stopping_patience', 0)
  if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
    raise UserError(f'early_stopping_patience={patience!r} must be a whole number >= 0 (0: '
                    'train num_train_steps)')
  target = config.get('early_stopping_target', 0.0)
  if isinstance(target, bool) or not isinstance(target, (int, float)) or target < 0:
    raise UserError(f'early_stopping_target={target!r} must be a number >= 0 (0: no target)')
  for field, value in (('early_stopping_patience', patience), ('early_stopping_target', target)):
    if not value:
      continue
    name = (config.get('select_best') or '').partition('/')[0]
    if not name:
      raise UserError(f'{field} needs a metric to watch: set select_best, e.g. '
                      '"validation/accuracy"')
    if name in (config.get('evals') or {}) and not config.evals[name].get('every_steps', 0):
      raise UserError(f'{field}: evaluator {name!r} never runs during training; '
                      f'set evals.{name}.every_steps > 0')


def _validate_modality_dropout(config, modalities: set) -> None:
  rates = config.get('modality_dropout') or {}
  unknown = set(rates) - modalities
  if unknown:
    raise UserError(f'modality_dropout has modalities {sorted(unknown)} that the model lacks '
                    f'(model.encoders: {sorted(modalities)})')
  for m, p in rates.items():
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
      raise UserError(f'modality_dropout.{m}={p!r} must be a probability in [0, 1]')
  if all(rates.get(m, 0) >= 1 for m in modalities):
    raise UserError(f'modality_dropout drops every modality of every example (each of '
                    f'{sorted(modalities)} has p=1); lower at least one below 1')


def _validate_modality_noise(config, modalities: set) -> None:
  for m, cfg in (config.get('modality_noise') or {}).items():
    if m not in modalities:
      raise UserError(f'modality_noise.{m}: the model has no {m!r} (model.encoders: '
                      f'{sorted(modalities)})')
    kind = corrupt.level_name(m)
    level = cfg.get(kind)
    if level is None or len(level) != 2 or level[0] > level[1]:
      raise UserError(f'modality_noise.{m} needs {kind}=(low, high), low <= high; got {level!r}')
    if not 0 <= cfg.get('p', 1.0) <= 1:
      raise UserError(f'modality_noise.{m}.p={cfg.get("p")!r} must be a probability in [0, 1]')


def _validate_evals(config) -> None:
  for name, cfg in (config.get('evals') or {}).items():
    if int(cfg.get('every_steps', 0)) < 0:
      raise UserError(f'evals.{name}.every_steps={cfg.every_steps} must be >= 0 (0: only at the '
                      'end)')


def check_labels(config, batch) -> None:
  """Every label of a (first) training batch in [0, tasks[t].num_classes): a label past the
  head's classes would otherwise show as a non-finite loss, blamed on the learning rate."""
  for task, labels in batch['labels'].items():
    labels = np.asarray(labels)
    classes = int(config.tasks[task].num_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
      feature = config.dataset.labels.get(task, task)
      raise UserError(f'task {task!r}: the dataset has labels up to {int(labels.max())} (feature '
                      f'{feature!r}), but tasks.{task}.num_classes={classes}; set num_classes to '
                      f'at least {int(labels.max()) + 1}')

