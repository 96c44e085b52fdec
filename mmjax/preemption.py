"""Preemption: SIGTERM (the notice schedulers send before evicting a job) makes every process stop
at the same step, so that they all save that step's checkpoint and exit cleanly.

Multi-process runs (jax.distributed initialised) use JAX's preemption sync, through Orbax's
`CheckpointManager.reached_preemption(step)`: JAX's own notifier catches SIGTERM on any process,
its coordination service picks a step every process has not reached yet, and `reached(step)`
turns True on all of them at that step. It must be asked after every step, with the same step on
every process; it adds no collective to the step. mmjax installs no Python SIGTERM handler then:
one installed after `jax.distributed.initialize` replaces JAX's notifier (Python's `signal.signal`
takes over the C-level handler), and the sync point is never reached.

A single process without jax.distributed uses a plain Python SIGTERM handler, restored by
`close()`.
"""

import signal

from absl import logging
import jax
import orbax.checkpoint as ocp


def _jax_preemption_service() -> bool:
  """True when jax.distributed runs with its preemption service (the default)."""
  if not jax.distributed.is_initialized():
    return False
  return bool(jax.config.jax_enable_preemption_service)


class Preemption:
  """`reached(step)`: True (on every process, at the same step) once a preemption notice came."""

  def __init__(self, mngr: ocp.CheckpointManager):
    self._mngr = mngr
    self._requested = False
    self._installed = False
    self._previous = None
    self.uses_jax = _jax_preemption_service()
    if self.uses_jax:
      return
    if jax.process_count() > 1:
      # Without JAX's service nothing can agree on a step without a collective of our own.
      logging.warning('jax_enable_preemption_service is off: SIGTERM ends this multi-process run '
                      'without a checkpoint')
      return
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
      self._installed = True
    except ValueError:  # not the main thread (e.g. inside a test runner's worker)
      pass

  def _handle(self, signum, frame):
    del signum, frame
    self._requested = True

  def reached(self, step: int) -> bool:
    """Call after every step with that step's number; True means: save this step and stop."""
    reached = (bool(self._mngr.reached_preemption(int(step))) if self.uses_jax
               else self._requested)
    if reached:
      # Every process says so: on a pod, each host's log shows the step it saved.
      logging.info('preemption notice: process %d stops after step %d', jax.process_index(),
                   step)
    return reached

  def close(self) -> None:
    """Puts back the previous SIGTERM handler (the caller, e.g. a test runner, may rely on it)."""
    if self._installed:
      # None: the previous handler was not set from Python; the default is the best stand-in.
      signal.signal(signal.SIGTERM,
                    signal.SIG_DFL if self._previous is None else self._previous)
      self._installed = False
