"""Input pipeline throughput (examples/s, no model): how fast batches reach the host.

  python -m experiments.bench_input --config=configs/late_fusion.py --batches=200
  python -m experiments.bench_input --config=configs/late_fusion.py --config.dataset.num_workers=2
"""

import time

from absl import app
from absl import flags
from ml_collections import config_flags

from mmjax.data import input_pipeline

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
_BATCHES = flags.DEFINE_integer('batches', 200, 'Batches to time (after 5 warm-up batches).')


def main(argv):
  del argv
  config = _CONFIG.value
  start = time.perf_counter()
  it = input_pipeline.train_iterator(config)
  for _ in range(5):
    next(it)
  ready = time.perf_counter()
  for _ in range(_BATCHES.value):
    next(it)
  elapsed = time.perf_counter() - ready
  n = _BATCHES.value * config.batch_size
  print(f'{config.dataset.name}: {n / elapsed:,.0f} examples/s ({_BATCHES.value} batches of '
        f'{config.batch_size}, {config.dataset.get("num_workers", 0)} workers); '
        f'set-up {ready - start:.1f}s')


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main)
