"""A user's own TFDS dataset, with its own feature names and shapes, trains by config alone."""

import io
import json

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from configs import default
from mmjax.training import train

NUM_CLASSES = 4


class ToyCaptions(tfds.core.GeneratorBasedBuilder):
  """Colour photos with caption token ids and a stored spectrogram; the label is in all three."""
  VERSION = tfds.core.Version('0.1.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'photo': tfds.features.Image(shape=(16, 16, 3)),
        'caption_ids': tfds.features.Tensor(shape=(12,), dtype=np.int32),
        'spectrogram': tfds.features.Tensor(shape=(20, 8), dtype=np.float32),
        'category': tfds.features.ClassLabel(num_classes=NUM_CLASSES),
    }))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(0, 256), 'test': self._generate_examples(1, 64)}

  def _generate_examples(self, seed, n):
    rng = np.random.default_rng(seed)
    for i in range(n):
      label = int(rng.integers(NUM_CLASSES))
      photo = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
      photo[..., label % 3] += np.uint8(150)  # colour channel marks the class
      buf = io.BytesIO()
      Image.fromarray(photo).save(buf, format='PNG')
      length = int(rng.integers(3, 13))
      caption = np.zeros(12, np.int32)
      caption[:length] = rng.integers(5, 30, length)
      caption[0] = 1 + label
      spec = rng.normal(size=(20, 8)).astype(np.float32)
      spec[:, label * 2] += 2.0
      yield i, {'photo': buf.getvalue(), 'caption_ids': caption, 'spectrogram': spec,
                'category': label}


@pytest.mark.slow
def test_user_dataset_trains_by_config(tmp_path):
  data_dir = str(tmp_path / 'tfds')
  ToyCaptions(data_dir=data_dir, file_format='array_record').download_and_prepare()

  config = default.get_config()
  config.dataset.name = 'toy_captions'
  config.dataset.data_dir = data_dir
  config.evals.validation.split = 'test'
  config.dataset.modalities = {
      'image': {'feature': 'photo', 'mean': 0.5, 'std': 0.5},
      'text': {'feature': 'caption_ids', 'max_length': 12},
      'audio': {'feature': 'spectrogram'},
  }
  config.dataset.labels = {'label': 'category'}
  config.tasks = {'label': {'num_classes': NUM_CLASSES, 'weight': 1.0}}
  config.model.frontends = {'audio': {'name': 'identity'}}  # the dataset stores spectrograms
  config.model.encoders = {'image': {'name': 'cnn', 'features': (8, 16)},
                           'text': {'name': 'lstm', 'vocab_size': 32, 'hidden': (16,)},
                           'audio': {'name': 'conv1d', 'features': (16,), 'kernel_sizes': 3}}
  config.model.head = {'hidden': (32,), 'dropout': 0.0}
  config.batch_size = 32
  config.num_train_steps = 40
  config.log_every_steps = config.evals.validation.every_steps = config.checkpoint_every_steps = 20
  config.optimizer.learning_rate = 3e-3

  [test] = train.train_and_evaluate(config, str(tmp_path / 'run'))['test']
  assert test['num_examples'] == 64
  assert test['accuracy'] > 0.6  # chance is 0.25
  # The run records which version of the data it trained on.
  assert json.loads((tmp_path / 'run' / 'datasets.json').read_text()) == {
      'toy_captions': str(ToyCaptions.VERSION)}
