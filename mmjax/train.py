"""Train state, the data-parallel train/eval steps, and the training loop.

The steps are `jax.jit` over a 1-D device mesh: the batch is sharded on the `data` axis, the state
is replicated, and XLA inserts the gradient all-reduce. The same code runs on one CPU, several
(fake) CPU devices, a GPU, or many hosts.

A run is a pure function of its config: randomness comes from (seed, step) and the data order from
(seed, position), so a run resumed from any checkpoint ends bitwise equal to an uninterrupted one.
"""

import functools
import json
import os
import signal
import tempfile
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


class NonFiniteError(UserError):
  """The loss or gradient stopped being finite and `on_nonfinite='stop'`."""


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


def _step_key(config, step):
  return jax.random.fold_in(jax.random.key(config.seed + 1), step)


def _rngs(config, step):
  """Per-step randomness from (seed, step) alone, so a resumed run draws the same numbers."""
  dropout, augment = jax.random.split(_step_key(config, step))
  return {'dropout': dropout, 'augment': augment}


def _modality_dropout_rates(config) -> dict:
  return {m: float(p) for m, p in (config.get('modality_dropout') or {}).items() if float(p) > 0}


def drop_modalities(config, present: dict, step) -> dict:
  """Marks modality m of each example absent with probability `config.modality_dropout[m]`.

  An example whose draw would leave it no modality keeps all it had. The draw depends on
  (seed, step) only: not on the device count, and the same after a resume.
  """
  rates = _modality_dropout_rates(config)
  if not rates:
    return present
  modalities = sorted(config.model.encoders)
  # A third stream beside _rngs' two (split uses counters 0 and 1).
  key = jax.random.fold_in(_step_key(config, step), 2)
  u = jax.random.uniform(key, (present[modalities[0]].shape[0], len(modalities)))
  kept = {m: present[m] & (u[:, i] >= rates.get(m, 0.0)) for i, m in enumerate(modalities)}
  any_left = functools.reduce(jnp.logical_or, kept.values())
  return {**present, **{m: jnp.where(any_left, kept[m], present[m]) for m in modalities}}


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


def _all_finite(tree):
  return functools.reduce(jnp.logical_and, [jnp.isfinite(x).all() for x in jax.tree.leaves(tree)],
                          jnp.bool_(True))


def _task_weights(config) -> dict:
  return {name: t.get('weight', 1.0) for name, t in config.tasks.items()}


def make_train_step(config, model, tx, mesh):
  weights = _task_weights(config)

  def loss_fn(params, state, batch, rngs):
    variables = _variables(state.replace(params=params))
    logits, updates = model.apply(variables, batch['inputs'], batch['present'], train=True,
                                  rngs=rngs, mutable=['batch_stats'])
    loss, sums = losses.classification(logits, batch['labels'], batch['mask'], weights)
    return loss, (sums, updates.get('batch_stats', {}))

  def train_step(state, batch):
    batch = {**batch, 'present': drop_modalities(config, batch['present'], state.step)}
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (sums, batch_stats)), grads = grad_fn(state.params, state, batch,
                                                 _rngs(config, state.step))
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # The new parameters too: a finite gradient times a huge learning rate can overflow them.
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & _all_finite((params, batch_stats))
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
    # Skipped steps stay out of the logged means; the flag says which step it was.
    sums = jax.tree.map(lambda v: jnp.where(ok, v, 0.0), sums)
    sums['nonfinite'] = (~ok).astype(jnp.float32)
    return new_state, sums

  replicated, sharded = parallel.replicated(mesh), parallel.data_sharded(mesh)
  return jax.jit(train_step, in_shardings=(replicated, sharded),
                 out_shardings=(replicated, replicated), donate_argnums=0)


def make_eval_step(config, model, mesh):
  weights = _task_weights(config)

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


def _train_metrics(host_sums: list) -> dict:
  """Means over the steps of one log interval; NaN when every step in it was skipped."""
  totals = jax.tree.map(lambda *xs: np.sum(xs), *host_sums)
  totals.pop('nonfinite')
  metrics = losses.finalize(totals)
  if metrics.pop('num_examples') == 0:
    metrics = {k: float('nan') for k in metrics}
  return metrics


def _first_nonfinite(host_sums: list, step: int) -> int | None:
  """The first skipped step among `host_sums`, the sums of steps (step - len + 1 .. step)."""
  for i, sums in enumerate(host_sums):
    if sums['nonfinite']:
      return step - len(host_sums) + 1 + i
  return None


class _Preemption:
  """SIGTERM (a preemption notice) asks the loop to checkpoint and exit cleanly."""

  def __init__(self):
    self.requested = False
    self._previous = None
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. inside a test runner's worker)
      pass

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def close(self):
    """Puts back the previous handler (the caller, e.g. a test runner, may rely on it)."""
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def agreed(self, synced: bool) -> bool:
    """True when any process was asked to stop, so all processes stop at the same step.

    Across processes this is a collective, so it runs only where the loop syncs anyway (`synced`).
    """
    if jax.process_count() == 1:
      return self.requested
    if not synced:
      return False
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


