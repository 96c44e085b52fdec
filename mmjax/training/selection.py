"""Model selection: `config.select_best = 'validation/accuracy'` keeps the train state at which
that evaluator's metric was best, and the run's final evaluators score that state instead of the
last one (as MultiBench tests its best-validation epoch).

The selecting evaluator runs on its schedule and on the final state; each time its metric
improves on the best so far (strictly: the first of equal values is kept), the state is saved to
`<workdir>/best` (one Orbax checkpoint, with the step, metric and value beside it). A metric whose
name ends in `loss` is minimised, any other maximised. A resumed or eval-only run reads the best
so far from there, so it selects what an uninterrupted run would.

With `config.early_stopping_patience = k`, training stops at the selecting evaluator's k-th
evaluation without improvement (`converged`); with `config.early_stopping_target = v`, at its
first evaluation whose metric reaches v (`reached`: a probe's Bayes ceiling, past which there is
nothing to select). The run's train metrics record `stopped_early` there, and the final
evaluators score the best state. Rerunning the command after that only evaluates, as after a run
that trained to the end.
"""

import math

from mmjax import checkpoint
from mmjax import workdir as workdirs
from mmjax import writers
from mmjax.errors import UserError


def parse(config, evals) -> tuple[str, str] | None:
  """(evaluator name, metric) of `config.select_best` among the evaluators named in `evals` (the
  config's evals), or None when it is empty."""
  spec = config.get('select_best') or ''
  if not spec:
    return None
  name, _, metric = spec.partition('/')
  if not metric or name not in evals:
    raise UserError(f'select_best={spec!r} must be "EVALUATOR/METRIC" with EVALUATOR one of '
                    f'config.evals ({", ".join(sorted(evals)) or "none"}), e.g. '
                    '"validation/accuracy"')
  return name, metric


def check_metric(selected: tuple[str, str] | None, evals: dict, state) -> None:
  """A select_best metric its evaluator does not give fails before training, not at the end."""
  if selected is None:
    return
  name, metric = selected
  names = evals[name].metric_names(state)
  if not names:
    raise UserError(f'select_best={name}/{metric}: evaluator {name!r} gives a line per '
                    'condition, not one value to select by; select on a classification '
                    'evaluator, e.g. validation/accuracy')
  if metric not in names:
    raise UserError(f'select_best={name}/{metric}: evaluator {name!r} gives no {metric!r}; it '
                    f'gives {", ".join(sorted(names))}')


class BestState:
  """The best state so far by one evaluator's metric, kept on disk in `<workdir>/best`."""

  def __init__(self, workdir, evaluator: str, metric: str):
    self.evaluator, self.metric = evaluator, metric
    self._sign = -1.0 if metric.endswith('loss') else 1.0
    self._mngr = checkpoint.manager(workdirs.best_dir(workdir), max_to_keep=1)
    self._saver = checkpoint.Saver(self._mngr)
    self.step, self.value = None, None
    latest = self._mngr.latest_step()
    if latest is not None:
      data = checkpoint.restore_data(self._mngr, latest)
      if (data['evaluator'], data['metric']) == (evaluator, metric):
        self.step, self.value = latest, data['value']

  def update(self, step: int, lines: list[dict], state) -> None:
    """Saves `state` if the metric in `lines` (the selecting evaluator's at `step`) is the best."""
    values = [line[self.metric] for line in lines if self.metric in line]
    if len(values) != 1:
      raise UserError(f'select_best: evaluator {self.evaluator!r} gives {len(values)} values of '
                      f'{self.metric!r}; name a metric from its one line (e.g. accuracy, loss)')
    value = float(values[0])
    if math.isnan(value):
      return
    if self.value is not None and self._sign * value <= self._sign * self.value:
      return
    self.step, self.value = step, value
    self._saver.save(step, state, {'evaluator': self.evaluator, 'metric': self.metric,
                                   'value': value})
    self._saver.wait()

  def converged(self, step: int, patience: int, every_steps: int) -> bool:
    """Whether, at `step`, the metric has not improved in `patience` evaluations (those at
    every `every_steps` steps) since its best: early stopping's criterion."""
    return patience > 0 and self.step is not None and step - self.step >= patience * every_steps

  def reached(self, target: float) -> bool:
    """Whether the best value so far reaches `target` (at least it for a maximised metric, at
    most for a loss): early stopping's target."""
    return (bool(target) and self.value is not None
            and self._sign * self.value >= self._sign * target)

  def restore(self, state):
    """The best state, in the layout of `state`."""
    step, restored, _ = checkpoint.restore_latest(self._mngr, checkpoint.abstract(state))
    writers.log('final evaluators score the state of step %d, best by %s/%s (%.4f)', step,
                self.evaluator, self.metric, self.value)
    return restored

  def close(self) -> None:
    self._saver.close()
