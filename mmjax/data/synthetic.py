"""A deterministic tri-modal (image, audio, text) dataset for tests and fusion studies.

Every example is a pure function of (builder config, split, index). The builder configs control
how the label is spread across modalities, the classic way to tell fusion methods apart:

- `redundant`: each modality alone predicts the label (noisily); fusing them helps.
- `unique`: only the image carries the label; audio and text are distractors.
- `synergy`: label = (a + b) mod K with `a` in the image and `b` in the audio, so neither
  modality alone beats chance.
"""

import io
import zlib

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

NUM_CLASSES = 10
IMAGE_SIZE = 28
SAMPLE_RATE = 8000
AUDIO_SAMPLES = 4000  # 0.5 s
TEXT_LENGTH = 16
VOCAB_SIZE = 64  # 0 is padding; 1..3 unused; 4.. tokens
SPLIT_SIZES = {'train': 3000, 'validation': 500, 'test': 1000}

# Noise levels chosen so a small model per modality is clearly above chance but far from perfect.
IMAGE_NOISE = 1.3
AUDIO_SNR_DB = -12.0
TEXT_KEYWORD_PROB = 0.12


def _class_templates():
  """Fixed smooth 28x28 patterns, one per class: the image 'digits' of this dataset."""
  rng = np.random.default_rng(1234)
  raw = rng.normal(size=(NUM_CLASSES, IMAGE_SIZE // 4, IMAGE_SIZE // 4))
  up = np.kron(raw, np.ones((4, 4)))  # blocky, so convolutions see structure
  return (up - up.mean(axis=(1, 2), keepdims=True)) / up.std(axis=(1, 2), keepdims=True)


_TEMPLATES = _class_templates()
_FREQS = 300.0 + 250.0 * np.arange(NUM_CLASSES)  # one tone per class, Hz


def _image(cls, rng):
  x = _TEMPLATES[cls] + IMAGE_NOISE * rng.normal(size=(IMAGE_SIZE, IMAGE_SIZE))
  x = np.clip(128 + 40 * x, 0, 255).astype(np.uint8)
  buf = io.BytesIO()
  Image.fromarray(x).save(buf, format='PNG')
  return buf.getvalue()


def _audio(cls, rng):
  t = np.arange(AUDIO_SAMPLES) / SAMPLE_RATE
  tone = np.sin(2 * np.pi * _FREQS[cls] * (1 + 0.02 * rng.normal()) * t + rng.uniform(0, 2 * np.pi))
  noise_std = np.sqrt(0.5 / 10 ** (AUDIO_SNR_DB / 10))  # tone power is 0.5
  x = tone + noise_std * rng.normal(size=AUDIO_SAMPLES)
  return np.clip(x / (4 * noise_std) * 32767, -32768, 32767).astype(np.int16)


def _text(cls, rng):
  length = int(rng.integers(4, TEXT_LENGTH + 1))
  tokens = rng.integers(4, VOCAB_SIZE, size=length)
  keyword = rng.random(length) < TEXT_KEYWORD_PROB
  tokens[keyword] = 4 + cls  # tokens 4..13 double as class keywords
  return np.pad(tokens, (0, TEXT_LENGTH - length)).astype(np.int32)


def make_example(config_name: str, split: str, index: int) -> dict:
  """The example `index` of `split`; a pure function of its arguments."""
  seed = zlib.crc32(f'{config_name}/{split}/{index}'.encode())
  rng = np.random.default_rng(seed)
  a, b, distractor = (int(v) for v in rng.integers(0, NUM_CLASSES, size=3))
  if config_name == 'redundant':
    label = a
    image_cls, audio_cls, text_cls = a, a, a
  elif config_name == 'unique':
    label = a
    image_cls, audio_cls, text_cls = a, b, distractor
  elif config_name == 'synergy':
    label = (a + b) % NUM_CLASSES
    image_cls, audio_cls, text_cls = a, b, distractor
  else:
    raise ValueError(f'unknown synthetic config {config_name!r}')
  return {
      'id': index,
      'image': _image(image_cls, rng),
      'audio': _audio(audio_cls, rng),
      'text': _text(text_cls, rng),
      'label': label,
  }


class Synthetic(tfds.core.GeneratorBasedBuilder):
  """Synthetic tri-modal classification (see module docstring)."""

  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name='redundant', description='every modality predicts the label'),
      tfds.core.BuilderConfig(name='unique', description='only the image predicts the label'),
      tfds.core.BuilderConfig(name='synergy', description='label = (image + audio) mod K'),
  ]

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'id': np.int32,
            'image': tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 1)),
            'audio': tfds.features.Tensor(shape=(AUDIO_SAMPLES,), dtype=np.int16),
            'text': tfds.features.Tensor(shape=(TEXT_LENGTH,), dtype=np.int32),
            'label': tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(split) for split in SPLIT_SIZES}

  def _generate_examples(self, split):
    for index in range(SPLIT_SIZES[split]):
      yield index, make_example(self.builder_config.name, split, index)
