"""Devices: the data-parallel mesh, global batches, and JAX's multi-controller runtime."""

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mmjax.errors import UserError

DATA_AXIS = 'data'


DISTRIBUTED_MODES = ('auto', 'on', 'off')
# jax.distributed.initialize() raises exactly this when it has no address and found no cluster.
_NO_CLUSTER = 'coordinator_address should be defined.'


def initialize_distributed(mode: str = 'auto', coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
  """Starts JAX's multi-controller runtime (jax.distributed) as `mode` says; True if it started.

  - `auto`: explicit flags if given, else whatever cluster JAX's own detection finds (Cloud TPU
    VMs and pod slices, GKE, SLURM, Open MPI's mpirun, Kubernetes; see
    `jax.distributed.initialize`). On a plain machine it starts nothing.
  - `on`: as `auto`, but finding no cluster is an error.
  - `off`: never starts it (one process, even inside a cluster's environment).

  Explicit `coordinator_address`, `num_processes` and `process_id` win over detection.
  """
  if mode not in DISTRIBUTED_MODES:
    raise UserError(f'--distributed={mode}; valid values: {", ".join(DISTRIBUTED_MODES)}')
  if not coordinator_address and (num_processes is not None or process_id is not None):
    raise UserError('--num_processes and --process_id need --coordinator_address=HOST:PORT '
                    '(of process 0)')
  if coordinator_address:
    if mode == 'off':
      raise UserError('--coordinator_address starts a multi-process run, which --distributed=off '
                      'forbids; drop one of them')
    if num_processes is None or process_id is None or not 0 <= process_id < num_processes:
      raise UserError(f'--coordinator_address needs --num_processes=N and --process_id in '
                      f'[0, N); got num_processes={num_processes}, process_id={process_id}')
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
    return True
  if mode == 'off':
    return False
  try:
    jax.distributed.initialize()
  except ValueError as e:
    if str(e) != _NO_CLUSTER:
      raise
    if mode == 'on':
      raise UserError('--distributed=on, but JAX found no cluster to join (TPU pod slice, GKE, '
                      'SLURM, Open MPI, Kubernetes); give --coordinator_address=HOST:PORT '
                      '--num_processes=N --process_id=I, or use --distributed=auto') from None
    return False
  return True


def make_mesh() -> Mesh:
  # Each process's devices contiguous and in process order, so process p's rows of a global batch
  # are the p-th block (as the input pipeline reads them).
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


# Smaller arrays stay replicated under FSDP: splitting them saves little memory and costs a gather.
FSDP_MIN_SIZE = 2 ** 12


def state_sharding(tree, mesh: Mesh, fsdp: bool):
  """One sharding per leaf of `tree` (arrays or their shapes): replicated; or, with `fsdp`, each
  array of at least FSDP_MIN_SIZE elements split over the data axis along its largest dimension
  that the device count divides (FSDP / ZeRO-3: XLA gathers a parameter where a step uses it and
  reduce-scatters its gradient). The values are the same either way."""
  def one(x):
    shape = tuple(getattr(x, 'shape', ()))
    if fsdp and mesh.size > 1 and math.prod(shape) >= FSDP_MIN_SIZE:
      for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % mesh.size == 0:
          return NamedSharding(mesh, P(*([None] * dim), DATA_AXIS))
    return replicated(mesh)
  return jax.tree.map(one, tree)


def global_batch(local_batch, mesh: Mesh):
  """This process's rows → one global array per leaf, sharded over the data axis."""
  sharding = data_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


class DeviceBatches:
  """The training batches, put on the devices one step ahead: `prefetch()`, called once a step
  is dispatched, reads and transfers the next batch while that step runs. `get_state()` is the
  input position after the batches taken so far, which is what a checkpoint stores."""

  def __init__(self, train_iter, mesh):
    self._iter, self._mesh = train_iter, mesh
    self._next = None  # (input position before it, global batch on the devices)

  def prefetch(self):
    if self._next is None:
      position = self._iter.get_state()
      self._next = (position, global_batch(next(self._iter), self._mesh))

  def take(self):
    self.prefetch()
    batch, self._next = self._next[1], None
    return batch

  def get_state(self):
    return self._iter.get_state() if self._next is None else self._next[0]
