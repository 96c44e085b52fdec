"""Orbax checkpoints of the whole run: train state and the input pipeline's position.

Orbax writes each step into a temporary directory and renames it only when complete, so an
interrupted save never replaces the last good checkpoint; a temporary directory left behind by a
killed process is ignored, and removed when the next manager starts. A latest checkpoint that fails
to restore (e.g. a truncated file) is skipped with a warning in favour of the one before.

Arrays are stored as OCDBT/Zarr through TensorStore and the rest as JSON: no pickles. Directories
are etils.epath paths, so they may be local or on gs:// (TensorStore writes the arrays there with
its own GCS driver). Saving does not depend on the state's field names: the state is saved whole,
and `restore_arrays` restores whichever top-level fields it is asked for; `restore_model` asks
for the model's (params, ema_params, batch_stats).
"""

import contextlib
import dataclasses
import os
import re
import shutil

from absl import logging
import jax
import orbax.checkpoint as ocp

from mmjax import workdir as workdirs
from mmjax.errors import UserError

STATE, DATA = 'state', 'data'


def _handler_registry() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
  """The items of a checkpoint and how each is written and read. Registered up front, so that
  metadata can be read before any save or restore in this process."""
  registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
  state = ocp.StandardCheckpointHandler()
  registry.add(STATE, ocp.args.StandardSave, state)
  registry.add(STATE, ocp.args.StandardRestore, state)
  # The same on-disk format read by the general handler, for restores of part of the state.
  registry.add(STATE, ocp.args.PyTreeRestore, ocp.PyTreeCheckpointHandler())
  data = ocp.JsonCheckpointHandler()
  registry.add(DATA, ocp.args.JsonSave, data)
  registry.add(DATA, ocp.args.JsonRestore, data)
  return registry


def manager(directory, max_to_keep: int | None, create: bool = True) -> ocp.CheckpointManager:
  """A manager that saves (keeping the newest `max_to_keep`, None: all) or, with `create=False`,
  a read-only one: it neither creates the directory nor cleans or deletes anything in it."""
  if create:
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocp.checkpoint_managers.LatestN(n=max_to_keep),
        create=True,
        # A save cut short by a kill leaves `<step>.orbax-checkpoint-tmp`; the next save of that
        # step must not trip over it.
        cleanup_tmp_directories=True)
  else:
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0)
  return ocp.CheckpointManager(workdirs.resolve(directory), options=options,
                               handler_registry=_handler_registry())


def steps_on_disk(directory) -> list[int]:
  """Finished checkpoint steps under `directory`, without creating or cleaning anything."""
  path = workdirs.resolve(directory)
  if not path.is_dir():
    return []
  return sorted(m.step for m in ocp.path.step.standard_name_format().find_all(path))


class Saver:
  """Saves through `mngr`; a save that fails (a full disk, a lost permission, a bucket error)
  stops the run with one UserError naming the step, the directory and the cause, and the
  checkpoints saved before it stay valid for the next run to resume from.

  Orbax writes in a background thread, so a failure surfaces at the next `check` after that
  save has ended (the train loop checks at every log line), at the next save, or at `wait`.
  """

  def __init__(self, mngr: ocp.CheckpointManager):
    self.mngr = mngr
    self._step = None  # the save that may still be running or has not been checked

  def save(self, step: int, state, data_state: dict) -> None:
    self.wait()
    _check_free_space(self.mngr.directory, state, step)
    self._step = step
    with self._failure_as_user_error():
      self.mngr.save(step, args=ocp.args.Composite(**{
          STATE: ocp.args.StandardSave(state), DATA: ocp.args.JsonSave(data_state)}), force=True)

  def check(self) -> None:
    """Raises if the last save has ended in failure; never waits for one still running."""
    if self._step is not None and not self.mngr.is_saving_in_progress():
      self.wait()

  def wait(self) -> None:
    """Waits for the last save to end; raises if it failed."""
    if self._step is not None:
      with self._failure_as_user_error():
        self.mngr.wait_until_finished()
      self._step = None

  def close(self) -> None:
    """Closes the manager; after a failure already raised, without raising it again."""
    try:
      self.mngr.close()
    except Exception:  # pylint: disable=broad-except  (already reported as a UserError)
      if self._step is None:
        raise

  @contextlib.contextmanager
  def _failure_as_user_error(self):
    try:
      yield
    except Exception as e:  # pylint: disable=broad-except  (any storage failure: one line)
      raise UserError(
          f'saving the checkpoint of step {self._step} in {self.mngr.directory} failed: '
          f'{_cause(e)}; {_kept(self.mngr.directory)}: fix the cause and rerun the same command '
          'to resume') from e


def _cause(e: Exception) -> str:
  """The reason in a storage error, e.g. 'No space left on device' for TensorStore's errno 28."""
  text = str(e)
  code = re.search(r"os_error_code='?(\d+)", text)
  if code:
    return os.strerror(int(code.group(1)))
  return f'{type(e).__name__}: {(text.splitlines() or [""])[0][:200]}'


def _check_free_space(directory, state, step: int) -> None:
  """Refuses a save that cannot fit on a local disk, before anything is written (a write that
  runs out of space fails in a background thread, after training has gone on). A checkpoint
  takes at most the state's bytes (the synthetic model's 7.1 MB state wrote 5.6 MB), so this
  asks for that plus 1 MiB."""
  if workdirs.is_remote(directory):
    return
  needed = sum(getattr(x, 'nbytes', 0) for x in jax.tree.leaves(state)) + (1 << 20)
  free = shutil.disk_usage(os.fspath(directory)).free
  if free < needed:
    raise UserError(
        f'cannot save the checkpoint of step {step} in {directory}: {free / 2**20:.1f} MiB free, '
        f'it needs {needed / 2**20:.1f} MiB; {_kept(directory)}: free space and rerun the same '
        'command to resume')


