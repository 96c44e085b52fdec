"""TFDS (array_record) + grain input pipeline: no TensorFlow.

Every example the model sees is a dict:
  {'inputs': {modality: array}, 'present': {modality: bool}, 'labels': {task: int32},
   'mask': bool}   # mask is False only for eval padding

The pipeline is index-based: global position i of an (infinite, per-epoch reshuffled) stream is a
pure function of (seed, i). Global batch b holds positions [b*B, (b+1)*B); process p reads the
contiguous block [b*B + p*B/P, b*B + (p+1)*B/P), so the global batch is the same rows in the same
order for any number of processes, and resuming is just restoring the iterator's position.
With `dataset.one_example_per_pair`, the stream is `OneExamplePerPair`'s, in which no global batch
holds two examples of one pair. Building the datasets it reads is mmjax.data.datasets.
"""

import dataclasses
import functools
import itertools
import json
import os
import sys
from typing import Any, Iterator

import grain
import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from mmjax.data import datasets
from mmjax.data import preprocess
from mmjax import rng
from mmjax.errors import UserError

def load_source(name: str, config, split: str | None = None) -> Any:
  """split → random-access source of dataset `name` (config.dataset's data and raw dirs); with
  `split`, that split's source."""
  data_dir = datasets.data_dir_path(config.dataset.get('data_dir') or os.environ.get('TFDS_DATA_DIR'))
  if name.partition('/')[0] in datasets.builders():
    return datasets.prepare(name, data_dir, config.dataset.get('raw_data_dir')).as_data_source(
        split)
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # pylint: disable=broad-except  (TFDS raises several kinds)
    raise UserError(
        f'dataset {name!r} not found ({type(e).__name__}); set dataset.name to one of '
        f'{sorted(datasets.builders())} or to a TFDS dataset prepared as array_record under '
        'dataset.data_dir') from None


