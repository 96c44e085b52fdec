"""`pid`: which interactions between two modalities a model's predictions use, measured as the
partial information decomposition (mmjax.pid) of (x1, x2; prediction), where x1 and x2 are
discrete features of each example that stand for what each modality shows: the synthetic
probes' latent classes (`image_latent`, `audio_latent`), or cluster ids of a real dataset's
representations, as Liang et al. (NeurIPS 2023) discretise theirs.

Configured as `{'type': 'pid', 'split': 'test', 'sources': {'image': 'image_latent', 'audio':
'audio_latent'}}` (two modalities, each named with the dataset feature that stands for it; `task`
as for the other evaluators). Two lines, in bits: `condition: labels`, the data's own
decomposition of (x1, x2; label) on the split, and `condition: predictions`, the model's
(x1, x2; predicted class); each with `redundancy`, `unique_<modality>` for both, `synergy` and
`total` (= I(x1, x2; ·)), and the second with the predictions' `accuracy`. Estimated from the split's examples as counted, so a small split biases
the parts upward (about cells × (classes − 1) / (2 n ln 2) bits of total).
"""

import numpy as np

from mmjax import pid
from mmjax.errors import UserError
from mmjax.evaluators.base import EVALUATORS, Evaluator, collect, task_of


@EVALUATORS.register('pid')
class Interactions(Evaluator):
  """PID of (two sources; label) and of (the same sources; the model's prediction) on a split."""

  def __init__(self, name, cfg, fns):
    super().__init__(name, cfg, fns)
    self.task = task_of(name, cfg, fns)
    self.sources = dict(cfg.get('sources') or {})
    if len(self.sources) != 2:
      raise UserError(f'evals.{name}.sources={self.sources}: name two modalities, each with the '
                      "dataset feature that stands for it, e.g. {'image': 'image_latent', "
                      "'audio': 'audio_latent'}")
    if fns.predict is None:
      raise UserError(f'evals.{name}: this run predicts no class; the pid evaluator needs a '
                      'classification objective')

  def run(self, state) -> list[dict]:
    _, rows = collect(self.data, self.mesh, self.fns.predict, state)
    labels = rows[f'labels/{self.task}']
    predictions = rows[f'predictions/{self.task}']
    x1, x2 = (self._feature(f) for f in self.sources.values())
    if not len(x1) == len(labels) == self.data.num_examples:
      raise RuntimeError(f'{self.name}: {len(labels)} predictions for {len(x1)} examples')
    sizes = (int(x1.max()) + 1, int(x2.max()) + 1, self.fns.num_classes[self.task])
    m1, m2 = self.sources
    out = []
    for condition, target in (('labels', labels), ('predictions', predictions)):
      parts = pid.decompose(pid.joint_from_samples(x1, x2, target, sizes))
      out.append({'condition': condition, 'redundancy': parts['redundancy'],
                  f'unique_{m1}': parts['unique_1'], f'unique_{m2}': parts['unique_2'],
                  'synergy': parts['synergy'], 'total': parts['total'],
                  'num_examples': len(labels)})
    out[1]['accuracy'] = float(np.mean(predictions == labels))
    return out

  def _feature(self, feature: str) -> np.ndarray:
    """`feature` of every example of the split, in the order the evaluation visits them."""
    source = self.data.examples.source
    try:
      values = [int(ex[feature]) for ex in source.__getitems__(range(len(source)))]
    except KeyError:
      raise UserError(f'evals.{self.name}.sources: the dataset has no feature {feature!r}') from None
    return np.asarray(values, np.int64)
