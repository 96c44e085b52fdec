"""Orbax checkpoints of the whole run: train state and the input pipeline's position.

Orbax writes each step into a temporary directory and renames it only when complete, so an
interrupted save never replaces the last good checkpoint. A latest checkpoint that fails to
restore (e.g. a truncated file) is skipped with a warning in favour of the one before.
"""

from absl import logging
import jax
import orbax.checkpoint as ocp


def manager(directory, max_to_keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      directory,
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
      item_names=('state', 'data'))


def save(mngr: ocp.CheckpointManager, step: int, state, data_state: dict) -> None:
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          data=ocp.args.JsonSave(data_state)), force=True)


def restore_latest(mngr: ocp.CheckpointManager, abstract_state):
  """(step, state, data_state) of the newest checkpoint that restores, or None if there is none."""
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      out = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
      return step, out.state, out.data
    except Exception as e:  # pylint: disable=broad-except  (any damage: fall back, say so)
      logging.warning('checkpoint at step %d in %s does not restore (%s: %s); trying the previous '
                      'one', step, mngr.directory, type(e).__name__, str(e).splitlines()[0][:200])
  return None


def abstract(state):
  """Shapes, dtypes and shardings of `state`, to restore into the same layout."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
