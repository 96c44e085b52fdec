"""`pid`: which interactions between two modalities a model's predictions use, measured as the
partial information decomposition (mmjax.pid) of (x1, x2; prediction), where x1 and x2 are
discrete features of each example that stand for what each modality shows: the synthetic
probes' latent classes (`image_latent`, `audio_latent`), or cluster ids of a real dataset's
representations, as Liang et al. (NeurIPS 2023) discretise theirs.

Configured as `{'type': 'pid', 'split': 'test', 'sources': {'image': 'image_latent', 'audio':
'audio_latent'}}` (two modalities, each named with the dataset feature that stands for it; `task`
as for the other evaluators). Three lines, in bits, each with `redundancy`, `unique_<modality>`
for both, `synergy` and `total` (= I(x1, x2; ·)): `condition: labels`, the data's own
decomposition of (x1, x2; label) on the split, with `chance`, the most frequent label's share
(what the sweeps' run health judges the model's accuracy against; a run's own warning takes
1 / number of classes); `condition: predictions`, the model's
(x1, x2; predicted class), with the predictions' `accuracy`; and `condition:
labels_at_model_accuracy`, the labels with as many of them (chosen at random, seeded) replaced by
another class as the model got wrong: what errors alone, with no interaction the data lacks, do to
the parts. The parts are estimated from the split's examples as counted, and errors put part of
what they remove into synergy: on 4,000 examples over 100 (x1, x2) cells, labels of `unique_image`
kept 90% right show 0.15 bits of synergy where the data has none. So read a model's parts beside
that third line, not beside 0.
"""

import functools

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
      raise UserError(f'evals.{name}: this run predicts no class; the pid evaluator needs '
                      "objective.name='classification'")
    for modality, feature in self.sources.items():
      self.data.examples.check_feature(feature, f'evals.{name}.sources.{modality}')

  def metric_names(self, state) -> set[str]:
    return set()  # a line per condition

  def run(self, state) -> list[dict]:
    _, rows = collect(self.data, self.mesh, self.fns.predict, state)
    labels = rows[f'labels/{self.task}']
    predictions = rows[f'predictions/{self.task}']
    x1, x2 = self._sources
    if not len(x1) == len(labels) == self.data.num_examples:
      raise RuntimeError(f'{self.name}: {len(labels)} predictions for {len(x1)} examples')
    sizes = (int(x1.max()) + 1, int(x2.max()) + 1, self.fns.num_classes[self.task])
    m1, m2 = self.sources
    out = []
    for condition, target in (('labels', labels), ('predictions', predictions),
                              ('labels_at_model_accuracy', _with_errors(labels, predictions))):
      parts = pid.decompose(pid.joint_from_samples(x1, x2, target, sizes))
      out.append({'condition': condition, 'redundancy': parts['redundancy'],
                  f'unique_{m1}': parts['unique_1'], f'unique_{m2}': parts['unique_2'],
                  'synergy': parts['synergy'], 'total': parts['total'],
                  'num_examples': len(labels)})
    out[0]['chance'] = float(np.bincount(labels).max() / len(labels))
    out[1]['accuracy'] = float(np.mean(predictions == labels))
    return out

  @functools.cached_property
  def _sources(self) -> list[np.ndarray]:
    """Each source feature of every example of the split, in the order the evaluation visits
    them: read once, in one pass over the records, on the first evaluation."""
    fields = {f'evals.{self.name}.sources.{m}': f for m, f in self.sources.items()}
    return list(self.data.examples.integer_features(fields).values())


def _with_errors(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
  """`labels` with as many entries as `predictions` gets wrong replaced, at random positions
  (seeded), by another of the classes the labels hold."""
  rng = np.random.default_rng(0)
  classes = np.unique(labels)
  out = labels.copy()
  wrong = rng.choice(len(labels), size=int(np.sum(predictions != labels)), replace=False)
  for i in wrong:
    out[i] = rng.choice(classes[classes != labels[i]]) if len(classes) > 1 else labels[i]
  return out
