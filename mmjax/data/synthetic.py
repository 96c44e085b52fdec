"""A deterministic tri-modal (image, audio, text) dataset for tests and interaction probes.

Every example is a pure function of (builder config, split, index). Each example shows two latent
classes: `image_latent` x1 (the image's class template) and `audio_latent` x2 (the audio's tone),
both stored as features; the label y is a function of (x1, x2) that the builder config fixes.
The probes place the label's information where partial information decomposition (PID) says:

- `redundancy`: x1 = x2 = y, uniform over 10 classes: log2(10) = 3.32 bits of redundancy.
- `unique_image` / `unique_audio`: y = x1 (resp. x2), the other latent independent: 3.32 bits
  unique to that modality.
- `synergy`: y = x1 XOR x2, with x1, x2 uniform and independent bits (the image shows one of two
  class templates, the audio one of two tones): each modality alone carries 0 bits about y, the
  pair 1 bit, all of it synergy. A sum of per-modality scores (decision fusion) cannot compute an
  XOR: its best is an OR, right in 75% of examples (its predictions then hold 0.31 bits of
  redundancy and 0.5 of synergy, as an OR does), against 50% for one modality alone and 100% for
  an XOR. (Until version 5.0.0 x1 and x2 were ten-class and y the XOR of their parities: no
  model learned it, since nothing in the label tells the ten classes apart; late fusion, which
  learns the two-template XOR within 300 steps, stayed at 50% for 1,400.)
- `mixed`: x1 = 2r + p1, x2 = 2r + p2, y = 2r + (p1 XOR p2), with r uniform over 5 and the
  parities uniform bits: log2(5) = 2.32 bits of redundancy and 1 bit of synergy.

`latent_joint(config)` is the exact joint p(x1, x2, y), from which the data's PID, the Bayes
ceiling (100% given the latents, in every probe) and chance (the majority class's share) follow
analytically. In every probe the text shows a third class drawn independently of everything
else, so it carries 0 bits: the models see it, and it cannot help them.

`redundant` is the tests' data, kept as version 1.0.0 made it: the label is in every modality
(text included) and its audio is at -12 dB. The probes' audio is at 0 dB, so what is hard is how
the label is spread across the modalities, not hearing the tone.
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

# Per config: the std of the Gaussian noise added to the unit-variance image template, and the
# audio's tone-to-noise ratio. A small model per modality is clearly above chance on redundant's
# image and audio; the tests' short runs rely on redundant's image being this clean.
PROBES = ('redundancy', 'unique_image', 'unique_audio', 'synergy', 'mixed')
NOISE = {'redundant': {'image_std': 1.3, 'audio_snr_db': -12.0},
         **{p: {'image_std': 1.3, 'audio_snr_db': 0.0} for p in PROBES}}
# The probes' test split is larger: a model's PID is estimated from its predictions on it, over
# 100 (x1, x2) cells.
PROBE_SPLIT_SIZES = {'train': 3000, 'validation': 500, 'test': 4000}
TEXT_KEYWORD_PROB = 0.12


def _class_templates():
  """Fixed smooth 28x28 patterns, one per class: the image 'digits' of this dataset."""
  rng = np.random.default_rng(1234)
  raw = rng.normal(size=(NUM_CLASSES, IMAGE_SIZE // 4, IMAGE_SIZE // 4))
  up = np.kron(raw, np.ones((4, 4)))  # blocky, so convolutions see structure
  return (up - up.mean(axis=(1, 2), keepdims=True)) / up.std(axis=(1, 2), keepdims=True)


_TEMPLATES = _class_templates()
_FREQS = 300.0 + 250.0 * np.arange(NUM_CLASSES)  # one tone per class, Hz


def _image(cls, rng, noise_std):
  x = _TEMPLATES[cls] + noise_std * rng.normal(size=(IMAGE_SIZE, IMAGE_SIZE))
  x = np.clip(128 + 40 * x, 0, 255).astype(np.uint8)
  buf = io.BytesIO()
  Image.fromarray(x).save(buf, format='PNG')
  return buf.getvalue()


def _tone(cls, rng):
  t = np.arange(AUDIO_SAMPLES) / SAMPLE_RATE
  return np.sin(2 * np.pi * _FREQS[cls] * (1 + 0.02 * rng.normal()) * t + rng.uniform(0, 2 * np.pi))


def _audio(cls, rng, snr_db):
  tone = _tone(cls, rng)
  noise_std = np.sqrt(0.5 / 10 ** (snr_db / 10))  # tone power is 0.5
  x = tone + noise_std * rng.normal(size=AUDIO_SAMPLES)
  return np.clip(x / (4 * noise_std) * 32767, -32768, 32767).astype(np.int16)


def _text(cls, rng):
  length = int(rng.integers(4, TEXT_LENGTH + 1))
  tokens = rng.integers(4, VOCAB_SIZE, size=length)
  keyword = rng.random(length) < TEXT_KEYWORD_PROB
  tokens[keyword] = 4 + cls  # tokens 4..13 double as class keywords
  return np.pad(tokens, (0, TEXT_LENGTH - length)).astype(np.int32)


def sources_and_label(config_name: str, a: int, b: int) -> tuple[int, int, int]:
  """(x1, x2, y) of an example whose two uniform draws over the classes are a and b."""
  if config_name in ('redundant', 'redundancy'):
    return a, a, a
  if config_name == 'unique_image':
    return a, b, a
  if config_name == 'unique_audio':
    return a, b, b
  if config_name == 'synergy':  # two classes per modality
    return a % 2, b % 2, (a + b) % 2
  if config_name == 'mixed':  # r = a // 2 shared; parities a % 2, b % 2
    return a, 2 * (a // 2) + b % 2, 2 * (a // 2) + (a + b) % 2
  raise ValueError(f'unknown synthetic config {config_name!r}; valid: redundant, '
                   f'{", ".join(PROBES)}')


def latent_joint(config_name: str) -> np.ndarray:
  """The exact p[x1, x2, y] of `config_name` ([10, 10, 10]): a and b uniform and independent."""
  joint = np.zeros((NUM_CLASSES,) * 3)
  for a in range(NUM_CLASSES):
    for b in range(NUM_CLASSES):
      joint[sources_and_label(config_name, a, b)] += 1 / NUM_CLASSES**2
  return joint


def bayes_and_chance(config_name: str) -> tuple[float, float]:
  """(the best accuracy any model reading (x1, x2) exactly can reach, the majority class's
  share: the best without either)."""
  joint = latent_joint(config_name)
  return float(joint.max(axis=2).sum()), float(joint.sum(axis=(0, 1)).max())


def split_sizes(config_name: str) -> dict[str, int]:
  return SPLIT_SIZES if config_name == 'redundant' else PROBE_SPLIT_SIZES


def make_example(config_name: str, split: str, index: int) -> dict:
  """The example `index` of `split`; a pure function of its arguments."""
  seed = zlib.crc32(f'{config_name}/{split}/{index}'.encode())
  rng = np.random.default_rng(seed)
  a, b, distractor = (int(v) for v in rng.integers(0, NUM_CLASSES, size=3))
  x1, x2, label = sources_and_label(config_name, a, b)
  text_cls = label if config_name == 'redundant' else distractor
  noise = NOISE[config_name]
  return {
      'id': index,
      'image': _image(x1, rng, noise['image_std']),
      'audio': _audio(x2, rng, noise['audio_snr_db']),
      'text': _text(text_cls, rng),
      'label': label,
      'image_latent': x1,
      'audio_latent': x2,
  }


class Synthetic(tfds.core.GeneratorBasedBuilder):
  """Synthetic tri-modal classification (see module docstring)."""

  VERSION = tfds.core.Version('6.0.0')
  RELEASE_NOTES = {
      '6.0.0': 'The audio is stored as its int16 bytes instead of a list of int64s (a third of '
               'the size; TFDS serialises and parses it several times faster); every config\'s '
               'examples are unchanged (EXAMPLES_VERSIONS).',
      '5.0.0': "synergy's latents are bits (two class templates, two tones) and its label their "
               'XOR, instead of the XOR of two ten-class latents\' parities; the other configs\' '
               'examples are unchanged (EXAMPLES_VERSIONS).',
      '4.0.0': 'Interaction probes with a known PID (redundancy, unique_image, unique_audio, '
               'synergy, mixed) replace redundant_noisy, unique and synergy; every example '
               'stores its latent classes (image_latent, audio_latent); the probes\' text is '
               'independent of the label and their test split has 4,000 examples. redundant\'s '
               'examples are unchanged.',
      '3.0.0': "synergy's label is (a + 5 * [b >= 5]) mod K instead of (a + b) mod K; unique's "
               "image blends the label with another class and its audio is at 0 dB; new config "
               'redundant_noisy; redundant is unchanged.',
      '2.0.0': "synergy's audio at 0 dB instead of -12 dB (NOISE); redundant and unique are "
               'unchanged.',
      '1.0.0': 'Image noise 1.3 and audio at -12 dB in every config.',
  }
  # The version at which each config's examples last changed: what a run records as the data's
  # version (datasets.json), so that a version which changes one config leaves the runs on the
  # others current.
  EXAMPLES_VERSIONS = {'redundant': '4.0.0', 'redundancy': '4.0.0', 'unique_image': '4.0.0',
                       'unique_audio': '4.0.0', 'synergy': '5.0.0', 'mixed': '4.0.0'}
  REMOVED_CONFIGS = {
      'redundant_noisy': 'version 4.0.0 replaced synthetic/redundant_noisy with the probes '
                         'synthetic/redundancy, unique_image, unique_audio, synergy and mixed',
      'unique': 'version 4.0.0 replaced synthetic/unique with synthetic/unique_image (and '
                'unique_audio)',
  }
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name='redundant', description='every modality predicts the label'),
      tfds.core.BuilderConfig(name='redundancy', description='image and audio both show the label'),
      tfds.core.BuilderConfig(name='unique_image', description='only the image shows the label'),
      tfds.core.BuilderConfig(name='unique_audio', description='only the audio shows the label'),
      tfds.core.BuilderConfig(name='synergy',
                              description="label = XOR of the image's and the audio's parities"),
      tfds.core.BuilderConfig(name='mixed', description='2.32 bits redundant, 1 bit synergistic'),
  ]

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'id': np.int32,
            'image': tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 1)),
            'audio': tfds.features.Tensor(shape=(AUDIO_SAMPLES,), dtype=np.int16,
                                          encoding=tfds.features.Encoding.BYTES),
            'text': tfds.features.Tensor(shape=(TEXT_LENGTH,), dtype=np.int32),
            'label': tfds.features.ClassLabel(num_classes=NUM_CLASSES),
            'image_latent': np.int32,
            'audio_latent': np.int32,
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(split)
            for split in split_sizes(self.builder_config.name)}

  def _generate_examples(self, split):
    for index in range(split_sizes(self.builder_config.name)[split]):
      yield index, make_example(self.builder_config.name, split, index)
