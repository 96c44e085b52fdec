"""The training loop: steps, logging, evaluators on their schedule, checkpoints, preemption.

What a run minimises is its objective (`mmjax.objectives`), what it measures its evaluators
(`mmjax.evaluators`); the steps are in `mmjax.training.steps`. A run is a pure function of its
config, so a run resumed from any checkpoint ends bitwise equal to an uninterrupted one. A run
whose workdir already holds its final checkpoint (or with `num_train_steps=0`) only evaluates.
"""

import dataclasses
import json
import math
import time
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np

from mmjax import checkpoint
from mmjax import compilation
from mmjax.training import config_checks
from mmjax.training import features
from mmjax import evaluators
from mmjax import health
from mmjax import objectives
from mmjax import optim
from mmjax import parallel
from mmjax import plot
from mmjax import profiling
from mmjax.training import selection
from mmjax.training import steps
from mmjax.training import transfer
from mmjax import workdir as workdirs
from mmjax import writers
from mmjax.data import datasets
from mmjax.data import input_pipeline
from mmjax.errors import UserError
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


@dataclasses.dataclass
class _Run:
  """One run: what its loop reads, built and checked by `_prepare` before the workdir is written;
  `saver`, `writer` and `best` are opened once it is."""
  config: ml_collections.ConfigDict
  workdir: str
  trainer: steps.Trainer
  evals: dict
  train_iter: Any
  initial_position: Any
  state: steps.TrainState
  compile_start: float
  saver: checkpoint.Saver | None = None
  writer: writers.MetricWriter | None = None
  best: selection.BestState | None = None
  # The selecting evaluator's lines at the step early stopping ended training, reused by the
  # final evaluation instead of scoring the same state twice.
  converged_lines: list | None = None

  @property
  def mngr(self):
    return self.saver.mngr


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
  compiles = compilation.CompileLog()
  run, selected, changes, dataset_versions = _prepare(config, workdir, accept_config_changes)
  workdirs.make(workdir)
  with workdirs.exclusive(workdir):
    run.saver = checkpoint.Saver(checkpoint.manager(workdirs.checkpoint_dir(workdir),
                                                    config.max_checkpoints_to_keep))
    try:
      run.best = selection.BestState(workdir, *selected) if selected else None
      start_step, pending = _restore(run)
      workdirs.record_changes(workdir, changes, start_step)
      workdirs.record_environment(workdir, start_step)
      workdirs.write_config(workdir, config, dataset_versions)
      # Evaluators that run again at the step the run resumes from replace their earlier lines.
      done = start_step >= run.trainer.num_steps or _converged(run, start_step)
      rerun = tuple(run.evals) if done else ()
      run.writer = writers.MetricWriter(workdir, resume_step=start_step, rerun_splits=rerun)
      try:
        run.writer.write_config(json.loads(config.to_json_best_effort()),
                                evaluators=tuple(run.evals))
        state = _train_loop(run, start_step, pending)
        if state is None:
          return {}
        results = _final_evaluation(run, state)
        if jax.process_index() == 0:
          writers.log('training curves: %s', plot.write([workdir]).path)
        _warn_if_unhealthy(run.trainer.model, results)
        _log_compiles(compiles)
        return results
      finally:
        run.writer.close()
    finally:
      run.saver.close()
      if run.best is not None:
        run.best.close()