def _check_workdir(workdir: str) -> None:
  """A workdir that cannot be used fails here, before anything is written."""
  path = os.path.abspath(workdir)
  if os.path.exists(path):
    if not os.path.isdir(path):
      raise UserError(f'workdir {workdir} is a file, not a directory; choose another --workdir')
    return
  parent = os.path.dirname(path)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise UserError(f'workdir {workdir} cannot be created: {parent} is a file; choose another '
                    '--workdir')


def _make_workdir(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir):
      pass
  except OSError as e:
    raise UserError(f'workdir {workdir} is not writable ({e.strerror}); choose another --workdir '
                    'or fix its permissions') from None


def _write_config(workdir: str, config) -> None:
  if jax.process_index() == 0:
    tmp = os.path.join(workdir, 'config.json.tmp')
    with open(tmp, 'w', encoding='utf-8') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    os.replace(tmp, os.path.join(workdir, 'config.json'))


def _key_path(path) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path)


def _init_from_dir(source: str) -> str:
  ckpt_dir = os.path.join(os.path.abspath(source), 'checkpoints')
  if not checkpoint.steps_on_disk(ckpt_dir):
    problem = 'does not exist' if not os.path.isdir(source) else 'holds no checkpoint'
    raise UserError(f'init_from={source} {problem}; set it to the workdir of a finished run, or to '
                    '"" to train from scratch')
  return ckpt_dir


def init_from_checkpoint(config, state: TrainState, mesh) -> TrainState:
  """Copies params and batch_stats whose path and shape match from `config.init_from`'s latest
  checkpoint (transfer learning); everything else keeps its fresh initialisation."""
  source = config.init_from
  ckpt_dir = _init_from_dir(source)
  mngr = checkpoint.manager(ckpt_dir, max_to_keep=None, create=False)
  try:
    step, saved = checkpoint.restore_arrays(mngr, ('params', 'batch_stats'),
                                            parallel.replicated(mesh))
  finally:
    mngr.close()
  saved = {_key_path(p): x for p, x in jax.tree_util.tree_leaves_with_path(saved)}
  copied = 0

  def pick(path, x):
    nonlocal copied
    name = _key_path(path)
    if name not in saved:
      return x
    if saved[name].shape != x.shape:
      raise UserError(f'init_from={source}: {name} has shape {tuple(saved[name].shape)} there but '
                      f'{tuple(x.shape)} in this model; make the model match or rename that '
                      'module to train it from scratch')
    copied += 1
    return saved[name].astype(x.dtype)

  current = {'params': state.params, 'batch_stats': state.batch_stats}
  new = jax.tree_util.tree_map_with_path(pick, current)
  total = len(jax.tree.leaves(current))
  if copied:
    writers.log('init_from: copied %d of %d arrays (params, batch_stats) from %s step %d', copied,
                total, source, step)
  else:
    logging.warning('init_from: %s step %d shares no parameter path with this model; nothing '
                    'copied', source, step)
  return state.replace(params=new['params'], batch_stats=new['batch_stats'])


def _data_state(train_iter, host_pending: list) -> dict:
  """The input position plus the sums of steps since the last log line, so that a resume from a
  checkpoint between log steps still logs the same means."""
  return {'input': train_iter.get_state(),
          'pending_metrics': [{k: float(v) for k, v in s.items()} for s in host_pending]}


