"""A config's model: flax's layer table (input and output shapes, parameters, FLOPs of the
forward pass and of its gradient per layer), then parameter counts per component.

  python -m mmjax.models.summary --config=configs/late_fusion.py:synthetic [--depth=2]
"""

import collections
import sys

from absl import app
from absl import flags
import flax.linen as nn
import jax
import numpy as np
from ml_collections import config_flags

from mmjax.models.model import build_model

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')


def example_batch(config, batch_size: int = 2) -> dict:
  """A real batch from the config's training split (built on first use)."""
  from mmjax.data import input_pipeline  # pylint: disable=import-outside-toplevel
  examples = input_pipeline.train_examples(config)
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


def layer_table(config, batch=None, depth: int | None = 2) -> str:
  """nn.tabulate's table of the model on a batch of 2 examples, `depth` levels of modules deep."""
  batch = example_batch(config) if batch is None else batch
  model = build_model(config)
  tabulate = nn.tabulate(model, jax.random.key(0), depth=depth, compute_flops=True,
                         compute_vjp_flops=True,
                         # Colours only on a terminal: piped into a file the table stays plain.
                         console_kwargs={'width': 160, 'force_terminal': sys.stdout.isatty()})
  return tabulate(batch['inputs'], batch['present'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}; flags take the form --name=value')
  try:
    config = _CONFIG.value
    config.keys()  # a file that failed to load raises on first access
  except (OSError, ImportError, SyntaxError) as e:
    raise SystemExit(f'mmjax: error: --config: cannot load it ({e})') from None
  print(layer_table(config, depth=flags.FLAGS.depth or None))
  counts = param_counts(config)
  width = max(len(k) for k in counts) + 2
  print(f'{"component":<{width}}{"parameters":>12}')
  for name, n in counts.items():
    print(f'{name:<{width}}{n:>12,}')
  print(f'{"total":<{width}}{sum(counts.values()):>12,}')


def _parse(argv):
  """absl's parser; a bad override is one `mmjax: error:` line, as in mmjax.main."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:  # an override of a field the config lacks
    field = str(e.args[0] if e.args else e).splitlines()[0].strip('\'"')
    raise SystemExit(f'mmjax: error: --config overrides a field {field!r} the config lacks '
                     '(every field: configs/default.py)') from None
  except (flags.Error, TypeError, ValueError, OSError, ImportError) as e:
    raise SystemExit(f'mmjax: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}'
                     ) from None


if __name__ == '__main__':
  flags.DEFINE_integer('depth', 2, 'Module levels in the layer table (0: every level).')
  flags.mark_flags_as_required(['config'])
  app.run(main, flags_parser=_parse)