class Examples:
  """Maps raw TFDS examples of one split to model examples (see module docstring).

  `features`: {modality: fn} for modalities joined by id whose examples are to hold features, not
  the stored values: fn maps the whole preprocessed table (one row per id) to a feature table,
  computed once, here (mmjax.training.features: a fixed front end), not in a reader thread.
  """

  def __init__(self, config: ml_collections.ConfigDict, split: str,
               features: dict[str, Any] | None = None):
    self.config = config.dataset
    sources = load_source(self.config.name, config)
    base, bracket, _ = split.partition('[')
    if base not in sources:
      raise UserError(f'dataset {self.config.name!r} has no split {base!r}; '
                      f'splits: {sorted(sources)}')
    self.source = sources[base]
    if bracket:  # a slice in TFDS's syntax: 'test[:1000]', 'train[10%:]'
      try:
        self.source = load_source(self.config.name, config, split)
      except (AssertionError, ValueError) as e:
        reason = str(e).splitlines()[0].rstrip('.')
        raise UserError(f'split {split!r}: {reason}; write a slice as TFDS does, e.g. '
                        f'{base}[:1000] or {base}[10%:]') from None
    if len(self.source) == 0:
      raise UserError(f'split {split!r} of dataset {self.config.name!r} is empty')
    self._root_config = config
    self._joins = dict(self.config.get('joins', {}))
    self._features = dict(features or {})
    unjoined = set(self._features) - set(self._joins)
    if unjoined:
      raise ValueError(f'features for {sorted(unjoined)}, which are not joined by id')
    # Per modality: (preprocessing fn, its settings, the raw feature, the join key or None), read
    # once here: a ConfigDict lookup per example cost as much as decoding it.
    self._modalities = {}
    for modality, mcfg in self.config.modalities.items():
      fn = preprocess.PREPROCESSORS.get(mcfg.get('kind', modality),
                                        f'dataset.modalities.{modality}')
      key = self._joins[modality].key if modality in self._joins else None
      self._modalities[modality] = (fn, mcfg.to_dict(), mcfg.feature, key)
    self._labels = dict(self.config.labels)
    # A feature naming the pair an example belongs to (AV-MNIST: `audio_id`, the recording its
    # image is paired with), for losses whose positives are the examples of one pair.
    self._pair_id = self.config.get('pair_id') or None
    if self._features:  # computed now, once, not by each reader thread on its first example
      self.tables  # pylint: disable=pointless-statement

  @functools.cached_property
  def tables(self) -> dict[str, np.ndarray]:
    """Modalities stored once and joined by id (e.g. AV-MNIST audio, one row per recording),
    read on the first example: counting a split's examples does not read every recording."""
    tables = {}
    for m, join in self._joins.items():
      table = join_table(load_source(join.dataset, self._root_config), join.id, join.feature)
      if m in self._features:
        fn, mcfg, _, _ = self._modalities[m]
        table = self._features[m](np.stack([fn(row, mcfg) for row in table]))
      tables[m] = table
    return tables

  def __len__(self):
    return len(self.source)

  def pair_ids(self) -> np.ndarray:
    """Every example's pair id (the `dataset.pair_id` feature), in index order."""
    if not self._pair_id:
      raise UserError(ONE_PER_PAIR_NEEDS_PAIR_ID)
    return self.integer_features({'dataset.pair_id': self._pair_id})['dataset.pair_id']

  def integer_features(self, features: dict[str, str]) -> dict[str, np.ndarray]:
    """{field: every example's value of the feature `field` names, in index order, as integers},
    for `features` = {config field: feature} (the field names the feature in the error line).
    Reads every record once, a chunk at a time: AV-MNIST's 55,000 training records take ~8 s on
    2 busy cores, mostly decoding their images."""
    for field, feature in features.items():
      self.check_feature(feature, field)
    values = {field: np.empty(len(self.source), np.int64) for field in features}
    for start in range(0, len(self.source), 4096):
      rows = self.source.__getitems__(range(start, min(start + 4096, len(self.source))))
      for field, feature in features.items():
        values[field][start:start + len(rows)] = [int(row[feature]) for row in rows]
    return values

  def check_feature(self, feature: str, field: str) -> None:
    """A one-line error unless the records hold `feature` (read from the first)."""
    if feature not in self.source[0]:
      raise UserError(f'{field}={feature!r} is not a feature of {self.config.name!r} '
                      f'(features: {sorted(self.source[0])})')

  def __call__(self, index: int, mask: bool = True) -> dict:
    return self._example(self.source[index], mask)

  def batch(self, indices, mask=None) -> dict:
    """The examples at `indices`, stacked as a batch (what grain's `batch` of `__call__` gives),
    their records read in one call: TFDS's `__getitems__` reads them in parallel, about three
    times faster than one at a time. `mask`: per example (default: all True)."""
    indices = [int(i) for i in indices]
    mask = np.ones(len(indices), bool) if mask is None else np.asarray(mask, bool)
    rows = [self._example(raw, m) for raw, m in zip(self.source.__getitems__(indices), mask)]
    return jax.tree.map(lambda *xs: np.stack(xs), *rows)

  def _example(self, raw, mask) -> dict:
    inputs = {}
    for modality, (fn, mcfg, feature, key) in self._modalities.items():
      if key is None:
        inputs[modality] = fn(raw[feature], mcfg)
      elif modality in self._features:  # preprocessed when its table was computed
        inputs[modality] = self.tables[modality][int(raw[key])]
      else:
        inputs[modality] = fn(self.tables[modality][int(raw[key])], mcfg)
    example = {
        'inputs': inputs,
        'present': {m: np.bool_(True) for m in inputs},
        'labels': {t: np.int32(raw[feature]) for t, feature in self._labels.items()},
        'mask': np.bool_(mask),
    }
    if self._pair_id:
      example['pair_id'] = np.int32(raw[self._pair_id])
    return example


def joined_modalities(config) -> set[str]:
  """The modalities `config.dataset` stores once per id and joins to its examples."""
  return set(config.dataset.get('joins', {}))


def join_table(sources: dict[str, Any], id_feature: str, feature: str) -> np.ndarray:
  """`feature` of every example in every split, as one array indexed by `id_feature`."""
  rows = {}
  for source in sources.values():
    for ex in source.__getitems__(range(len(source))):
      rows[int(ex[id_feature])] = np.asarray(ex[feature])
  first = next(iter(rows.values()))
  table = np.zeros((max(rows) + 1,) + first.shape, first.dtype)
  for k, v in rows.items():
    table[k] = v
  return table


