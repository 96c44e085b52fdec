"""Every config in configs/ trained briefly on one dataset: a markdown table of parameter counts,
training throughput and test accuracy.

  python -m experiments.zoo --variant=avmnist      # the sweep `zoo_avmnist`, in results/zoo_avmnist
  python -m experiments.zoo --variant=synthetic --quick

The runs are the sweep `zoo_<variant>` (experiments/catalog.py): each is the CLI
(`python -m mmjax.main`) in its own workdir, skipped once finished, resumed if interrupted; its
figures come from metrics.jsonl (experiments/aggregate.py), its parameter counts from the model
the config builds (mmjax.models.summary). `zoo.md` is written beside the sweep's results.
"""

import pathlib
import sys

from absl import app
from absl import flags

from experiments import catalog
from experiments import runs as runs_lib
from experiments import runner
from mmjax.errors import UserError

_VARIANT = flags.DEFINE_enum('variant', 'avmnist', ['avmnist', 'synthetic'], 'Config variant.')
_QUICK = flags.DEFINE_bool('quick', False, 'Tiny models and budgets: checks the path.')
_STEPS = flags.DEFINE_integer('steps', None,
                              f'Training steps per config (default {catalog.ZOO_STEPS}).')
_RESULTS = flags.DEFINE_string('results_dir', None,
                               'Default: results/zoo_VARIANT (runs/sweeps/... with --quick).')


def parameters(run: runs_lib.Run) -> int:
  from mmjax.models import summary  # pylint: disable=import-outside-toplevel
  return sum(summary.param_counts(runs_lib.load_config(run)).values())


def _accuracy(row: dict) -> float | None:
  if 'test/accuracy' in row:
    return row['test/accuracy']
  tasks = [v for k, v in row.items() if k.startswith('test/') and k.endswith('/accuracy')]
  return tasks[0] if tasks else None


def table(experiment, results, params: dict) -> str:
  lines = [f'| config ({experiment.budget}) | parameters | examples/s | test accuracy |',
           '|---|---:|---:|---:|']
  done = {row['run']: row for row in results.rows}
  for run in experiment.runs:
    row = done.get(run.name)
    if row is None:
      lines.append(f'| {run.label} | {params[run.name]:,} | not finished | |')
      continue
    speed = row.get('train/examples_per_sec')
    acc = _accuracy(row)
    lines.append(f'| {run.label} | {params[run.name]:,} | '
                 f'{"—" if speed is None else f"{speed:.0f}"} | '
                 f'{"—" if acc is None else f"{100 * acc:.1f}%"} |')
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  experiment = catalog.get(f'zoo_{_VARIANT.value}', quick=_QUICK.value, steps=_STEPS.value)
  root = pathlib.Path(_RESULTS.value or runner.default_results_dir(experiment.name,
                                                                   _QUICK.value))
  failures = runner.run_all(experiment, root, timeout_s=3600)
  results = runner.write_results(experiment, root)
  params = {run.name: parameters(run) for run in experiment.runs}
  text = table(experiment, results, params)
  (root / 'zoo.md').write_text(text, encoding='utf-8')
  print(text)
  if failures:
    print(f'{len(failures)} run(s) failed:', *failures, sep='\n  ', file=sys.stderr)
    sys.exit(1)


def _main(argv):
  try:
    main(argv)
  except UserError as e:
    sys.exit(f'mmjax: error: {e}')


if __name__ == '__main__':
  app.run(_main)
