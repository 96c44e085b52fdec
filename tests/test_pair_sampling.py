"""dataset.one_example_per_pair: training batches in which no pair id occurs twice, the stream
still a pure function of (seed, position), split into process blocks and resumable; without it,
the stream the pipeline has always read."""

import time

import grain
import jax
import numpy as np
import pytest

from configs import contrastive as contrastive_config
from mmjax.data import input_pipeline
from mmjax.errors import UserError
from mmjax.training import config_checks, train
from tests.conftest import needs_raw_data, small_config


def _skewed_ids(n=2000, seed=0):
  """Pair ids of `n` examples, Zipf-like: pair k has ~120/(k+1) examples, then singletons."""
  counts = [max(1, 120 // (k + 1)) for k in range(n)]
  ids = np.repeat(np.arange(n), counts)[:n]
  return np.random.default_rng(seed).permutation(ids)


def _epochs(ds, global_batch, epochs):
  """[epoch][batch] → the example indices of that global batch."""
  per_epoch = ds.batches_per_epoch
  return [[[ds[(e * per_epoch + b) * global_batch + j] for j in range(global_batch)]
           for b in range(per_epoch)] for e in range(epochs)]


def _pair_config(**overrides):
  """The synthetic dataset's first 400 examples, their label the pair id (10 pairs, up to 59
  examples of one), one example of a pair per batch of 4: 99 batches an epoch."""
  config = small_config(batch_size=4, **{'dataset.train_split': 'train[:400]', **overrides})
  config.dataset.pair_id = 'label'
  config.dataset.one_example_per_pair = True
  return config


def test_no_global_batch_holds_one_pair_twice_for_skewed_ids():
  ids, batch = _skewed_ids(), 16
  assert np.bincount(ids).max() == 120  # ~ one example of pair 0 in every batch
  ds = input_pipeline.OneExamplePerPair(ids, batch, seed=0)
  for epoch in _epochs(ds, batch, 4):
    for rows in epoch:
      assert len(rows) == batch and len(set(ids[rows].tolist())) == batch


def test_each_epoch_visits_each_example_at_most_once_and_all_but_a_few():
  ids, batch = _skewed_ids(), 16
  ds = input_pipeline.OneExamplePerPair(ids, batch, seed=0)
  assert ds.batches_per_epoch == len(ids) // batch - 1
  left_out = []
  for epoch in _epochs(ds, batch, 4):
    seen = [k for rows in epoch for k in rows]
    assert len(set(seen)) == len(seen) == ds.batches_per_epoch * batch
    assert set(seen) <= set(range(len(ids)))
    left_out.append(set(range(len(ids))) - set(seen))
    assert len(left_out[-1]) < 2 * batch
  assert len(set.union(*left_out)) > len(left_out[0])  # not the same examples every epoch


def test_the_stream_is_a_pure_function_of_seed_and_position():
  ids, batch = _skewed_ids(), 16
  stream = lambda seed: sum(_epochs(input_pipeline.OneExamplePerPair(ids, batch, seed), batch, 3),
                            [])
  first = stream(0)
  assert stream(0) == first
  assert stream(1) != first
  per_epoch = len(first) // 3
  assert first[:per_epoch] != first[per_epoch:2 * per_epoch]  # each epoch reshuffled
  # A position read cold, without the epochs before it computed, is the same example.
  late = 2 * per_epoch * batch + 5
  assert input_pipeline.OneExamplePerPair(ids, batch, 0)[late] == first[2 * per_epoch][5]


def test_a_process_block_is_its_slice_of_the_global_batch():
  ids, batch, count = _skewed_ids(), 16, 2
  ds = input_pipeline.OneExamplePerPair(ids, batch, seed=0)
  local = batch // count
  for p in range(count):
    # As train_iterator reads it: process p's blocks, batched.
    blocks = input_pipeline.ProcessBlocks(ds, batch, p, count).batch(local, drop_remainder=True)
    for b in range(ds.batches_per_epoch + 3):  # into the second epoch
      want = [ds[b * batch + p * local + j] for j in range(local)]
      np.testing.assert_array_equal(blocks[b], want)


def test_two_processes_read_the_global_batch_of_one(monkeypatch):
  config = _pair_config()
  whole = input_pipeline.train_iterator(config)
  expected = [next(whole) for _ in range(3)]
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  halves = []
  for p in range(2):
    monkeypatch.setattr(jax, 'process_index', lambda p=p: p)
    it = input_pipeline.train_iterator(config)
    halves.append([next(it) for _ in range(3)])
  for b, batch in enumerate(expected):
    assert len(set(batch['pair_id'].tolist())) == 4
    joined = jax.tree.map(lambda a, c: np.concatenate([a, c]), halves[0][b], halves[1][b])
    for got, want in zip(jax.tree.leaves(joined), jax.tree.leaves(batch)):
      np.testing.assert_array_equal(got, want)


def test_a_resumed_iterator_continues_the_same_batches():
  config = _pair_config()
  it = input_pipeline.train_iterator(config)
  for _ in range(97):
    assert len(set(next(it)['pair_id'].tolist())) == 4
  state = it.get_state()
  expected = [next(it) for _ in range(5)]  # across the first epoch's end
  resumed = input_pipeline.train_iterator(config)
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    assert len(set(got['pair_id'].tolist())) == 4
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_without_the_field_the_stream_is_the_shuffled_range():
  """The default (and one_example_per_pair=False with a pair_id) reads what it always has."""
  for pair_id in (None, 'label'):
    config = small_config(batch_size=256)  # 3,000 examples: batch 11 crosses into epoch 2
    assert config.dataset.one_example_per_pair is False
    if pair_id:
      config.dataset.pair_id = pair_id
    examples = input_pipeline.Examples(config, 'train')
    order = grain.MapDataset.range(len(examples)).shuffle(seed=config.seed).repeat()
    it = input_pipeline.train_iterator(config)
    for b in range(13):
      want = examples.batch([order[b * 256 + j] for j in range(256)])
      for got, expected in zip(jax.tree.leaves(next(it)), jax.tree.leaves(want)):
        np.testing.assert_array_equal(got, expected)


def test_one_example_per_pair_without_a_pair_id_is_one_line(tmp_path):
  config = small_config()
  config.dataset.one_example_per_pair = True
  message = ("dataset.one_example_per_pair=True needs dataset.pair_id, the feature naming the pair "
             "each example belongs to (AV-MNIST: 'audio_id'); set it, or set "
             'one_example_per_pair=False')
  with pytest.raises(UserError) as e:
    config_checks.validate(config)
  assert str(e.value) == message
  with pytest.raises(UserError, match='^dataset.one_example_per_pair=True needs'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()  # refused before anything is written
  config.dataset.pair_id = 'label'
  config_checks.validate(config)


def test_pairs_too_crowded_for_an_epoch_are_one_line():
  ids = np.r_[np.zeros(500, int), np.arange(1, 501)]  # half the examples are one pair
  with pytest.raises(UserError, match=r'^dataset.one_example_per_pair: epoch 0 fills only \d+ of '
                     r'its 99 batches of 10 with no pair twice \(1000 examples, up to 500 of one '
                     r'pair\); lower batch_size, or set one_example_per_pair=False$'):
    input_pipeline.OneExamplePerPair(ids, 10, seed=0)


@needs_raw_data
@pytest.mark.slow  # builds AV-MNIST from the raw files
def test_avmnist_batches_of_256_never_repeat_a_recording():
  config = contrastive_config.get_config('avmnist')
  config.dataset.one_example_per_pair = True
  config_checks.validate(config)
  examples = input_pipeline.Examples(config, 'train')
  start = time.perf_counter()
  ids = examples.pair_ids()
  print(f'read {len(ids)} pair ids in {time.perf_counter() - start:.1f} s')
  assert len(ids) == 55_000 and len(set(ids.tolist())) < len(ids) // 10  # recordings repeat
  batch = config.batch_size
  ds = input_pipeline.OneExamplePerPair(ids, batch, config.seed)
  assert ds.batches_per_epoch == 213
  for e in range(2):
    order = ds.epoch_order(e)
    assert np.array_equal(order, [ds[e * len(order) + k] for k in range(len(order))])
    assert len(set(order.tolist())) == len(order) > len(ids) - 2 * batch
    for b in range(ds.batches_per_epoch):
      assert len(set(ids[order[b * batch:(b + 1) * batch]].tolist())) == batch
  # The ids read are the pair ids the batches carry.
  rows = [ds[k] for k in range(batch)]
  np.testing.assert_array_equal(examples.batch(rows)['pair_id'], ids[rows])