class ProcessBlocks(grain.MapDataset):
  """Process p's share of every global batch: a contiguous block of B/P positions."""

  def __init__(self, parent: grain.MapDataset, global_batch: int, index: int, count: int):
    super().__init__(parent)
    self._global, self._local, self._index = global_batch, global_batch // count, index
    self._length = sys.maxsize if len(parent) >= sys.maxsize else len(parent) // count

  def __len__(self):
    return self._length

  def __getitem__(self, k):
    if isinstance(k, slice):
      return self.slice(k)
    batch, j = divmod(k, self._local)
    return self._parent[batch * self._global + self._index * self._local + j]


ONE_PER_PAIR_NEEDS_PAIR_ID = (
    'dataset.one_example_per_pair=True needs dataset.pair_id, the feature naming the pair each '
    "example belongs to (AV-MNIST: 'audio_id'); set it, or set one_example_per_pair=False")


class OneExamplePerPair(grain.MapDataset):
  """Position → example index of an endless stream in which no global batch holds two examples
  with one pair id.

  Each epoch takes a permutation of the examples seeded by (seed, epoch) and fills batches of
  `global_batch` in its order; an example whose pair is already in the batch being filled waits,
  and waiting examples go first into the next batch. Every epoch is cut to the same
  n // global_batch - 1 full batches, so position i's epoch is i // (that many positions) and the
  stream is a pure function of (seed, i) that computes no earlier epoch. An epoch leaves out
  fewer than 2 * global_batch examples, drawn anew each epoch.
  """

  def __init__(self, pair_ids, global_batch: int, seed: int):
    super().__init__()
    self._ids = np.asarray(pair_ids, np.int64)
    self._global, self._seed = global_batch, seed
    self.batches_per_epoch = len(self._ids) // global_batch - 1
    if self.batches_per_epoch < 1:
      raise UserError(f'dataset.one_example_per_pair: {len(self._ids)} examples make no full '
                      f'epoch of batches of {global_batch} (it needs {2 * global_batch}); lower '
                      'batch_size')
    self._cache = {}
    self.epoch_order(0)  # an epoch that cannot be filled fails here, not in a reader thread

  def __len__(self):
    return sys.maxsize

  def __str__(self):
    return f'OneExamplePerPair(n={len(self._ids)}, global_batch={self._global}, seed={self._seed})'

  def __getitem__(self, k):
    if isinstance(k, slice):
      return self.slice(k)
    epoch, offset = divmod(k, self.batches_per_epoch * self._global)
    return int(self.epoch_order(epoch)[offset])

  def epoch_order(self, epoch: int) -> np.ndarray:
    """The example indices of `epoch`'s positions, computed once: reader threads straddle at most
    two epochs, so those next to `epoch` stay cached. Threads that compute one epoch at once
    compute the same array."""
    order = self._cache.get(epoch)
    if order is None:
      order = self._fill(epoch)
      self._cache = {e: o for e, o in self._cache.items() if abs(e - epoch) == 1} | {epoch: order}
    return order

  def _fill(self, epoch: int) -> np.ndarray:
    ids = self._ids.tolist()  # Python ints: hashing numpy scalars is several times slower
    rest = iter(np.random.default_rng((self._seed, epoch)).permutation(len(ids)).tolist())
    order, waiting = [], []
    for b in range(self.batches_per_epoch):
      batch, used, kept = [], set(), []
      candidates = itertools.chain(waiting, rest)  # `rest` is drawn on once `waiting` is used up
      offered = 0
      while len(batch) < self._global:
        k = next(candidates, None)
        if k is None:
          _, counts = np.unique(self._ids, return_counts=True)
          raise UserError(
              f'dataset.one_example_per_pair: epoch {epoch} fills only {b} of its '
              f'{self.batches_per_epoch} batches of {self._global} with no pair twice '
              f'({len(ids)} examples, up to {counts.max()} of one pair); lower batch_size, or set '
              'one_example_per_pair=False')
        offered += 1
        if ids[k] in used:
          kept.append(k)
        else:
          batch.append(k)
          used.add(ids[k])
      waiting = kept + waiting[offered:]  # those not offered wait on, in order
      order += batch
    return np.asarray(order, np.int64)


