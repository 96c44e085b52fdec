"""Entry point: `python -m mmjax.main --config=configs/late_fusion.py --workdir=runs/lf`.

Flags and one call; the work is in `mmjax.training.train`. Mistakes a user can fix (bad flags,
config values, paths, data) end with one line `mmjax: error: ...` on stderr and exit status 1
(`mmjax.cli`).
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from mmjax import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file (Python).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and the resolved config.')
# mmjax.parallel.DISTRIBUTED_MODES: spelled out so that a mistyped flag or --help is answered
# before JAX is imported (a test holds the two equal).
flags.DEFINE_enum('distributed', 'auto', ('auto', 'on', 'off'),
                  'Multi-process runs (jax.distributed): auto starts it where JAX detects a cluster '
                  '(TPU pod slice, GKE, SLURM, Open MPI, Kubernetes) or the flags below are given; '
                  'on requires one; off never starts it.')
flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0, for multi-process runs.')
flags.DEFINE_integer('num_processes', None, 'Number of processes in a multi-process run.')
flags.DEFINE_integer('process_id', None, 'This process\'s index in a multi-process run.')
flags.DEFINE_bool('accept_config_changes', False,
                  'Resume a workdir whose config.json has other settings than this command '
                  '(beyond training length, evaluators and logging), going on with the new '
                  'values; the changes are recorded in <workdir>/config_changes.jsonl.')
flags.mark_flags_as_required(['config', 'workdir'])

cli.make_configs_importable()


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; flags take the form --name=value')
  config = cli.load_config()
  cli.check_override_types(sys.argv)
  # Imported once the command line is known to be good: a mistake in it is one line in a
  # fraction of a second, without loading JAX, TFDS and the models first.
  # pylint: disable=import-outside-toplevel
  import jax
  from mmjax import compilation
  from mmjax import parallel
  from mmjax import profiling
  from mmjax import writers
  from mmjax.errors import UserError
  from mmjax.training import train
  # pylint: enable=import-outside-toplevel
  logging.get_absl_handler().addFilter(writers.QuietLibraries())
  try:
    # A profiled run compiles its train step afresh: a cached executable has no per-operation
    # trace events and dumps no HLO.
    profiled = profiling.configure_xla(config, FLAGS.workdir)
    compilation.enable_cache('off' if profiled else config.get('compilation_cache', 'auto'))
    parallel.initialize_distributed(FLAGS.distributed, FLAGS.coordinator_address,
                                    FLAGS.num_processes, FLAGS.process_id)
    logging.info('JAX %s: process %d/%d, %d local / %d global devices (%s)', jax.__version__,
                 jax.process_index(), jax.process_count(), jax.local_device_count(),
                 jax.device_count(), jax.devices()[0].platform)
    train.train_and_evaluate(config, FLAGS.workdir, FLAGS.accept_config_changes)
  except UserError as e:
    cli.fail(cli.gist(e))
  except train.Interrupted as e:
    logging.info('%s', e)
    sys.exit(130)  # the shell's status for a process ended by Ctrl-C


if __name__ == '__main__':
  sys.modules['__main__'].__doc__ = cli.usage(__doc__)  # what absl prints for --help
  app.run(main, flags_parser=cli.parse_flags)
