"""The input pipeline: process shards, exact-once evaluation, resumable order, log-mel front end."""

import re
import subprocess

import grain
import jax
import numpy as np
import pytest

from mmjax.data import datasets, input_pipeline
from mmjax.errors import UserError
from tests.conftest import small_config, start_python


def _ids(batches):
  """Example identities in a stream of batches (the synthetic images are unique per example)."""
  return [hash(x.tobytes()) for b in batches for x in b['inputs']['image']]


def test_dataset_versions_name_every_dataset_a_config_reads():
  """The main job reads AV-MNIST and the FSDD table it joins; each at its builder's version."""
  from configs import late_fusion  # pylint: disable=import-outside-toplevel
  from mmjax.data import avmnist, synthetic  # pylint: disable=import-outside-toplevel
  assert datasets.versions(late_fusion.get_config()) == {
      'avmnist/standard': str(avmnist.Avmnist.VERSION), 'fsdd/standard': str(avmnist.Fsdd.VERSION)}
  # A config whose examples a later version left unchanged records the version they date from,
  # so runs on it stay current (6.0.0 changed only how the audio is stored).
  assert datasets.versions(small_config()) == {'synthetic/redundant': '4.0.0'}
  synergy = small_config(**{'dataset.name': 'synthetic/synergy'})
  assert datasets.versions(synergy) == {'synthetic/synergy': '5.0.0'}
  assert set(synthetic.Synthetic.EXAMPLES_VERSIONS) == {
      c.name for c in synthetic.Synthetic.BUILDER_CONFIGS}
  version = lambda v: tuple(map(int, str(v).split('.')))
  assert all(version(v) <= version(synthetic.Synthetic.VERSION)
             for v in synthetic.Synthetic.EXAMPLES_VERSIONS.values())
  config = small_config()
  config.dataset.name = 'no_such_dataset'
  assert not datasets.versions(config)


def test_process_blocks_are_disjoint_and_cover_each_global_batch():
  ds = grain.MapDataset.range(1000).shuffle(seed=3).repeat()
  global_batch, count = 12, 3
  shards = [input_pipeline.ProcessBlocks(ds, global_batch, p, count) for p in range(count)]
  for b in range(5):
    local = [[s[b * 4 + j] for j in range(4)] for s in shards]
    flat = sum(local, [])
    assert flat == [ds[b * global_batch + k] for k in range(global_batch)]  # same rows, same order
    assert len(set(flat)) == global_batch


def test_epochs_reshuffle_and_cover_the_split():
  ds = grain.MapDataset.range(50).shuffle(seed=0).repeat()
  first, second = [ds[i] for i in range(50)], [ds[i] for i in range(50, 100)]
  assert sorted(first) == sorted(second) == list(range(50))
  assert first != second


def test_eval_visits_every_example_once_with_padding_masked(monkeypatch):
  config = small_config(batch_size=48)  # 1000 test examples: 21 batches, the last one padded
  data = input_pipeline.eval_data(config, 'test')
  seen = []
  for p in range(2):  # two processes, each reading its share
    monkeypatch.setattr(jax, 'process_index', lambda p=p: p)
    monkeypatch.setattr(jax, 'process_count', lambda: 2)
    batches = list(data)
    assert all(len(b['mask']) == 24 for b in batches)
    seen += [x for b in batches for x, m in zip(_ids([b]), b['mask']) if m]
  reference = [hash(data.examples(i)['inputs']['image'].tobytes()) for i in range(1000)]
  assert sorted(seen) == sorted(reference) and len(set(seen)) == 1000