def _unpack_data_state(data: dict):
  pending = [{k: np.float32(v) for k, v in s.items()} for s in data['pending_metrics']]
  return data['input'], pending


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resuming from workdir's latest checkpoint), evaluates, returns the test metrics.

  Every input is checked before the workdir is written to: a UserError leaves it as it was.
  Returns {} when stopped by SIGTERM (after saving a checkpoint to resume from).
  """
  validate(config)
  _check_workdir(workdir)
  ckpt_dir = os.path.join(os.path.abspath(workdir), 'checkpoints')
  init_from = config.get('init_from')
  if init_from and checkpoint.steps_on_disk(ckpt_dir):
    writers.log('resuming %s: init_from is for fresh runs only', workdir)
    init_from = ''
  if init_from:
    _init_from_dir(init_from)  # fail fast, before building anything
  mesh = parallel.make_mesh()
  model = build_model(config)
  tx = optim.make(config)

  train_iter = input_pipeline.train_iterator(config)
  eval_data = input_pipeline.eval_data(config, config.dataset.eval_split)
  test_data = input_pipeline.eval_data(config, config.dataset.test_split)
  initial_position = train_iter.get_state()
  first_batch = next(train_iter)  # for shapes; the loop starts from a restored position
  compile_start = time.time()
  state = init_state(config, model, tx, first_batch, mesh)
  _check_resume_config(workdir, config)

  if init_from:
    state = init_from_checkpoint(config, state, mesh)
  _make_workdir(workdir)
  mngr = checkpoint.manager(ckpt_dir, config.max_checkpoints_to_keep)
  try:
    restored = checkpoint.restore_latest(mngr, checkpoint.abstract(state))
    pending = []
    if restored is not None:
      start_step, state, data = restored
      position, pending = _unpack_data_state(data)
      train_iter.set_state(position)
      for newer in [s for s in mngr.all_steps() if s > start_step]:
        logging.warning('deleting checkpoint %d in %s, which does not restore; this run saves it '
                        'again', newer, ckpt_dir)
        mngr.delete(newer)
      writers.log('resumed from step %d', start_step)
    else:
      start_step = 0
      train_iter.set_state(initial_position)
    _write_config(workdir, config)
    return _train_loop(config, workdir, model, tx, mesh, mngr, state, start_step, pending,
                       train_iter, eval_data, test_data, compile_start)
  finally:
    mngr.close()


def _train_loop(config, workdir, model, tx, mesh, mngr, state, start_step, pending, train_iter,
                eval_data, test_data, compile_start) -> dict:
  writer = writers.MetricWriter(workdir, resume_step=start_step)
  train_step = make_train_step(config, model, tx, mesh)
  eval_step = make_eval_step(config, model, mesh)
  preemption = _Preemption()
  stop_on_nonfinite = config.on_nonfinite == 'stop'

  def stop_if_nonfinite(host_pending, step):
    bad = _first_nonfinite(host_pending, step)
    if bad is not None:
      mngr.wait_until_finished()
      last = mngr.latest_step()
      where = f'step {last} in {mngr.directory}' if last is not None else 'none'
      raise NonFiniteError(
          f'non-finite loss, gradient or parameters at step {bad} (that update was not applied); '
          f'last good checkpoint: {where}; lower optimizer.learning_rate or check the inputs, or '
          'set on_nonfinite=skip to skip such steps')

  total = config.num_train_steps
  last_time, last_step = time.time(), start_step
  step = start_step
  try:
    while step < total:
      batch = parallel.global_batch(next(train_iter), mesh)
      state, sums = train_step(state, batch)
      step += 1
      pending.append(sums)
      if step == start_step + 1:
        jax.block_until_ready(state)
        writers.log('first step (compile + run) took %.1fs', time.time() - compile_start)
        last_time, last_step = time.time(), step
      at_end = step == total
      log_now = step % config.log_every_steps == 0 or at_end
      if log_now:
        host = jax.device_get(pending)  # the host sync
        pending = []
        if stop_on_nonfinite:
          stop_if_nonfinite(host, step)
        metrics = _train_metrics(host)
        metrics['nonfinite_steps'] = int(jax.device_get(state.nonfinite_steps))
        now = time.time()
        steps_per_sec = (step - last_step) / max(now - last_time, 1e-9)
        metrics['examples_per_sec'] = steps_per_sec * config.batch_size
        metrics['steps_per_sec'] = steps_per_sec
        writer.write(step, 'train', metrics)
        eta = (total - step) / max(steps_per_sec, 1e-9)
        writers.log('step %d/%d  loss %.4f  acc %.3f  %.0f ex/s  ETA %s', step, total,
                    metrics['loss'], metrics['accuracy'], metrics['examples_per_sec'],
                    time.strftime('%H:%M:%S', time.gmtime(eta)))
        last_time, last_step = now, step
      if step % config.eval_every_steps == 0 or at_end:
        writer.write(step, 'validation', evaluate(eval_step, state, eval_data, mesh))
      stop = preemption.agreed(synced=log_now)
      if step % config.checkpoint_every_steps == 0 or at_end or stop:
        host = jax.device_get(pending)
        if stop_on_nonfinite:
          stop_if_nonfinite(host, step)
        checkpoint.save(mngr, step, state, _data_state(train_iter, host))
      if stop:
        mngr.wait_until_finished()
        writers.log('preempted: saved a checkpoint at step %d; rerun the same command to resume',
                    step)
        return {}
    mngr.wait_until_finished()
    preemption.close()

    skipped = int(jax.device_get(state.nonfinite_steps))
    if skipped:
      logging.warning('skipped %d of %d updates for a non-finite loss, gradient or parameters '
                      '(on_nonfinite=skip)', skipped, total)
    test = evaluate(eval_step, state, test_data, mesh)
    writer.write(step, 'test', test)
    writers.log('test: loss %.4f  accuracy %.4f  on %d examples (step %d)', test['loss'],
                test['accuracy'], test['num_examples'], step)
    return test
  finally:
    preemption.close()
    writer.close()


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
  modalities = set(config.model.encoders)
  missing = modalities - set(config.dataset.modalities)
  if missing:
    raise UserError(f'model.encoders has modalities {sorted(missing)} that the dataset lacks '
                    f'(dataset.modalities: {sorted(config.dataset.modalities)})')
  _validate_modality_dropout(config, modalities)
  init_from = config.get('init_from')
  if init_from is not None and not isinstance(init_from, str):
    raise UserError(f'init_from={init_from!r} must be a workdir path or ""')
  input_pipeline.local_batch_size(config.batch_size)


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
