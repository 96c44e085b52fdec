"""The training loop: steps, logging, evaluators on their schedule, checkpoints, preemption.

What a run minimises is its objective (`mmjax.objectives`), what it measures its evaluators
(`mmjax.evaluators`); the steps are in `mmjax.steps`. A run is a pure function of its config, so a
run resumed from any checkpoint ends bitwise equal to an uninterrupted one. A run whose workdir
already holds its final checkpoint (or with `num_train_steps=0`) only evaluates.
"""

import json
import math
import time

from absl import logging
import jax
import ml_collections
import numpy as np

from mmjax import checkpoint
from mmjax import compilation
from mmjax import config_checks
from mmjax import evaluators
from mmjax import health
from mmjax import objectives
from mmjax import optim
from mmjax import parallel
from mmjax import plot
from mmjax import profiling
from mmjax import selection
from mmjax import steps
from mmjax import transfer
from mmjax import workdir as workdirs
from mmjax import writers
from mmjax.data import input_pipeline
from mmjax.errors import UserError
from mmjax.models.base import modality_order
from mmjax.models.model import build_model
from mmjax.preemption import Preemption


class NonFiniteError(UserError):
  """The loss or gradient stopped being finite and `on_nonfinite='stop'`."""


class Interrupted(Exception):
  """Ctrl-C stopped the run after saving a checkpoint at `step` (mmjax.preemption)."""

  def __init__(self, step: int):
    super().__init__(f'interrupted: saved a checkpoint at step {step}; rerun the same command to '
                     'resume')
    self.step = step


def _data_state(train_iter, host_pending: list) -> dict:
  """The input position plus the sums of steps since the last log line, so that a resume from a
  checkpoint between log steps still logs the same means."""
  return {'input': train_iter.get_state(),
          'pending_metrics': [{k: float(v) for k, v in s.items()} for s in host_pending]}


def _unpack_data_state(data: dict):
  pending = [{k: np.float32(v) for k, v in s.items()} for s in data['pending_metrics']]
  return data['input'], pending


def _train_metrics(host_sums: list) -> dict:
  """Means over the steps of one log interval; NaN when every step in it was skipped."""
  totals = jax.tree.map(lambda *xs: np.sum(xs), *host_sums)
  totals.pop('nonfinite')
  metrics = objectives.finalize(totals)
  if metrics.pop('num_examples') == 0:
    metrics = {k: float('nan') for k in metrics}
  return metrics


def _first_nonfinite(host_sums: list, step: int) -> int | None:
  """The first skipped step among `host_sums`, the sums of steps (step - len + 1 .. step)."""
  for i, sums in enumerate(host_sums):
    if sums['nonfinite']:
      return step - len(host_sums) + 1 + i
  return None


