"""Orbax checkpoints of the whole run: train state and the input pipeline's position.

Orbax writes each step into a temporary directory and renames it only when complete, so an
interrupted save never replaces the last good checkpoint; a temporary directory left behind by a
killed process is ignored, and removed when the next manager starts. A latest checkpoint that fails
to restore (e.g. a truncated file) is skipped with a warning in favour of the one before.

Arrays are stored as OCDBT/Zarr and the rest as JSON: no pickles.
"""

import os
import re

from absl import logging
import jax
import orbax.checkpoint as ocp

from mmjax.errors import UserError


def manager(directory, max_to_keep: int, create: bool = True) -> ocp.CheckpointManager:
  """`create=False` only reads: it neither creates the directory nor cleans it."""
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep, create=create,
          # A save cut short by a kill leaves `<step>.orbax-checkpoint-tmp`; the next save of that
          # step must not trip over it.
          cleanup_tmp_directories=create),
      item_names=('state', 'data'),
      # Named handlers let metadata be read before any save or restore in this process.
      item_handlers={'state': ocp.StandardCheckpointHandler(),
                     'data': ocp.JsonCheckpointHandler()})


def steps_on_disk(directory) -> list[int]:
  """Finished checkpoint steps under `directory`, without creating or cleaning anything."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory)
                if re.fullmatch(r'\d+', n) and os.path.isdir(os.path.join(directory, n)))


def save(mngr: ocp.CheckpointManager, step: int, state, data_state: dict) -> None:
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          data=ocp.args.JsonSave(data_state)), force=True)


def _warn_skipped(mngr, step, e):
  logging.warning('checkpoint at step %d in %s does not restore (%s: %s); trying the previous '
                  'one', step, mngr.directory, type(e).__name__,
                  (str(e).splitlines() or [''])[0][:200])


def _newest_that_restores(mngr: ocp.CheckpointManager, restore, hint: str = ''):
  """(step, restore(step)) for the newest step whose restore succeeds, warning about each that
  fails; None when there is no checkpoint, a UserError when none restores."""
  steps = sorted(mngr.all_steps(), reverse=True)
  for step in steps:
    try:
      return step, restore(step)
    except Exception as e:  # pylint: disable=broad-except  (any damage: fall back, say so)
      _warn_skipped(mngr, step, e)
  if steps:
    raise UserError(f'no checkpoint in {mngr.directory} restores (steps {steps}){hint}')
  return None


def restore_latest(mngr: ocp.CheckpointManager, abstract_state):
  """(step, state, data_state) of the newest checkpoint that restores, or None if there is none.

  Checkpoints exist but none restores: a UserError, rather than silently starting over.
  """
  found = _newest_that_restores(
      mngr, lambda step: mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore())),
      '; move the damaged ones away to resume from an older one, or use a new --workdir')
  if found is None:
    return None
  step, out = found
  return step, out.state, out.data


def restore_arrays(mngr: ocp.CheckpointManager, keys, sharding):
  """(step, {key: subtree}) of the state's `keys` (e.g. params) from the newest checkpoint that
  restores, each array placed with `sharding`; None when there is no checkpoint.

  Shapes come from the checkpoint's own metadata, so it may hold a different model.
  """
  def restore(step):
    tree = mngr.item_metadata(step)['state'].tree
    # The whole state: a partial restore is not supported by the standard handler.
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                          tree)
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    return {k: {} if out.state.get(k) is None else out.state[k] for k in keys}
  return _newest_that_restores(mngr, restore)


def abstract(state):
  """Shapes, dtypes and shardings of `state`, to restore into the same layout."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