def test_a_split_slice_evaluates_those_rows_of_the_split():
  config = small_config(batch_size=48)
  full = input_pipeline.eval_data(config, 'test').examples
  sliced = input_pipeline.eval_data(config, 'test[-100:]')
  assert sliced.num_examples == 100
  seen = [x for b in sliced for x, m in zip(_ids([b]), b['mask']) if m]
  assert seen == [hash(full(i)['inputs']['image'].tobytes()) for i in range(900, 1000)]
  assert input_pipeline.eval_data(config, 'test[10%:20%]').num_examples == 100
  for bad, message in [('test[:abc]', "split 'test[:abc]': "),
                       ('test[:5000]', 'incompatible with 1000 examples; write a slice'),
                       ('tset[:10]', "has no split 'tset'")]:
    with pytest.raises(UserError, match=re.escape(message)):
      input_pipeline.eval_data(config, bad)


def test_a_batch_read_at_once_is_the_examples_read_one_by_one():
  config = small_config(batch_size=32)
  examples = input_pipeline.Examples(config, 'train')
  indices, mask = np.array([7, 3, 2999, 3]), np.array([True, False, True, True])
  rows = [examples(int(i), mask=m) for i, m in zip(indices, mask)]
  expected = jax.tree.map(lambda *xs: np.stack(xs), *rows)
  got = examples.batch(indices, mask)
  assert jax.tree.structure(got) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
  assert examples.batch(indices)['mask'].all()


def test_read_threads_default_to_the_cores_at_most_16(monkeypatch):
  config = small_config(batch_size=32)
  monkeypatch.setattr(input_pipeline.os, 'sched_getaffinity', lambda _: set(range(64)),
                      raising=False)
  assert input_pipeline.read_threads(config) == 16
  monkeypatch.setattr(input_pipeline.os, 'sched_getaffinity', lambda _: {0, 1}, raising=False)
  assert input_pipeline.read_threads(config) == 2
  config.dataset.read_threads = 5
  assert input_pipeline.read_threads(config) == 5


def test_resumed_iterator_continues_the_same_sequence():
  config = small_config(batch_size=32)
  it = input_pipeline.train_iterator(config)
  for _ in range(100):  # past the first epoch of 3000 examples (~94 batches)
    next(it)
  state = it.get_state()
  expected = _ids(next(it) for _ in range(3))
  resumed = input_pipeline.train_iterator(config)
  resumed.set_state(state)
  assert _ids(next(resumed) for _ in range(3)) == expected


def _reference_power(wave, n_fft: int, hop: int) -> np.ndarray:
  """|STFT|² of periodic-Hann frames, uncentred, in float64: librosa.stft(center=False)'s."""
  frames = np.lib.stride_tricks.sliding_window_view(wave.astype(np.float64), n_fft)[::hop]
  hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
  return np.abs(np.fft.rfft(frames * hann, axis=-1)) ** 2


@pytest.mark.slow
def test_logmel_matches_librosa():
  librosa = pytest.importorskip('librosa')
  from mmjax.models.frontend import LogMel  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  t = np.arange(8000) / 8000
  wave = (np.sin(2 * np.pi * 440 * t) + 0.1 * rng.normal(size=t.shape)).astype(np.float32)
  front = LogMel(sample_rate=8000, n_fft=256, hop_length=80, n_mels=64)
  ours = np.asarray(front.apply({}, wave[None]))[0]
  # librosa's mel filterbank over the power spectrum of periodic-Hann frames, uncentred: what
  # librosa.feature.melspectrogram(center=False) computes, without importing librosa's numba
  # kernels, which compile for ~20 s on a fresh install.
  ref = _reference_power(wave, 256, 80) @ librosa.filters.mel(sr=8000, n_fft=256, n_mels=64).T
  np.testing.assert_allclose(ours, np.log(ref + 1e-6), atol=2e-3, rtol=1e-4)