def local_batch_size(global_batch: int) -> int:
  count, devices = jax.process_count(), jax.local_device_count()
  if global_batch <= 0 or global_batch % (count * devices):
    raise UserError(
        f'batch_size={global_batch} must be a positive multiple of the device count '
        f'{jax.device_count()} ({count} process(es) x {devices} local devices); '
        'change --config.batch_size')
  return global_batch // count


def read_threads(config) -> int:
  """Threads that read batches ahead: `dataset.read_threads`, or 0 for one per core (at most
  16). Grain's default, 16 threads and 500 elements ahead, is sized for a large host: on a 2-core
  machine its readers took a core from the train step (the main job's loop ran at 276 examples/s
  with it, 471 with 2 threads and 4 batches ahead, the step alone at ~540), and 500 batches ahead
  held gigabytes."""
  threads = config.dataset.get('read_threads', 0)
  if threads > 0:
    return threads
  cores = (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')  # not on macOS
           else os.cpu_count() or 1)
  return min(16, cores)


def _iterate(ds: grain.MapDataset, config) -> grain.DatasetIterator:
  threads = read_threads(config)
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                               prefetch_buffer_size=2 * threads))
  workers = config.dataset.get('num_workers', 0)
  if workers:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(it_ds)


def train_iterator(config, features: dict[str, Any] | None = None) -> grain.DatasetIterator:
  """An endless iterator of this process's share of each global training batch (`features`: as
  `Examples` takes them).

  Its `get_state()` / `set_state()` position is what checkpoints store.
  """
  examples = train_examples(config, features)
  local = local_batch_size(config.batch_size)
  if config.dataset.get('one_example_per_pair', False):
    ds = OneExamplePerPair(examples.pair_ids(), config.batch_size, rng.shuffle_seed(config))
  else:
    ds = grain.MapDataset.range(len(examples)).shuffle(seed=rng.shuffle_seed(config)).repeat()
  ds = ProcessBlocks(ds, config.batch_size, jax.process_index(), jax.process_count())
  ds = ds.batch(local, drop_remainder=True).map(examples.batch)
  return _iterate(ds, config)


@dataclasses.dataclass
class EvalData:
  """A split for evaluation: every example exactly once, the last batch padded and masked."""
  examples: Examples
  config: Any

  @property
  def num_examples(self) -> int:
    return len(self.examples)

  def __iter__(self) -> Iterator[dict]:
    n, batch = len(self.examples), self.config.batch_size
    local = local_batch_size(batch)
    padded = -(-n // batch) * batch
    ds = ProcessBlocks(grain.MapDataset.range(padded), batch, jax.process_index(),
                       jax.process_count())
    ds = ds.batch(local).map(lambda i: self.examples.batch(np.minimum(i, n - 1), mask=i < n))
    it = _iterate(ds, self.config)
    try:
      yield from it
    finally:
      it.close()  # stops grain worker processes now, not at interpreter exit


def preprocessing(config, modality: str) -> dict | None:
  """How `config`'s dataset preprocesses `modality` (its `dataset.modalities` entry, as plain JSON
  values, the form config.json stores), or None where the dataset lacks it: what a run consuming
  another run's model (a distillation teacher) must match."""
  mcfg = (config.dataset.get('modalities') or {}).get(modality)
  if mcfg is None:
    return None
  return json.loads(json.dumps(mcfg.to_dict() if hasattr(mcfg, 'to_dict') else dict(mcfg)))


def pixel_scale(config) -> float:
  """Model-input units per pixel unit of [0, 1]: images are divided by dataset.modalities.image.std
  (mmjax.data.preprocess.image), so noise given in pixels is scaled by its inverse."""
  image = (config.dataset.get('modalities') or {}).get('image') or {}
  std = float(image.get('std', 0.5))
  return 1.0 / std if std else float('inf')  # std 0 makes the images themselves non-finite


def train_examples(config, features: dict[str, Any] | None = None) -> Examples:
  """The training split's examples (`dataset.train_split`: a split or a TFDS slice of one)."""
  return Examples(config, config.dataset.train_split, features)


def epoch_size(config) -> tuple[int, int]:
  """(global batch size, examples in the training split): what epochs are counted in."""
  return config.batch_size, len(train_examples(config))


def eval_data(config, split: str) -> EvalData:
  return EvalData(Examples(config, split), config)