def _prepare(config, workdir: str, accept_config_changes: bool):
  """(run, model selection, config changes on resume, dataset versions): everything built and
  checked, nothing written."""
  config_checks.validate(config)
  _steps_from_epochs(config)
  evals_config = config.get('evals') or {}
  selected = selection.parse(config, evals_config)
  workdirs.check(workdir)
  init_from = transfer.fresh_source(config, workdir)
  mesh = parallel.make_mesh()
  trainer = steps.build_trainer(config, mesh)
  train_iter = input_pipeline.train_iterator(config, features.table_features(config))
  evals = evaluators.build(evals_config, trainer.eval_fns)
  initial_position = train_iter.get_state()
  first_batch = next(train_iter)  # for shapes; the loop starts from a restored position
  config_checks.check_labels(config, first_batch)
  compile_start = time.time()
  state = trainer.init_state(first_batch)
  optim.check_freeze(config, state)
  optim.check_lr_multipliers(config, state)
  selection.check_metric(selected, evals, state)
  dataset_versions = datasets.versions(config)
  changes = workdirs.check_resume_config(workdir, config, dataset_versions,
                                         accept_config_changes)
  if init_from:
    state = transfer.init_from_checkpoint(config, state, mesh)
  run = _Run(config, workdir, trainer, evals, train_iter, initial_position, state, compile_start)
  return run, selected, changes, dataset_versions


def _restore(run: _Run):
  """(the step to start from, the metric sums pending since the last log line), the run's state
  and input position restored from its latest checkpoint that restores, if any."""
  restored = checkpoint.restore_latest(run.mngr, checkpoint.abstract(run.state))
  if restored is None:
    run.train_iter.set_state(run.initial_position)
    return 0, []
  start_step, run.state, data = restored
  position, pending = _unpack_data_state(data)
  run.train_iter.set_state(position)
  for newer in [s for s in run.mngr.all_steps() if s > start_step]:
    logging.warning('deleting checkpoint %d in %s, which does not restore; this run saves it '
                    'again', newer, run.mngr.directory)
    run.mngr.delete(newer)
  writers.log('resumed from step %d', start_step)
  return start_step, pending


def _steps_from_epochs(config) -> None:
  """config.num_train_epochs > 0 sets config.num_train_steps (rounded up to whole steps), which
  config.json then records."""
  epochs = config.get('num_train_epochs', 0.0)
  if epochs > 0:
    batch, examples = input_pipeline.epoch_size(config)
    steps_needed = max(1, math.ceil(epochs * examples / batch))
    config.num_train_steps = steps_needed
    writers.log('num_train_epochs=%g: %d steps of %d examples (%d training examples)', epochs,
                steps_needed, batch, examples)


def _log_compiles(compiles: compilation.CompileLog) -> None:
  """One compile each of the train and eval steps is expected; more means something changed
  shape, dtype or sharding between calls."""
  writers.log('XLA compiles: %s; %d loaded from the persistent compilation cache',
              compiles.summary(('init', 'train_step', 'eval_step')), compiles.cache_hits())
  again = {n: c for n, c in compiles.counts().items() if n in ('train_step', 'eval_step') and c > 1}
  if again:
    logging.warning('compiled %s more than once: an input changed shape, dtype or sharding', again)


def _final_evaluation(run: _Run, state) -> dict:
  """Every evaluator once on the final state; with model selection, the selecting evaluator on
  the final state and the others on the best state so far (their lines say its step)."""
  step = int(jax.device_get(state.step))
  skipped = int(jax.device_get(state.nonfinite_steps))
  if skipped:
    logging.warning('skipped %d of %d updates for a non-finite loss, gradient or parameters '
                    '(on_nonfinite=skip)', skipped, run.trainer.num_steps)
  results, extra, best = {}, {}, run.best
  if best is not None:
    if run.converged_lines is not None:  # scored at this step, when training stopped
      results[best.evaluator] = run.converged_lines
    else:
      results[best.evaluator] = _run_evaluator(run.evals[best.evaluator], state, run.writer, step)
      best.update(step, results[best.evaluator], state)
    if best.step is not None:
      if best.step != step:
        state = best.restore(state)
      extra = {'selected_step': best.step}
  for name, evaluator in run.evals.items():
    if name not in results:
      results[name] = _run_evaluator(evaluator, state, run.writer, step, extra)
  return results


