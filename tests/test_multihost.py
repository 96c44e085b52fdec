"""--distributed=auto|on|off: JAX's cluster detection starts multi-process runs, and nothing else."""

import os
import subprocess
import sys

import portpicker
import pytest

from mmjax import parallel
from mmjax.errors import UserError
from tests.conftest import REPO

# Variables through which JAX's cluster detection (or jax.distributed itself) finds a cluster.
CLUSTER_VARIABLES = ('SLURM_', 'OMPI_', 'PMI_', 'KUBERNETES_', 'TPU_', 'MEGASCALE_',
                     'JAX_COORDINATOR', 'JAX_LOCAL_DEVICE_IDS', 'CLOUD_TPU_')

PROBE = ('import sys, jax; from mmjax import parallel; '
         'started = parallel.initialize_distributed(sys.argv[1]); '
         'print(started, jax.distributed.is_initialized(), jax.process_index(), jax.process_count(), '
         'flush=True)')


def _plain_env(**extra):
  """This machine's environment without any cluster's variables, plus `extra`."""
  env = {k: v for k, v in os.environ.items() if not k.startswith(CLUSTER_VARIABLES)}
  return {**env, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': str(REPO), **extra}


def _probe(mode, env, timeout=120):
  return subprocess.Popen(['timeout', '-k', '10', str(timeout), sys.executable, '-c', PROBE, mode],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def test_auto_starts_nothing_on_a_plain_machine():
  proc = _probe('auto', _plain_env())
  out, err = proc.communicate(timeout=150)
  assert proc.returncode == 0, err[-3000:]
  assert out.split() == ['False', 'False', '0', '1']


# What `srun --ntasks=2` and Open MPI's `mpirun -np 2` set for process i of a job on localhost.
LAUNCHERS = {
    'slurm': lambda i: {'SLURM_JOB_ID': '4242', 'SLURM_STEP_NODELIST': 'localhost',
                        'SLURM_NTASKS': '2', 'SLURM_STEP_NUM_NODES': '1', 'SLURM_PROCID': str(i),
                        'SLURM_LOCALID': str(i)},
    'mpirun': lambda i: {'OMPI_MCA_orte_hnp_uri': '1531576320.0;tcp://127.0.0.1:34911',
                         'OMPI_COMM_WORLD_SIZE': '2', 'OMPI_COMM_WORLD_RANK': str(i),
                         'OMPI_COMM_WORLD_LOCAL_RANK': str(i)},
}


@pytest.mark.parametrize('launcher', sorted(LAUNCHERS))
def test_auto_joins_the_cluster_jax_detects(launcher):
  """Two processes with a launcher's variables (2 tasks on localhost) form one run."""
  port = portpicker.pick_unused_port()
  procs = [_probe('auto', _plain_env(**LAUNCHERS[launcher](i), JAX_COORDINATOR_PORT=str(port)))
           for i in range(2)]
  outs = [p.communicate(timeout=150) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
  assert sorted(out.split()[:4] for out, _ in outs) == [['True', 'True', '0', '2'],
                                                         ['True', 'True', '1', '2']]


def test_off_starts_nothing_inside_a_cluster():
  proc = _probe('off', _plain_env(**LAUNCHERS['slurm'](0)))
  out, err = proc.communicate(timeout=150)
  assert proc.returncode == 0, err[-3000:]
  assert out.split() == ['False', 'False', '0', '1']


def test_on_without_a_cluster_is_one_line():
  proc = subprocess.run(
      ['timeout', '-k', '10', '120', sys.executable, '-m', 'mmjax.main',
       '--config=tests/scripts/tiny_config.py', '--workdir=/nonexistent/never/written',
       '--distributed=on'], cwd=REPO, env=_plain_env(), capture_output=True, text=True,
      check=False)
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert proc.stderr.strip().splitlines()[-1] == (
      'mmjax: error: --distributed=on, but JAX found no cluster to join (TPU pod slice, GKE, SLURM, '
      'Open MPI, Kubernetes); give --coordinator_address=HOST:PORT --num_processes=N '
      '--process_id=I, or use --distributed=auto')


@pytest.mark.parametrize('kwargs, message', [
    ({'mode': 'sometimes'}, '--distributed=sometimes; valid values: auto, on, off'),
    ({'mode': 'off', 'coordinator_address': 'h:1', 'num_processes': 2, 'process_id': 0},
     '--coordinator_address starts a multi-process run, which --distributed=off forbids'),
    ({'process_id': 1}, '--num_processes and --process_id need --coordinator_address'),
    ({'coordinator_address': 'h:1', 'num_processes': 2, 'process_id': 2},
     '--coordinator_address needs --num_processes=N and --process_id in [0, N)'),
], ids=['unknown_mode', 'off_with_address', 'id_without_address', 'id_out_of_range'])
def test_flag_mistakes(kwargs, message):
  with pytest.raises(UserError, match=message.replace('[', r'\[').replace(')', r'\)')):
    parallel.initialize_distributed(**kwargs)
