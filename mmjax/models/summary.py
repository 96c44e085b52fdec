"""Parameter counts per component of a config's model, as a table.

  python -m mmjax.models.summary --config=configs/late_fusion.py:synthetic
"""

import collections

from absl import app
from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

from mmjax.models.model import build_model

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')


def example_batch(config, batch_size: int = 2) -> dict:
  """A real batch from the config's training split (built on first use)."""
  from mmjax.data import input_pipeline  # pylint: disable=import-outside-toplevel
  examples = input_pipeline.Examples(config, config.dataset.train_split)
  rows = [examples(i) for i in range(batch_size)]
  return jax.tree.map(lambda *xs: np.stack(xs), *rows)


def param_counts(config, batch=None) -> dict[str, int]:
  """{top-level component: number of parameters} for config.model, from shapes alone."""
  batch = example_batch(config) if batch is None else batch
  model = build_model(config)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), batch['inputs'], batch['present']))
  counts = collections.Counter()
  for path, leaf in jax.tree_util.tree_leaves_with_path(shapes['params']):
    counts[path[0].key] += int(np.prod(leaf.shape))
  return dict(sorted(counts.items()))


def main(argv):
  del argv
  counts = param_counts(_CONFIG.value)
  width = max(len(k) for k in counts) + 2
  print(f'{"component":<{width}}{"parameters":>12}')
  for name, n in counts.items():
    print(f'{name:<{width}}{n:>12,}')
  print(f'{"total":<{width}}{sum(counts.values()):>12,}')


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main)
