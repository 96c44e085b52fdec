"""The `pid` evaluator: the partial information decomposition of (x1, x2; label) and of
(x1, x2; the model's prediction), x1 and x2 a discrete feature per modality."""

import json
import types
import pathlib

import numpy as np
import pytest

from mmjax import evaluators
from mmjax import parallel
from mmjax.data import input_pipeline
from mmjax.data import synthetic
from mmjax.errors import UserError
from mmjax.evaluators import interactions
from mmjax.training import train
from tests.conftest import tiny_config


class _Source(list):
  def __getitems__(self, indices):
    return [self[i] for i in indices]


class _Split:
  """A split of hand-made examples: their features (`examples`, read as the pipeline's Examples
  reads them) and, in padded and masked batches, the rows the model's predictions come from."""

  class _Examples(input_pipeline.Examples):
    def __init__(self, features: dict):  # pylint: disable=super-init-not-called
      n = len(features['label'])
      self.source = _Source({k: int(v[i]) for k, v in features.items()} for i in range(n))
      self.config = types.SimpleNamespace(name='hand-made')

  def __init__(self, features: dict, batch: int = 64):
    n = len(features['label'])
    self.num_examples, self.batch, self.features = n, batch, features
    self.examples = self._Examples(features)

  def __iter__(self):
    n = self.num_examples
    for start in range(0, n, self.batch):
      i = np.arange(start, start + self.batch)
      yield {'mask': i < n, 'index': np.minimum(i, n - 1)}


def _evaluator(split, predicted, objective='classification', **cfg):
  """A pid evaluator whose 'model' predicts `predicted[index]` for each example."""
  def predict(state, batch):
    del state
    index = np.asarray(batch['index'])
    return {'count': np.asarray(batch['mask']).sum()}, {
        'mask': batch['mask'], 'predictions/label': predicted[index],
        'labels/label': split.features['label'][index]}

  fns = evaluators.Functions(
      mesh=parallel.make_mesh(), metrics=None, features=None, data=lambda name: split,
      modalities=('image', 'audio'), num_classes={'label': 10}, add_noise=None,
      objective_name=objective, predict=predict if objective == 'classification' else None)
  cfg = {'type': 'pid', 'split': 'test',
         'sources': {'image': 'image_latent', 'audio': 'audio_latent'}, **cfg}
  return interactions.Interactions('pid', cfg, fns)


@pytest.fixture(scope='module')
def parity_split():
  """x1, x2 uniform bits, label their XOR (the synergy probe's latents)."""
  rng = np.random.default_rng(0)
  x1, x2 = rng.integers(0, 2, size=(2, 4000))
  return _Split({'image_latent': x1, 'audio_latent': x2, 'label': (x1 + x2) % 2})


def test_a_model_that_computes_the_xor_shows_the_datas_synergy(parity_split):
  f = parity_split.features
  labels, predictions, _ = (
      {k: v for k, v in line.items() if k != 'condition'}
      for line in _evaluator(parity_split, f['label']).run(None))
  assert labels.pop('chance') == pytest.approx(0.5, abs=0.02)  # labels 0 and 1 alike
  assert {k: predictions[k] for k in labels} == labels  # predictions equal to the labels
  for line in (labels, predictions):
    assert line['synergy'] == pytest.approx(1.0, abs=0.03)  # the bias of 4,000 examples
    assert line['redundancy'] + line['unique_image'] + line['unique_audio'] < 0.03
    assert line['num_examples'] == 4000
  assert predictions['accuracy'] == 1.0


def test_a_model_that_reads_one_modality_shows_its_uniqueness_not_synergy(parity_split):
  """Predicting the image's parity (what one modality alone can do at best here) gets half the
  examples right and carries one bit unique to the image, none of the label's synergy."""
  f = parity_split.features
  [_, line, _] = _evaluator(parity_split, f['image_latent'] % 2).run(None)
  assert line['unique_image'] == pytest.approx(1.0, abs=0.03)
  assert line['synergy'] + line['unique_audio'] + line['redundancy'] < 0.03
  assert line['accuracy'] == pytest.approx(0.5, abs=0.03)
  # A prediction independent of both sources carries nothing.
  rng = np.random.default_rng(1)
  [_, noise, _] = _evaluator(parity_split, rng.integers(0, 2, size=4000)).run(None)
  assert noise['total'] < 0.03


def test_a_sum_of_per_modality_scores_reaches_the_or_and_half_a_bit_of_synergy(parity_split):
  """The best an additive model (decision fusion) can do on the XOR: the OR of the parities, 75%
  right, with an OR's decomposition (0.31 bits redundant, 0.5 synergistic), between one
  modality's 50% and the XOR's 100%."""
  f = parity_split.features
  [_, line, _] = _evaluator(parity_split, (f['image_latent'] % 2) | (f['audio_latent'] % 2)).run(
      None)
  assert line['accuracy'] == pytest.approx(0.75, abs=0.02)
  assert line['synergy'] == pytest.approx(0.5, abs=0.03)
  assert line['redundancy'] == pytest.approx(0.311, abs=0.03)