def _accuracies(metrics: dict) -> str:
  if 'accuracy' in metrics:
    return f'accuracy {metrics["accuracy"]:.4f}'
  return '  '.join(f'{k} {v:.4f}' for k, v in metrics.items() if k.endswith('/accuracy'))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       accept_config_changes: bool = False) -> dict:
  """Trains (resuming from workdir's latest checkpoint), runs the evaluators at the end, and
  returns {evaluator name: its metrics lines}.

  Every config value is checked before the workdir is written to (a UserError leaves it as it
  was).
  Returns {} when stopped by SIGTERM (after saving a checkpoint to resume from); raises
  Interrupted when stopped by Ctrl-C, after saving likewise. A resume that changes settings
  other than workdirs.RESUMABLE_FIELDS is refused unless `accept_config_changes`.
  """
  config_checks.validate(config)
  _steps_from_epochs(config)
  selected = selection.parse(config)
  workdirs.check(workdir)
  compiles = compilation.CompileLog()
  ckpt_dir = workdirs.checkpoint_dir(workdir)
  init_from = config.get('init_from')
  if init_from and checkpoint.steps_on_disk(ckpt_dir):
    writers.log('resuming %s: init_from is for fresh runs only', workdir)
    init_from = ''
  if init_from:
    transfer.source_checkpoints(init_from)  # fail fast, before building anything
  mesh = parallel.make_mesh()
  model = build_model(config)
  objective = objectives.build(config, model)
  tx = optim.make(config)

  train_iter = input_pipeline.train_iterator(config)
  eval_step = steps.make_eval_step(config, model, objective, mesh)
  evals = evaluators.build(config, eval_step, mesh)
  initial_position = train_iter.get_state()
  first_batch = next(train_iter)  # for shapes; the loop starts from a restored position
  config_checks.check_labels(config, first_batch)
  compile_start = time.time()
  state = steps.init_state(config, model, objective, tx, first_batch, mesh)
  transfer.check_freeze(config, state)
  selection.check_metric(selected, evals, state)
  dataset_versions = input_pipeline.dataset_versions(config)
  changes = workdirs.check_resume_config(workdir, config, dataset_versions,
                                         accept_config_changes)

  if init_from:
    state = transfer.init_from_checkpoint(config, state, mesh)
  workdirs.make(workdir)
  with workdirs.exclusive(workdir):
    mngr = checkpoint.manager(ckpt_dir, config.max_checkpoints_to_keep)
    saver = checkpoint.Saver(mngr)
    best = None
    try:
      best = selection.BestState(workdir, *selected) if selected else None
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
      workdirs.record_changes(workdir, changes, start_step)
      workdirs.write_config(workdir, config, dataset_versions)
      # Evaluators that run again at the step the run resumes from replace their earlier lines.
      rerun = tuple(evals) if start_step >= config.num_train_steps else ()
      writer = writers.MetricWriter(workdir, resume_step=start_step, rerun_splits=rerun)
      writer.write_config(json.loads(config.to_json_best_effort()), evaluators=tuple(evals))
      try:
        state = _train_loop(config, model, objective, tx, mesh, saver, writer, evals, best, state,
                            start_step, pending, train_iter, compile_start, workdir)
        if state is None:
          return {}
        results = _final_evaluation(config, state, writer, evals, best)
        if jax.process_index() == 0:
          writers.log('training curves: %s', plot.write([workdir]).path)
        _warn_if_unhealthy(config, results)
        _log_compiles(compiles)
        return results
      finally:
        writer.close()
    finally:
      saver.close()
      if best is not None:
        best.close()


def _steps_from_epochs(config) -> None:
  """config.num_train_epochs > 0 sets config.num_train_steps (rounded up to whole steps), which
  config.json then records."""
  epochs = config.get('num_train_epochs', 0.0)
  if epochs > 0:
    examples = input_pipeline.num_examples(config, config.dataset.train_split)
    config.num_train_steps = max(1, math.ceil(epochs * examples / config.batch_size))
    writers.log('num_train_epochs=%g: %d steps of %d examples (%d training examples)', epochs,
                config.num_train_steps, config.batch_size, examples)


def _log_compiles(compiles: compilation.CompileLog) -> None:
  """One compile each of the train and eval steps is expected; more means something changed
  shape, dtype or sharding between calls."""
  writers.log('XLA compiles: %s; %d loaded from the persistent compilation cache',
              compiles.summary(('init', 'train_step', 'eval_step')), compiles.cache_hits())
  again = {n: c for n, c in compiles.counts().items() if n in ('train_step', 'eval_step') and c > 1}
  if again:
    logging.warning('compiled %s more than once: an input changed shape, dtype or sharding', again)


def _final_evaluation(config, state, writer, evals, best) -> dict:
  """Every evaluator once on the final state; with model selection, the selecting evaluator on
  the final state and the others on the best state so far (their lines say its step)."""
  step = int(jax.device_get(state.step))
  skipped = int(jax.device_get(state.nonfinite_steps))
  if skipped:
    logging.warning('skipped %d of %d updates for a non-finite loss, gradient or parameters '
                    '(on_nonfinite=skip)', skipped, config.num_train_steps)
  results, extra = {}, {}
  if best is not None:
    results[best.evaluator] = _run_evaluator(evals[best.evaluator], state, writer, step)
    best.update(step, results[best.evaluator], state)
    if best.step is not None:
      if best.step != step:
        state = best.restore(state)
      extra = {'selected_step': best.step}
  for name, evaluator in evals.items():
    if name not in results:
      results[name] = _run_evaluator(evaluator, state, writer, step, extra)
  return results