def test_spectrogram_is_the_112_by_112_grey_picture_of_the_clip():
  """configs/late_fusion.py:multibench's front end: on a 1-s clip at 8 kHz, 112 frames x 112
  bins of librosa's power_to_db (ref the peak, 80 dB range), scaled to [0, 1] by the clip's own
  range with the loudest value 0, as the original AV-MNIST's grey-level spectrograms over 255."""
  librosa = pytest.importorskip('librosa')
  from mmjax.models.frontend import Spectrogram  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  t = np.arange(8000) / 8000
  wave = (np.sin(2 * np.pi * 440 * t) + 0.1 * rng.normal(size=t.shape)).astype(np.float32)
  ours = np.asarray(Spectrogram().apply({}, np.stack([wave, 5 * wave])))
  assert ours.shape == (2, 112, 112) and ours.min() == 0.0 and ours.max() == pytest.approx(1.0)
  db = librosa.power_to_db(_reference_power(wave, 222, 70), ref=np.max, top_db=80.0)
  np.testing.assert_allclose(ours[0], 1 - (db - db.min()) / (db.max() - db.min()), atol=2e-4)
  # The 440 Hz tone is the loudest bin (dark); a louder copy of the clip is the same picture.
  assert ours[0][:, round(440 / 8000 * 222)].mean() < 0.05
  np.testing.assert_allclose(ours[1], ours[0], atol=2e-4)


def test_spec_augment_masks_only_in_training():
  from mmjax.models.frontend import LogMel  # pylint: disable=import-outside-toplevel
  wave = np.random.default_rng(0).normal(size=(2, 4000)).astype(np.float32)
  front = LogMel(n_fft=256, hop_length=80, n_mels=32, time_masks=2, time_mask_width=10,
                 freq_masks=1, freq_mask_width=6)
  clean = front.apply({}, wave)
  masked = front.apply({}, wave, train=True, rngs={'augment': jax.random.key(1)})
  assert clean.shape == masked.shape
  changed = np.asarray(clean != masked)
  assert changed.any() and changed.mean() < 0.6  # some, not all, time-frequency bins replaced
  np.testing.assert_array_equal(clean, front.apply({}, wave, train=False))


def test_per_example_norm_removes_the_recordings_loudness():
  from mmjax.models.frontend import LogMel  # pylint: disable=import-outside-toplevel
  wave = np.random.default_rng(0).normal(size=(2, 4000)).astype(np.float32)
  front = LogMel(n_fft=256, hop_length=80, n_mels=32, per_example_norm=True)
  out = np.asarray(front.apply({}, wave))
  np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(out.std(axis=(1, 2)), 1.0, atol=1e-3)
  # The same recordings 10x quieter and 3x louder: the same input to the encoder.
  np.testing.assert_allclose(out, front.apply({}, wave * np.array([[0.1], [3.0]], np.float32)),
                             atol=1e-3)
  assert not np.allclose(LogMel(n_fft=256, hop_length=80, n_mels=32).apply({}, wave * 0.1),
                         LogMel(n_fft=256, hop_length=80, n_mels=32).apply({}, wave), atol=1)


@pytest.mark.slow
def test_processes_sharing_a_data_dir_build_a_dataset_once(tmp_path):
  """Two processes (hosts on a shared file system, parallel test workers) ask for the same
  unbuilt dataset at the same moment: one builds it, the other waits and reads it."""
  data_dir, ready = tmp_path / 'tfds', tmp_path / 'ready'
  ready.mkdir()
  procs = [start_python(['tests/scripts/prepare_together.py', 'synthetic/unique_image', str(data_dir),
                         str(ready), me, other],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for me, other in (('a', 'b'), ('b', 'a'))]
  outs = [p.communicate() for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  lines = [out.split() for out, _ in outs]
  assert sorted(line.count('built') for line in lines) == [0, 1]
  assert all(line[-2:] == ['examples', '3000'] for line in lines)


def test_preprocessing_is_a_modalitys_settings_as_config_json_stores_them():
  """A distillation teacher's saved settings (lists) equal the live config's (tuples), and a
  modality the dataset lacks is None."""
  import json  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  config = small_config()
  config.dataset.modalities.image.extra = (1, 2)
  saved = ml_collections.ConfigDict(json.loads(config.to_json()))
  assert input_pipeline.preprocessing(config, 'image') == input_pipeline.preprocessing(saved, 'image')
  assert input_pipeline.preprocessing(config, 'image')['extra'] == [1, 2]
  assert input_pipeline.preprocessing(config, 'smell') is None
