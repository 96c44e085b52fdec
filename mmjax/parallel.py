"""Devices: the data-parallel mesh, global batches, and JAX's multi-controller runtime."""

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mmjax.errors import UserError

DATA_AXIS = 'data'


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Starts jax.distributed when asked to, or when a cluster environment says so.

  Explicit flags win; otherwise JAX auto-detects TPU pods and SLURM/Open MPI clusters. A plain
  single-machine run does nothing.
  """
  if not coordinator_address and (num_processes is not None or process_id is not None):
    raise UserError('--num_processes and --process_id need --coordinator_address=HOST:PORT '
                    '(of process 0)')
  if coordinator_address:
    if num_processes is None or process_id is None or not 0 <= process_id < num_processes:
      raise UserError(f'--coordinator_address needs --num_processes=N and --process_id in '
                      f'[0, N); got num_processes={num_processes}, process_id={process_id}')
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  elif 'SLURM_JOB_ID' in os.environ and int(os.environ.get('SLURM_NTASKS', '1')) > 1:
    jax.distributed.initialize()
  elif os.environ.get('TPU_WORKER_HOSTNAMES', '').count(',') > 0:
    jax.distributed.initialize()


def make_mesh() -> Mesh:
  # Each process's devices contiguous and in process order, so process p's rows of a global batch
  # are the p-th block (as the input pipeline reads them).
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def global_batch(local_batch, mesh: Mesh):
  """This process's rows → one global array per leaf, sharded over the data axis."""
  sharding = data_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
