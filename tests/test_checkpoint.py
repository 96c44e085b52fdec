"""mmjax.checkpoint on Orbax's current API: keep-the-newest, read-only readers, partial restores."""

import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax import checkpoint
from mmjax.errors import UserError


class State(flax.struct.PyTreeNode):
  step: Any
  params: Any
  objective_params: Any
  batch_stats: Any
  opt_state: Any


def _state(scale=1.0, width=3):
  return State(step=jnp.int32(7), params={'dense': {'kernel': scale * jnp.ones((2, width))}},
               objective_params={'temperature': jnp.float32(scale)}, batch_stats={},
               opt_state={'mu': {'dense': {'kernel': jnp.zeros((2, width))}}})


def _save(directory, steps, max_to_keep=None, **kwargs):
  saver = checkpoint.Saver(checkpoint.manager(directory, max_to_keep))
  try:
    for step in steps:
      saver.save(step, _state(float(step), **kwargs),
                 {'input': {'position': step}, 'pending_metrics': []})
    saver.wait()
  finally:
    saver.close()


def test_keeps_the_newest_and_lists_finished_steps(tmp_path):
  _save(tmp_path / 'ckpt', [1, 2, 3, 4], max_to_keep=2)
  assert checkpoint.steps_on_disk(tmp_path / 'ckpt') == [3, 4]
  (tmp_path / 'ckpt' / '5.orbax-checkpoint-tmp').mkdir()  # a save cut short
  assert checkpoint.steps_on_disk(tmp_path / 'ckpt') == [3, 4]
  assert checkpoint.steps_on_disk(tmp_path / 'nothing') == []


def test_restore_latest_into_the_same_layout(tmp_path):
  _save(tmp_path / 'ckpt', [1, 2])
  mngr = checkpoint.manager(tmp_path / 'ckpt', None)
  try:
    step, state, data = checkpoint.restore_latest(mngr, checkpoint.abstract(_state()))
  finally:
    mngr.close()
  assert step == 2 and data == {'input': {'position': 2}, 'pending_metrics': []}
  assert isinstance(state, State)
  np.testing.assert_array_equal(state.params['dense']['kernel'], 2 * np.ones((2, 3)))
  assert float(state.objective_params['temperature']) == 2.0


def test_read_only_reader_creates_and_cleans_nothing(tmp_path):
  mngr = checkpoint.manager(tmp_path / 'absent', None, create=False)
  try:
    assert checkpoint.restore_arrays(mngr, ('params',), None) is None
  finally:
    mngr.close()
  assert not (tmp_path / 'absent').exists()

  _save(tmp_path / 'ckpt', [1])
  leftover = tmp_path / 'ckpt' / '2.orbax-checkpoint-tmp'
  leftover.mkdir()
  checkpoint.manager(tmp_path / 'ckpt', None, create=False).close()
  assert leftover.exists()


def test_restore_arrays_reads_only_the_fields_asked_for(tmp_path):
  """Shapes come from the checkpoint's metadata, so it may hold another model's."""
  _save(tmp_path / 'ckpt', [3], width=5)
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  mngr = checkpoint.manager(tmp_path / 'ckpt', None, create=False)
  try:
    step, arrays = checkpoint.restore_arrays(mngr, ('params', 'batch_stats', 'missing'), sharding)
  finally:
    mngr.close()
  assert step == 3 and set(arrays) == {'params', 'batch_stats', 'missing'}
  assert arrays['batch_stats'] == {} and arrays['missing'] == {}
  np.testing.assert_array_equal(arrays['params']['dense']['kernel'], 3 * np.ones((2, 5)))

  mngr = checkpoint.manager(tmp_path / 'ckpt', None, create=False)
  try:
    tree = checkpoint.saved_state_tree(mngr, 3)
  finally:
    mngr.close()
  assert set(tree) == {'step', 'params', 'objective_params', 'batch_stats', 'opt_state'}
  assert tree['params']['dense']['kernel'].shape == (2, 5)


class StateWithAverage(State):
  ema_params: Any = flax.struct.field(default_factory=dict)


