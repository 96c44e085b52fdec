"""`classification`: the objective's metrics on a split."""

from mmjax.evaluators.base import EVALUATORS, Evaluator


@EVALUATORS.register('classification')
class Classification(Evaluator):
  """The objective's metrics (loss, accuracy per task and head) on a split."""

  def run(self, state) -> list[dict]:
    return [self._pass(state)]
