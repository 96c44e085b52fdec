"""Runs an experiment's grid of runs (experiments/catalog.py) and writes its results.

  python -m experiments.sweep --experiment=avmnist_fusion     # full mode, in results/avmnist_fusion
  python -m experiments.sweep --experiment=robustness --quick  # tiny budgets: checks the path
  python -m experiments.sweep --experiment=avmnist_fusion --print_commands  # a CLI line per run
  python -m experiments.sweep --experiment=synthetic_interactions --steps=1000 --results_dir=DIR

Runs go one after another (`--jobs=N`: N at a time, e.g. one per CPU core), each
`python -m mmjax.main` in a subprocess, in
`<results_dir>/runs/<config>__<overrides>__seed<N>`. A finished run (its final evaluator lines
and final checkpoint are there) is skipped; an interrupted one is rerun and resumes from its
checkpoint. `--print_commands` prints the same command lines for a cluster, a SLURM array or TPU
slices; `--aggregate_only` then collects what they wrote. The results dir receives
`results.csv`, `table.md` and PNG and SVG plots, also when some runs are missing (table.md lists
them).
"""

import os
import sys

from absl import app
from absl import flags

from experiments import catalog
from experiments import runner
from mmjax.errors import UserError

_EXPERIMENT = flags.DEFINE_string('experiment', None,
                                  f'One of: {", ".join(catalog.names())}.')
_QUICK = flags.DEFINE_bool('quick', False, 'Tiny budgets and models: checks the path only.')
_RESULTS_DIR = flags.DEFINE_string(
    'results_dir', None, 'Where runs and results go (default: results/NAME, or '
    'runs/sweeps/NAME-quick with --quick).')
_PRINT = flags.DEFINE_bool('print_commands', False, 'Print one command line per run and exit.')
_SEEDS = flags.DEFINE_integer('seeds', None, 'Seeds per method (default: the experiment\'s).')
_STEPS = flags.DEFINE_integer('steps', None, 'Training steps per run (default: the experiment\'s '
                              'stated budget); give another budget its own --results_dir.')
_AGGREGATE_ONLY = flags.DEFINE_bool('aggregate_only', False,
                                    'Write the results of the runs already there; train nothing.')
_JOBS = flags.DEFINE_integer(
    'jobs', 1, 'Runs trained at a time on this machine. On a CPU, XLA keeps about one core busy '
    'per run of these models, so one job per core; on one GPU, 1.')
_TIMEOUT = flags.DEFINE_integer('timeout', 4 * 3600, 'Seconds allowed per run.')


def main(argv):
  if len(argv) > 1:
    raise UserError(f'unexpected arguments {argv[1:]}; flags take the form --name=value')
  if not _EXPERIMENT.value:
    raise UserError(f'give --experiment=NAME, one of {", ".join(catalog.names())}')
  experiment = catalog.get(_EXPERIMENT.value, _QUICK.value, _SEEDS.value, _STEPS.value)
  root = _RESULTS_DIR.value or runner.default_results_dir(experiment.name, _QUICK.value)
  if _PRINT.value:
    runner.print_commands(experiment, root)
    return 0
  if _JOBS.value < 1:
    raise UserError(f'--jobs={_JOBS.value} must be at least 1')
  failures = [] if _AGGREGATE_ONLY.value else runner.run_all(experiment, root, _TIMEOUT.value,
                                                             jobs=_JOBS.value)
  runner.write_results(experiment, root)
  if failures:
    print(f'{len(failures)} run(s) failed:', *failures, sep='\n  ', file=sys.stderr)
    return 1
  return 0


def _main(argv):
  try:
    sys.exit(main(argv))
  except UserError as e:
    sys.exit(f'mmjax: error: {e}')


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  app.run(_main)