def test_a_state_field_added_since_the_checkpoint_restores_empty(tmp_path):
  """A checkpoint from before the state had ema_params resumes a run that keeps none, and not
  one that keeps a moving average."""
  _save(tmp_path / 'ckpt', [2])
  fresh = _state()
  mngr = checkpoint.manager(tmp_path / 'ckpt', None)
  try:
    without = StateWithAverage(**vars(fresh))
    step, state, _ = checkpoint.restore_latest(mngr, checkpoint.abstract(without))
    assert step == 2 and isinstance(state, StateWithAverage) and state.ema_params == {}
    np.testing.assert_array_equal(state.params['dense']['kernel'], 2 * np.ones((2, 3)))
    with pytest.raises(UserError, match='ema_params/dense/kernel is not in the checkpoint'):
      checkpoint.restore_latest(mngr, checkpoint.abstract(without.replace(
          ema_params=fresh.params)))
  finally:
    mngr.close()


def test_restore_model_gives_the_moving_average_where_there_is_one(tmp_path):
  _save(tmp_path / 'plain', [1])
  saver = checkpoint.Saver(checkpoint.manager(tmp_path / 'averaged', None))
  try:
    plain = _state(1.0)
    saver.save(1, StateWithAverage(**vars(plain), ema_params=_state(5.0).params), {})
    saver.wait()
  finally:
    saver.close()
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  for name, value in (('plain', 1.0), ('averaged', 5.0)):
    mngr = checkpoint.manager(tmp_path / name, None, create=False)
    try:
      step, saved = checkpoint.restore_model(mngr, sharding)
    finally:
      mngr.close()
    assert step == 1 and saved['batch_stats'] == {}
    np.testing.assert_array_equal(saved['params']['dense']['kernel'], value * np.ones((2, 3)))


def test_no_checkpoint_restores(tmp_path):
  _save(tmp_path / 'ckpt', [1])
  for f in (tmp_path / 'ckpt' / '1').rglob('*'):
    if f.is_file() and f.stat().st_size > 100:
      f.write_bytes(f.read_bytes()[:50])
  mngr = checkpoint.manager(tmp_path / 'ckpt', None)
  try:
    with pytest.raises(UserError, match=r'no checkpoint in \S+ restores \(steps \[1\]\)'):
      checkpoint.restore_latest(mngr, checkpoint.abstract(_state()))
  finally:
    mngr.close()


def test_a_save_that_fails_in_the_background_is_one_line_and_keeps_the_earlier_one(
    tmp_path, small_disk, monkeypatch):
  """A write that runs out of space (past the free-space check, as when another process fills
  the disk) fails in Orbax's background thread: `check` turns it into one UserError naming the
  step, the directory and the cause, and the checkpoint before it stays whole."""
  mount, _ = small_disk
  directory = mount('2m') / 'checkpoints'
  monkeypatch.setattr(checkpoint, '_check_free_space', lambda *args: None)
  saver = checkpoint.Saver(checkpoint.manager(directory, None))
  try:
    saver.save(1, {'w': jnp.ones((100,))}, {'position': 1})
    saver.wait()
    # Random values do not compress: 4 MiB cannot fit in what is left of 2 MiB.
    saver.save(2, {'w': jax.random.normal(jax.random.key(0), (1024, 1024))}, {'position': 2})
    deadline, error = time.time() + 120, None
    while error is None and time.time() < deadline:
      try:
        saver.check()
      except UserError as e:
        error = str(e)
      time.sleep(0.05)
  finally:
    saver.close()
  assert error == (f'saving the checkpoint of step 2 in {directory} failed: No space left on '
                   'device; the checkpoints saved before it are intact (steps 1): fix the cause '
                   'and rerun the same command to resume'), error
  reader = checkpoint.manager(directory, None, create=False)
  try:
    assert checkpoint.steps_on_disk(directory) == [1]
    assert checkpoint.restore_data(reader, 1) == {'position': 1}
  finally:
    reader.close()


def test_a_save_that_cannot_fit_is_refused_before_writing(tmp_path, small_disk):
  mount, _ = small_disk
  directory = mount('1m')
  saver = checkpoint.Saver(checkpoint.manager(directory / 'checkpoints', None))
  try:
    with pytest.raises(UserError) as e:
      saver.save(3, {'w': jnp.ones((1024, 1024))}, {})
  finally:
    saver.close()
  assert str(e.value).startswith(
      f'cannot save the checkpoint of step 3 in {directory / "checkpoints"}: '), e.value
  assert str(e.value).endswith('MiB; no checkpoint was saved before it: free space and rerun the '
                               'same command to resume'), e.value
  assert not list((directory / 'checkpoints').iterdir())