def _warn_if_unhealthy(config, results: dict) -> None:
  """One warning line per health flag (mmjax.health) that an evaluator with conditions (the
  robustness evaluator) shows, e.g. an audio branch that the model does not use."""
  if len(config.tasks) != 1:
    return
  chance = health.chance_level(next(iter(config.tasks.values())).num_classes)
  for name, lines in results.items():
    accuracy = {l['condition']: l['accuracy'] for l in lines
                if 'condition' in l and 'accuracy' in l}
    if accuracy:
      for reason in health.check(accuracy, modality_order(config.model), chance).reasons:
        logging.warning('%s: %s', name, reason)


def _run_evaluator(evaluator, state, writer, step, extra=None) -> list[dict]:
  lines = [{**metrics, **(extra or {})} for metrics in evaluator.run(state)]
  for metrics in lines:
    writer.write(step, evaluator.name, metrics)
    where = f'[{metrics["condition"]}]' if 'condition' in metrics else ''
    writers.log('%s%s: loss %.4f  %s  on %d examples (step %d)', evaluator.name, where,
                metrics['loss'], _accuracies(metrics), metrics['num_examples'], step)
  return lines


def _train_loop(config, model, objective, tx, mesh, saver, writer, evals, best, state,
                start_step, pending, train_iter, compile_start, workdir):
  """Trains from `start_step` to config.num_train_steps; the final state, or None if preempted."""
  train_step = steps.make_train_step(config, model, objective, tx, mesh)
  mngr = saver.mngr
  preemption = Preemption(mngr)
  stop_on_nonfinite = config.on_nonfinite == 'stop'

  def stop_if_nonfinite(host_pending, step):
    bad = _first_nonfinite(host_pending, step)
    if bad is not None:
      saver.wait()
      last = mngr.latest_step()
      where = f'step {last} in {mngr.directory}' if last is not None else 'none'
      # Recorded, so that a sweep counts the run as diverged rather than unfinished.
      writer.write(bad, 'train', {'stopped_nonfinite': True})
      raise NonFiniteError(
          f'non-finite loss, gradient or parameters at step {bad} (that update was not applied); '
          f'last good checkpoint: {where}; lower optimizer.learning_rate or check the inputs, or '
          'set on_nonfinite=skip to skip such steps')

  total = config.num_train_steps
  train_examples = input_pipeline.num_examples(config, config.dataset.train_split)
  started = last_time = time.time()
  last_step = start_step
  step = start_step
  batches = parallel.DeviceBatches(train_iter, mesh)
  tracer = profiling.Tracer(config, workdir)
  try:
    while step < total:
      tracer.before(step + 1, state)
      state, sums = train_step(state, batches.take())
      step += 1
      tracer.after(step, state)
      if step < total:
        batches.prefetch()
      pending.append(sums)
      if step == start_step + 1:
        jax.block_until_ready(state)
        writers.log('first step (compile + run) took %.1fs', time.time() - compile_start)
        last_time, last_step = time.time(), step
      at_end = step == total
      if step % config.log_every_steps == 0 or at_end:
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
        metrics['examples_seen'] = step * config.batch_size
        metrics['epoch'] = metrics['examples_seen'] / train_examples
        metrics['wall_s'] = now - started  # since this process started training
        writer.write(step, 'train', metrics)
        saver.check()
        eta = (total - step) / max(steps_per_sec, 1e-9)
        writers.log('step %d/%d  loss %.4f  %s  %.0f ex/s  ETA %s', step, total, metrics['loss'],
                    _accuracies(metrics), metrics['examples_per_sec'],
                    writers.duration(eta))
        last_time, last_step = now, step
      if not at_end:  # at the end every evaluator runs once, after the loop
        for evaluator in evals.values():
          if evaluator.due(step):
            lines = _run_evaluator(evaluator, state, writer, step)
            if best is not None and evaluator.name == best.evaluator:
              best.update(step, lines, state)
      stop = preemption.reached(step)
      if step % config.checkpoint_every_steps == 0 or at_end or stop:
        host = jax.device_get(pending)
        if stop_on_nonfinite:
          stop_if_nonfinite(host, step)
        saver.save(step, state, _data_state(batches, host))
      if stop:
        saver.wait()
        if preemption.interrupted:
          raise Interrupted(step)
        writers.log('preempted: saved a checkpoint at step %d; rerun the same command to resume',
                    step)
        return None
    saver.wait()
    return state
  finally:
    tracer.stop()  # an interrupted trace still ends and is written
    preemption.close()
