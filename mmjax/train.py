"""Train state, the data-parallel train/eval steps, and the training loop.

The steps are `jax.jit` over a 1-D device mesh: the batch is sharded on the `data` axis, the state
is replicated, and XLA inserts the gradient all-reduce. The same code runs on one CPU, several
(fake) CPU devices, a GPU, or many hosts.
"""

import json
import os
import signal
import time
from typing import Any

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mmjax import checkpoint
from mmjax import losses
from mmjax import optim
from mmjax import parallel
from mmjax import writers
from mmjax.data import input_pipeline
from mmjax.errors import UserError
from mmjax.models.model import MultimodalModel


class TrainState(flax.struct.PyTreeNode):
  """Everything a resumed run needs from the model side; checkpointed whole."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  nonfinite_steps: jax.Array  # steps whose update was skipped for a non-finite loss/gradient


def build_model(config) -> MultimodalModel:
  tasks = {name: t.num_classes for name, t in config.tasks.items()}
  return MultimodalModel(config.model, tasks)


def _variables(state):
  return {'params': state.params, **({'batch_stats': state.batch_stats} if state.batch_stats else {})}


def _rngs(config, step):
  """Per-step randomness from (seed, step) alone, so a resumed run draws the same numbers."""
  key = jax.random.fold_in(jax.random.key(config.seed + 1), step)
  dropout, augment = jax.random.split(key)
  return {'dropout': dropout, 'augment': augment}


def init_state(config, model, tx, example_batch, mesh) -> TrainState:
  """Initialises replicated on the mesh; every process computes the same values from the seed."""
  def init(batch):
    variables = model.init(jax.random.key(config.seed), batch['inputs'], batch['present'])
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params),
                      nonfinite_steps=jnp.zeros((), jnp.int32))
  example = jax.tree.map(lambda x: x[:1], example_batch)
  return jax.jit(init, out_shardings=parallel.replicated(mesh))(example)


def make_train_step(config, model, tx, mesh):
  weights = {name: t.get('weight', 1.0) for name, t in config.tasks.items()}

  def loss_fn(params, state, batch, rngs):
    variables = _variables(state.replace(params=params))
    logits, updates = model.apply(variables, batch['inputs'], batch['present'], train=True,
                                  rngs=rngs, mutable=['batch_stats'])
    loss, sums = losses.classification(logits, batch['labels'], batch['mask'], weights)
    return loss, (sums, updates.get('batch_stats', {}))

  def train_step(state, batch):
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (sums, batch_stats)), grads = grad_fn(state.params, state, batch,
                                                 _rngs(config, state.step))
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    # A non-finite step leaves the state as it was, so nothing non-finite is ever saved.
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
    new_state = TrainState(
        step=state.step + 1,
        params=keep(params, state.params),
        batch_stats=keep(batch_stats, state.batch_stats),
        opt_state=keep(opt_state, state.opt_state),
        nonfinite_steps=state.nonfinite_steps + (~ok).astype(jnp.int32))
    sums = {**sums, 'grad_norm': grad_norm * sums['count'],
            'learning_rate': optim.schedule(config)(state.step) * sums['count']}
    return new_state, sums

  replicated, sharded = parallel.replicated(mesh), parallel.data_sharded(mesh)
  return jax.jit(train_step, in_shardings=(replicated, sharded),
                 out_shardings=(replicated, replicated), donate_argnums=0)


def make_eval_step(config, model, mesh):
  weights = {name: t.get('weight', 1.0) for name, t in config.tasks.items()}

  def eval_step(state, batch):
    logits = model.apply(_variables(state), batch['inputs'], batch['present'], train=False)
    return losses.classification(logits, batch['labels'], batch['mask'], weights)[1]

  return jax.jit(eval_step, in_shardings=(parallel.replicated(mesh), parallel.data_sharded(mesh)),
                 out_shardings=parallel.replicated(mesh))


def evaluate(eval_step, state, data: input_pipeline.EvalData, mesh) -> dict:
  """Metrics over every example of `data` exactly once (padding is masked out)."""
  total = None
  for batch in data:
    sums = jax.device_get(eval_step(state, parallel.global_batch(batch, mesh)))  # sync each batch
    total = sums if total is None else jax.tree.map(np.add, total, sums)
  metrics = losses.finalize(total)
  if metrics['num_examples'] != data.num_examples:
    raise RuntimeError(f'evaluated {metrics["num_examples"]} examples, expected {data.num_examples}')
  return metrics


class _Preemption:
  """SIGTERM (a preemption notice) asks the loop to checkpoint and exit cleanly."""

  def __init__(self):
    self.requested = False
    try:
      signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. inside a test runner's worker)
      pass

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def agreed(self) -> bool:
    """True when any process was asked to stop, so all processes stop at the same step."""
    if jax.process_count() == 1:
      return self.requested
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    return bool(multihost_utils.process_allgather(np.int32(self.requested)).max())


def _check_resume_config(workdir: str, config) -> None:
  """A workdir holds one model: resuming it with another model config is an error."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  with open(path, encoding='utf-8') as f:
    saved = json.load(f)
  current = json.loads(config.to_json_best_effort())
  for key in ('model', 'tasks'):
    if saved.get(key) != current.get(key):
      raise UserError(f'{workdir} holds a run with a different {key} config; resume it with the '
                      f'same config or use a new --workdir')