def _kept(directory) -> str:
  kept = steps_on_disk(directory)
  return ('the checkpoints saved before it are intact (steps ' + ', '.join(map(str, kept)) + ')'
          if kept else 'no checkpoint was saved before it')


def _warn_skipped(mngr, step, e):
  logging.warning('checkpoint at step %d in %s does not restore (%s: %s); trying the previous '
                  'one', step, mngr.directory, type(e).__name__,
                  (str(e).splitlines() or [''])[0][:200])


class OtherModel(UserError):
  """The checkpoint is whole but holds arrays this config's state lacks or shapes differently."""


def _differences(saved, target) -> list[str]:
  """Where two states differ in which arrays they hold or their shapes, one line each."""
  def shapes(tree):
    return {jax.tree_util.keystr(path, simple=True, separator='/'): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
  a, b = shapes(saved), shapes(target)
  out = []
  for name in sorted(a.keys() | b.keys(), key=lambda n: (not n.startswith('params'), n)):
    if name not in a:
      out.append(f'{name} is not in the checkpoint')
    elif name not in b:
      out.append(f'{name} is only in the checkpoint')
    elif a[name] != b[name]:
      out.append(f'{name} has shape {a[name]} there but {b[name]} in this config')
  return out


def _newest_that_restores(mngr: ocp.CheckpointManager, restore, hint: str = ''):
  """(step, restore(step)) for the newest step whose restore succeeds, warning about each that
  fails; None when there is no checkpoint, a UserError when none restores."""
  steps = sorted(mngr.all_steps(), reverse=True)
  for step in steps:
    try:
      return step, restore(step)
    except OtherModel:
      raise  # not damage: an older checkpoint of the same run holds the same model
    except Exception as e:  # pylint: disable=broad-except  (any damage: fall back, say so)
      _warn_skipped(mngr, step, e)
  if steps:
    raise UserError(f'no checkpoint in {mngr.directory} restores (steps {steps}){hint}')
  return None


def restore_latest(mngr: ocp.CheckpointManager, abstract_state):
  """(step, state, data_state) of the newest checkpoint that restores, or None if there is none.

  Checkpoints exist but none restores: a UserError, rather than silently starting over.
  """
  def restore(step):
    # A field the state gained after the checkpoint was written restores as its empty value
    # when this run leaves it empty (ema_params without a moving average).
    saved = saved_state_tree(mngr, step)
    fields = {f.name: getattr(abstract_state, f.name) for f in dataclasses.fields(abstract_state)}
    absent = {k for k, v in fields.items() if k not in saved and not jax.tree.leaves(v)}
    target = {k: v for k, v in fields.items() if k not in absent} if absent else abstract_state
    differences = _differences({k: v for k, v in saved.items() if k not in absent}, target)
    if differences:
      raise OtherModel(
          f'the checkpoint at step {step} in {mngr.directory} holds another model or optimizer '
          f'than this config builds ({len(differences)} differences, e.g. {differences[0]}); '
          'rerun with the config that wrote it, or use a new --workdir')
    out = mngr.restore(step, args=ocp.args.Composite(**{
        STATE: ocp.args.StandardRestore(target), DATA: ocp.args.JsonRestore()}))
    state = abstract_state.replace(**out[STATE]) if absent else out[STATE]
    return state, out[DATA]

  found = _newest_that_restores(
      mngr, restore,
      '; move the damaged ones away to resume from an older one, or use a new --workdir')
  if found is None:
    return None
  step, (state, data) = found
  return step, state, data


def restore_data(mngr: ocp.CheckpointManager, step: int) -> dict:
  """The JSON saved beside the state at `step`."""
  return mngr.restore(step, args=ocp.args.Composite(**{DATA: ocp.args.JsonRestore()}))[DATA]


def saved_state_tree(mngr: ocp.CheckpointManager, step: int) -> dict:
  """The saved state's structure at `step`: {field: subtree of array metadata (shape, dtype)}."""
  metadata = mngr.metadata(step).item_metadata[STATE]
  return getattr(metadata, 'tree', metadata)


def restore_arrays(mngr: ocp.CheckpointManager, keys, sharding):
  """(step, {key: subtree}) of the state's top-level fields `keys` (e.g. ('params',
  'batch_stats')) from the newest checkpoint that restores, each array placed with `sharding`;
  None when there is no checkpoint. A key the checkpoint lacks (or saved empty) gives {}.

  Only those fields are read (a partial restore). Shapes come from the checkpoint's own metadata,
  so it may hold a different model.
  """
  def restore(step):
    tree = saved_state_tree(mngr, step)
    wanted = {k: tree[k] for k in keys if tree.get(k) is not None}
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                          wanted)
    out = mngr.restore(step, args=ocp.args.Composite(**{STATE: ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True)}))[STATE]
    return {k: {} if out.get(k) is None else out[k] for k in keys}
  return _newest_that_restores(mngr, restore)


def restore_model(mngr: ocp.CheckpointManager, sharding):
  """(step, {'params', 'batch_stats'}) of the model as the run evaluated it: its parameters'
  moving average where it kept one (config.ema_decay), else its parameters."""
  restored = restore_arrays(mngr, ('params', 'ema_params', 'batch_stats'), sharding)
  if restored is None:
    return None
  step, saved = restored
  return step, {'params': saved['ema_params'] or saved['params'],
                'batch_stats': saved['batch_stats']}


def abstract(state):
  """Shapes, dtypes and shardings of `state`, to restore into the same layout."""
  return jax.tree.map(ocp.tree.to_shape_dtype_struct, state)