def _warn_if_unhealthy(model, results: dict) -> None:
  """One warning line per health flag (mmjax.health) that an evaluator with conditions (the
  robustness evaluator) shows, e.g. an audio branch that the model does not use."""
  if len(model.tasks) != 1:
    return
  chance = health.chance_level(next(iter(model.tasks.values())))
  for name, lines in results.items():
    accuracy = {l['condition']: l['accuracy'] for l in lines
                if 'condition' in l and 'accuracy' in l}
    if accuracy:
      for reason in health.check(accuracy, model.modalities, chance).reasons:
        logging.warning('%s: %s', name, reason)


def _run_evaluator(evaluator, state, writer, step, extra=None) -> list[dict]:
  lines = [{**metrics, **(extra or {})} for metrics in evaluator.run(state)]
  for metrics in lines:
    writer.write(step, evaluator.name, metrics)
    writers.log('%s', _log_line(evaluator.name, metrics, step))
  return lines


def _log_line(name: str, metrics: dict, step: int) -> str:
  """An evaluator's line: loss and accuracies where it has a loss, else every figure (a PID
  line's parts beside its accuracy)."""
  where = f'[{metrics["condition"]}]' if 'condition' in metrics else ''
  loss = f'loss {metrics["loss"]:.4f}  ' if 'loss' in metrics else ''
  figures = (loss and _accuracies(metrics)) or '  '.join(
      f'{k} {v:.4f}' for k, v in metrics.items() if isinstance(v, float))
  return f'{name}{where}: {loss}{figures}  on {metrics["num_examples"]} examples (step {step})'


def _train_loop(run: _Run, start_step: int, pending: list):
  """Trains from `start_step` to the run's last step (config.num_train_steps), or until early
  stopping's criterion holds; the final state, or None if preempted."""
  config, state, total = run.config, run.state, run.trainer.num_steps
  # A run resumed after early stopping's criterion held trains no further step.
  end = start_step if _converged(run, start_step) else total
  preemption = Preemption(run.mngr)
  clock = _Clock(run, start_step)
  step = start_step
  batches = parallel.DeviceBatches(run.train_iter, run.trainer.mesh)
  tracer = profiling.Tracer(config, run.workdir)
  try:
    while step < end:
      tracer.before(step + 1, state)
      state, sums = run.trainer.train_step(state, batches.take())
      step += 1
      tracer.after(step, state)
      if step < total:
        batches.prefetch()
      pending.append(sums)
      if step == start_step + 1:
        jax.block_until_ready(state)
        writers.log('first step (compile + run) took %.1fs', time.time() - run.compile_start)
        clock.restart(step)
      at_end = step == total
      if step % config.log_every_steps == 0 or at_end:
        _log_train(run, clock, step, state, jax.device_get(pending))  # the host sync
        pending = []
      if not at_end:  # at the end every evaluator runs once, after the loop
        lines = _scheduled_evaluations(run, state, step)
        if _converged(run, step):
          _stop_early(run, clock, step, state, pending)
          at_end, pending, run.converged_lines = True, [], lines
      stop = preemption.reached(step)
      if step % config.checkpoint_every_steps == 0 or at_end or stop:
        host = jax.device_get(pending)
        _stop_if_nonfinite(run, host, step)
        run.saver.save(step, state, _data_state(batches, host))
      if stop:
        run.saver.wait()
        if preemption.interrupted:
          raise Interrupted(step)
        writers.log('preempted: saved a checkpoint at step %d; rerun the same command to resume',
                    step)
        return None
      if at_end:
        break
    run.saver.wait()
    return state
  finally:
    tracer.stop()  # an interrupted trace still ends and is written
    preemption.close()


