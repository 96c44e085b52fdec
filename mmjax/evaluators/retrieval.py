"""`retrieval` (needs an objective that embeds two modalities: `objective.name='contrastive'`):
every example of the split is embedded in both modalities of the objective's pair with the
projection heads; each example's embedding in one modality queries the split's embeddings in the
other (cosine similarity). Metrics, for each
direction `<a>_to_<b>` and each k in `ks` (default 1, 5, 10):
  - `<a>_to_<b>/class/R@k`: the fraction of queries with an example of the query's class (cfg
    `task`) among the k most similar (same digit, on AV-MNIST);
  - `<a>_to_<b>/pair/R@k`: the fraction of queries whose own pair ranks among the first k, the
    rank being the number of gallery items strictly more similar than the pair.
Gallery items with the same embedding (cosine similarity within 1e-5 of 1: the same content, e.g.
one AV-MNIST recording paired with ~33 test images) count once, so copies of one item do not fill
the top k. Every example is a query. Chance is about k/N for `pair` (N distinct gallery items) and
1-(1-p)^k for `class` (p the class frequency). On AV-MNIST audio→image `pair` cannot exceed ~1/33
at k=1: the audio does not tell which of its ~33 images is the pair. The line also holds the
objective's metrics (loss, in-batch accuracy) on the split.
"""

import numpy as np

from mmjax import objectives
from mmjax.errors import UserError
from mmjax.evaluators.base import EVALUATORS, Evaluator, collect, task_of

_QUERY_CHUNK = 1024
_SAME = 1e-5  # cosine distance below which two gallery embeddings are the same item


def distinct(embeddings, tolerance: float = _SAME) -> np.ndarray:
  """For each row of unit-norm `embeddings`, the index of the first row with the same embedding
  (cosine similarity above 1 - tolerance): the same content, e.g. one recording paired with
  several images."""
  out = np.empty(len(embeddings), np.int64)
  for start in range(0, len(embeddings), _QUERY_CHUNK):
    sims = embeddings[start:start + _QUERY_CHUNK] @ embeddings.T
    out[start:start + len(sims)] = np.argmax(sims > 1 - tolerance, axis=1)  # first match
  return out


def recall_at_k(queries, gallery, query_labels, gallery_labels, ks) -> dict:
  """{'class/R@k', 'pair/R@k'} for unit-norm `queries` [N, d] against `gallery` [N, d], query i's
  pair being gallery item i (see the module docstring). Gallery items with the same embedding
  count once."""
  first = distinct(gallery)
  unique = np.flatnonzero(first == np.arange(len(gallery)))
  position = np.full(len(gallery), -1)
  position[unique] = np.arange(len(unique))
  target = position[first]        # query i's pair, as an index into the distinct items
  gallery, gallery_labels = gallery[unique], gallery_labels[unique]
  n, kmax = len(queries), min(max(ks), len(gallery))
  class_hits = {k: 0 for k in ks}
  pair_hits = {k: 0 for k in ks}
  for start in range(0, n, _QUERY_CHUNK):
    q = queries[start:start + _QUERY_CHUNK]
    sims = q @ gallery.T                                        # [chunk, distinct items]
    index = np.arange(start, start + len(q))
    own = sims[np.arange(len(q)), target[index]]
    rank = (sims > own[:, None]).sum(axis=1)
    top = np.argpartition(-sims, kmax - 1, axis=1)[:, :kmax]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind='stable')
    top = np.take_along_axis(top, order, axis=1)
    same = gallery_labels[top] == query_labels[index][:, None]  # [chunk, kmax]
    for k in ks:
      class_hits[k] += int(same[:, :k].any(axis=1).sum())
      pair_hits[k] += int((rank < k).sum())
  out = {}
  for k in ks:
    out[f'class/R@{k}'] = class_hits[k] / n
    out[f'pair/R@{k}'] = pair_hits[k] / n
  return out


@EVALUATORS.register('retrieval')
class Retrieval(Evaluator):
  """Cross-modal Recall@k, class-match and exact-pair; see the module docstring."""

  def __init__(self, name, cfg, fns):
    if fns.embed is None or len(fns.embedding_modalities) != 2:
      raise UserError(f'evals.{name}: type retrieval needs an objective that embeds two '
                      f'modalities (objective.name=contrastive), not {fns.objective_name!r}')
    super().__init__(name, cfg, fns)
    self.task = task_of(name, cfg, fns)
    self.ks = tuple(int(k) for k in cfg.get('ks', (1, 5, 10)))
    if not self.ks or min(self.ks) < 1:
      raise UserError(f'evals.{name}.ks={self.ks!r} must be positive integers')
    self.modalities = fns.embedding_modalities

  def run(self, state) -> list[dict]:
    sums, z = collect(self.data, self.mesh, self.fns.embed, state)
    labels = z[f'labels/{self.task}']
    metrics = objectives.finalize(sums)
    if metrics['num_examples'] != self.data.num_examples:
      raise RuntimeError(f'{self.name}: embedded {metrics["num_examples"]} examples, expected '
                         f'{self.data.num_examples}; every example needs both '
                         f'{" and ".join(self.modalities)}')
    for query, gallery in self._directions():
      for key, value in recall_at_k(z[query], z[gallery], labels, labels, self.ks).items():
        metrics[f'{query}_to_{gallery}/{key}'] = value
    return [metrics]

  def _directions(self):
    a, b = self.modalities
    return (a, b), (b, a)

  def metric_names(self, state) -> set[str]:
    return super().metric_names(state) | {
        f'{query}_to_{gallery}/{match}/R@{k}' for query, gallery in self._directions()
        for match in ('class', 'pair') for k in self.ks}
