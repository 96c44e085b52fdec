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
`close()`. There Ctrl-C (SIGINT) is a preemption too: the run finishes its step, saves it and
stops (`interrupted` says so, and the CLI then exits with status 130); a second Ctrl-C ends the
process at once, which cannot damage a saved checkpoint (Orbax renames a save into place only
when it is complete). Before the first step and after the last, Ctrl-C is Python's
KeyboardInterrupt.
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
    self._previous_sigint = None
    self.interrupted = False  # stopped by Ctrl-C (SIGINT) rather than a preemption notice
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
      self._previous_sigint = signal.signal(signal.SIGINT, self._handle)
      self._installed = True
    except ValueError:  # not the main thread (e.g. inside a test runner's worker)
      pass

  def _handle(self, signum, frame):
    del frame
    self._requested = True
    if signum == signal.SIGINT:
      self.interrupted = True
      signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C ends the process at once
      logging.warning('Ctrl-C: finishing this step and saving a checkpoint; Ctrl-C again to stop '
                      'at once (the last saved checkpoint stays good)')

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
    """Puts back the previous SIGTERM and SIGINT handlers (the caller, e.g. a test runner, may
    rely on them)."""
    if self._installed:
      # None: the previous handler was not set from Python; the default is the best stand-in.
      signal.signal(signal.SIGTERM,
                    signal.SIG_DFL if self._previous is None else self._previous)
      signal.signal(signal.SIGINT, signal.default_int_handler if self._previous_sigint is None
                    else self._previous_sigint)
      self._installed = False