def test_errors_alone_show_in_the_labels_at_the_models_accuracy():
  """On a uniqueness probe, predictions 90% right put spurious synergy into the estimate (the
  data has none): the third line shows how much errors alone put there, so the two compare."""
  rng = np.random.default_rng(2)
  x1, x2 = rng.integers(0, 10, size=(2, 4000))
  split = _Split({'image_latent': x1, 'audio_latent': x2, 'label': x1})
  predicted = np.where(rng.random(4000) < 0.9, x1, (x1 + rng.integers(1, 10, size=4000)) % 10)
  labels, predictions, null = _evaluator(split, predicted).run(None)
  assert null['condition'] == 'labels_at_model_accuracy'
  assert labels['synergy'] < 0.01 and predictions['synergy'] > 0.08
  assert predictions['synergy'] == pytest.approx(null['synergy'], abs=0.05)
  assert predictions['unique_image'] == pytest.approx(null['unique_image'], abs=0.1)
  # As many labels changed as predictions are wrong, each to another class.
  perfect = _evaluator(split, x1).run(None)[2]
  assert {k: perfect[k] for k in labels if k not in ('condition', 'chance')} == {
      k: labels[k] for k in labels if k not in ('condition', 'chance')}


def test_sources_must_name_two_modalities_and_real_features(parity_split):
  with pytest.raises(UserError, match="the pid evaluator needs objective.name='classification'"):
    _evaluator(parity_split, parity_split.features['label'], objective='contrastive')
  with pytest.raises(UserError, match='name two modalities'):
    _evaluator(parity_split, parity_split.features['label'], sources={'image': 'image_latent'})
  with pytest.raises(UserError, match="evals.pid.sources.audio='pitch' is not a feature of"):
    _evaluator(parity_split, parity_split.features['label'],  # before training, not after
               sources={'image': 'image_latent', 'audio': 'pitch'})


def _lines(workdir, split):
  text = (pathlib.Path(workdir) / 'metrics.jsonl').read_text().splitlines()
  return [l for l in map(json.loads, text) if l['split'] == split]


@pytest.mark.slow
def test_a_trained_run_measures_its_predictions_on_the_synergy_probe(tmp_path):
  """End to end on the synthetic synergy probe: the data's decomposition is its exact one (1 bit
  of synergy, nothing else), and the predictions the evaluator decomposes are the model's: their
  accuracy is the test evaluator's on the same split."""
  config = tiny_config(**{'dataset.name': 'synthetic/synergy', 'num_train_steps': 4})
  config.evals.pid = {'type': 'pid', 'split': 'test', 'every_steps': 0,
                      'sources': {'image': 'image_latent', 'audio': 'audio_latent'}}
  train.train_and_evaluate(config, str(tmp_path / 'run'))
  [test] = _lines(tmp_path / 'run', 'test')
  labels, predictions, _ = _lines(tmp_path / 'run', 'pid')
  assert (labels['condition'], predictions['condition']) == ('labels', 'predictions')
  assert labels['num_examples'] == synthetic.PROBE_SPLIT_SIZES['test'] == test['num_examples']
  assert labels['synergy'] == pytest.approx(1.0, abs=0.02)
  assert labels['redundancy'] + labels['unique_image'] + labels['unique_audio'] < 0.02
  assert predictions['accuracy'] == pytest.approx(test['accuracy'], abs=1e-9)
  parts = ('redundancy', 'unique_image', 'unique_audio', 'synergy')
  assert sum(predictions[p] for p in parts) == pytest.approx(predictions['total'], abs=1e-6)


def test_a_pid_line_logs_its_parts_beside_its_accuracy():
  """A line without a loss (the PID's) logs every figure; one with a loss, loss and accuracy."""
  parts = {'condition': 'predictions', 'redundancy': 0.25, 'unique_image': 0.5,
           'unique_audio': 0.0, 'synergy': 1.0, 'total': 1.75, 'accuracy': 0.9,
           'num_examples': 500}
  assert train._log_line('pid', parts, 40) == (
      'pid[predictions]: redundancy 0.2500  unique_image 0.5000  unique_audio 0.0000  '
      'synergy 1.0000  total 1.7500  accuracy 0.9000  on 500 examples (step 40)')
  scored = {'loss': 0.5, 'accuracy': 0.8, 'label/loss': 0.5, 'num_examples': 10}
  assert train._log_line('test', scored, 3) == (
      'test: loss 0.5000  accuracy 0.8000  on 10 examples (step 3)')