def _write_config(workdir: str, config) -> None:
  if jax.process_index() == 0:
    tmp = os.path.join(workdir, 'config.json.tmp')
    with open(tmp, 'w', encoding='utf-8') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    os.replace(tmp, os.path.join(workdir, 'config.json'))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resuming from workdir's latest checkpoint), evaluates, returns the test metrics."""
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  _check_resume_config(workdir, config)
  mesh = parallel.make_mesh()
  model = build_model(config)
  tx = optim.make(config)

  train_iter = input_pipeline.train_iterator(config)
  eval_data = input_pipeline.eval_data(config, config.dataset.eval_split)
  initial_position = train_iter.get_state()
  first_batch = next(train_iter)  # for shapes; the loop starts from a restored position
  compile_start = time.time()
  state = init_state(config, model, tx, first_batch, mesh)

  mngr = checkpoint.manager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                            config.max_checkpoints_to_keep)
  restored = checkpoint.restore_latest(mngr, checkpoint.abstract(state))
  if restored is not None:
    start_step, state, data_state = restored
    train_iter.set_state(data_state)
    writers.log('resumed from step %d', start_step)
  else:
    start_step = 0
    train_iter.set_state(initial_position)
  _write_config(workdir, config)
  writer = writers.MetricWriter(workdir, resume_step=start_step)

  train_step = make_train_step(config, model, tx, mesh)
  eval_step = make_eval_step(config, model, mesh)
  preemption = _Preemption()
  total = config.num_train_steps
  pending, last_time, last_step = [], time.time(), start_step
  step = start_step
  while step < total:
    batch = parallel.global_batch(next(train_iter), mesh)
    state, sums = train_step(state, batch)
    step += 1
    pending.append(sums)
    if step == start_step + 1:
      jax.block_until_ready(state)
      writers.log('first step (compile + run) took %.1fs', time.time() - compile_start)
      last_time, last_step, pending = time.time(), step, [sums]
    at_end = step == total
    if step % config.log_every_steps == 0 or at_end:
      totals = jax.tree.map(lambda *xs: np.sum(xs), *jax.device_get(pending))  # the host sync
      pending = []
      metrics = losses.finalize(totals)
      now = time.time()
      steps_per_sec = (step - last_step) / max(now - last_time, 1e-9)
      metrics['examples_per_sec'] = steps_per_sec * config.batch_size
      metrics['steps_per_sec'] = steps_per_sec
      metrics.pop('num_examples')
      writer.write(step, 'train', metrics)
      eta = (total - step) / max(steps_per_sec, 1e-9)
      writers.log('step %d/%d  loss %.4f  acc %.3f  %.0f ex/s  ETA %s', step, total,
                  metrics['loss'], metrics['accuracy'], metrics['examples_per_sec'],
                  time.strftime('%H:%M:%S', time.gmtime(eta)))
      last_time, last_step = now, step
      _check_finite(config, state, step, mngr)
    if step % config.eval_every_steps == 0 or at_end:
      writer.write(step, 'validation', evaluate(eval_step, state, eval_data, mesh))
    stop = preemption.agreed()
    if step % config.checkpoint_every_steps == 0 or at_end or stop:
      _check_finite(config, state, step, mngr)
      checkpoint.save(mngr, step, state, train_iter.get_state())
    if stop:
      mngr.wait_until_finished()
      writers.log('preempted: saved a checkpoint at step %d; rerun the same command to resume',
                  step)
      writer.close()
      return {}
  mngr.wait_until_finished()

  test_data = input_pipeline.eval_data(config, config.dataset.test_split)
  test = evaluate(eval_step, state, test_data, mesh)
  writer.write(step, 'test', test)
  writer.close()
  writers.log('test: loss %.4f  accuracy %.4f  on %d examples (step %d)', test['loss'],
              test['accuracy'], test['num_examples'], step)
  return test


def _check_finite(config, state, step, mngr) -> None:
  bad = int(jax.device_get(state.nonfinite_steps))
  if bad and config.on_nonfinite == 'stop':
    last = mngr.latest_step()
    raise FloatingPointError(
        f'non-finite loss or gradient by step {step} ({bad} step(s) skipped); last good checkpoint: '
        f'{"step " + str(last) if last is not None else "none"}; lower optimizer.learning_rate or '
        'set on_nonfinite=skip')


def validate(config) -> None:
  """Config values that would otherwise fail deep inside JAX get a one-line error here."""
  for key in ('num_train_steps', 'log_every_steps', 'eval_every_steps', 'checkpoint_every_steps',
              'batch_size'):
    if int(config[key]) <= 0:
      raise UserError(f'{key}={config[key]} must be positive')
  if not config.optimizer.learning_rate > 0:
    raise UserError(f'optimizer.learning_rate={config.optimizer.learning_rate} must be positive')
  if config.on_nonfinite not in ('stop', 'skip'):
    raise UserError(f"on_nonfinite={config.on_nonfinite!r}; valid values: stop, skip")
  missing = set(config.model.encoders) - set(config.dataset.modalities)
  if missing:
    raise UserError(f'model.encoders has modalities {sorted(missing)} that the dataset lacks '
                    f'(dataset.modalities: {sorted(config.dataset.modalities)})')
  input_pipeline.local_batch_size(config.batch_size)