class _Clock:
  """Wall time since training started in this process, and the rate since the last log line."""

  def __init__(self, run: _Run, step: int):
    self.batch_size, self.train_examples = input_pipeline.epoch_size(run.config)
    self.started = time.time()
    self.restart(step)

  def restart(self, step: int) -> None:
    self.last_time, self.last_step = time.time(), step

  def metrics(self, step: int) -> dict:
    now = time.time()
    steps_per_sec = (step - self.last_step) / max(now - self.last_time, 1e-9)
    self.restart(step)
    examples_seen = step * self.batch_size
    return {'examples_per_sec': steps_per_sec * self.batch_size, 'steps_per_sec': steps_per_sec,
            'examples_seen': examples_seen, 'epoch': examples_seen / self.train_examples,
            'wall_s': now - self.started}  # since this process started training


def _log_train(run: _Run, clock: _Clock, step: int, state, host_sums: list) -> None:
  """Writes the training metrics of the steps since the last log line and a console line."""
  _stop_if_nonfinite(run, host_sums, step)
  metrics = _train_metrics(host_sums)
  metrics['nonfinite_steps'] = int(jax.device_get(state.nonfinite_steps))
  metrics.update(clock.metrics(step))
  run.writer.write(step, 'train', metrics)
  run.saver.check()
  total = run.trainer.num_steps
  eta = (total - step) / max(metrics['steps_per_sec'], 1e-9)
  writers.log('step %d/%d  loss %.4f  %s  %.0f ex/s  ETA %s', step, total, metrics['loss'],
              _accuracies(metrics), metrics['examples_per_sec'], writers.duration(eta))


def _scheduled_evaluations(run: _Run, state, step: int) -> list | None:
  """Runs the evaluators due at `step`; the selecting evaluator's lines if it ran."""
  selecting = None
  for evaluator in run.evals.values():
    if evaluator.due(step):
      lines = _run_evaluator(evaluator, state, run.writer, step)
      if run.best is not None and evaluator.name == run.best.evaluator:
        run.best.update(step, lines, state)
        selecting = lines
  return selecting


def _converged(run: _Run, step: int) -> bool:
  """Early stopping's criteria at `step`: the selected metric has not improved in
  config.early_stopping_patience evaluations, or it reached config.early_stopping_target."""
  if run.best is None:
    return False
  patience = run.config.get('early_stopping_patience', 0)
  return run.best.reached(run.config.get('early_stopping_target', 0.0)) or (
      bool(patience) and run.best.converged(step, patience,
                                            run.evals[run.best.evaluator].every_steps))


def _stop_early(run: _Run, clock, step: int, state, pending: list) -> None:
  """Logs the steps since the last log line and marks the run stopped at `step` (what a sweep
  reads as finished)."""
  if pending:
    _log_train(run, clock, step, state, jax.device_get(pending))
  run.writer.write(step, 'train', {'stopped_early': True})
  best = run.best
  if best.reached(run.config.get('early_stopping_target', 0.0)):
    writers.log('early stopping at step %d: %s/%s reached early_stopping_target (%.4f at step %d)',
                step, best.evaluator, best.metric, best.value, best.step)
    return
  writers.log('early stopping at step %d: %s/%s last improved at step %d (%d evaluations ago)',
              step, best.evaluator, best.metric, best.step,
              (step - best.step) // run.evals[best.evaluator].every_steps)


def _stop_if_nonfinite(run: _Run, host_sums: list, step: int) -> None:
  """With on_nonfinite='stop', raises NonFiniteError at the first skipped step among
  `host_sums` (those of steps step - len + 1 .. step)."""
  if run.config.on_nonfinite != 'stop':
    return
  bad = _first_nonfinite(host_sums, step)
  if bad is None:
    return
  run.saver.wait()
  last = run.mngr.latest_step()
  where = f'step {last} in {run.mngr.directory}' if last is not None else 'none'
  # Recorded, so that a sweep counts the run as diverged rather than unfinished.
  run.writer.write(bad, 'train', {'stopped_nonfinite': True})
  raise NonFiniteError(
      f'non-finite loss, gradient or parameters at step {bad} (that update was not applied); '
      f'last good checkpoint: {where}; lower optimizer.learning_rate or check the inputs, or '
      'set on_nonfinite=skip to skip such steps')
