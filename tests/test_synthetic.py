"""The synthetic tri-modal dataset: deterministic, each builder config places the label where it
says (checked with nearest-template decoders that read one modality each), and the exact joint of
its latent classes has the partial information decomposition its docstring states."""

import io

import numpy as np
from PIL import Image
import pytest

from mmjax.data import synthetic

N = 300


def _template_scores(ex):
  """The image's correlation with each class template."""
  x = (np.asarray(Image.open(io.BytesIO(ex['image'])), np.float32) - 128) / 40
  return np.array([(t * x).sum() for t in synthetic._TEMPLATES])  # pylint: disable=protected-access


def _decode_image(ex):
  return int(np.argmax(_template_scores(ex)))


def _band_powers(ex):
  """(power in each class's tone band, the clip's whole power). A band spans half the 250 Hz
  spacing each side, wide enough for the tone's 2% pitch jitter."""
  power = np.abs(np.fft.rfft(ex['audio'].astype(np.float32))) ** 2
  hz = np.fft.rfftfreq(synthetic.AUDIO_SAMPLES, 1 / synthetic.SAMPLE_RATE)
  return np.array([power[np.abs(hz - f) < 125].sum() for f in synthetic._FREQS]), power.sum()  # pylint: disable=protected-access


def _decode_audio(ex):
  """The class whose tone band holds the most power."""
  return int(np.argmax(_band_powers(ex)[0]))


def _decode_text(ex):
  counts = np.bincount(ex['text'][ex['text'] > 0], minlength=synthetic.VOCAB_SIZE)[4:14]
  return int(np.argmax(counts))


def _accuracy(config, decode):
  examples = [synthetic.make_example(config, 'train', i) for i in range(N)]
  return np.mean([decode(ex) == ex['label'] for ex in examples])


def test_examples_are_deterministic():
  a, b = synthetic.make_example('synergy', 'test', 7), synthetic.make_example('synergy', 'test', 7)
  assert a['image'] == b['image'] and np.array_equal(a['audio'], b['audio'])
  assert synthetic.make_example('synergy', 'test', 8)['image'] != a['image']


@pytest.mark.parametrize('config, informative', [
    ('redundant', {'image', 'audio', 'text'}),
    ('redundancy', {'image', 'audio'}),
    ('unique_image', {'image'}),
    ('unique_audio', {'audio'}),
])
def test_label_is_where_the_config_puts_it(config, informative):
  """In every probe the text reads the label at chance (it showed the label in version 3's
  redundant_noisy, which a keyword count read at ~57%)."""
  for modality, decode in (('image', _decode_image), ('audio', _decode_audio),
                           ('text', _decode_text)):
    acc = _accuracy(config, decode)
    chance = synthetic.bayes_and_chance(config)[1]
    if modality in informative:  # redundant's audio is at -12 dB and its text mostly noise
      assert acc > (0.3 if config == 'redundant' else 0.9), (config, modality, acc)
    else:
      assert acc < chance + 0.1, (config, modality, acc)


@pytest.mark.parametrize('config', synthetic.PROBES)
def test_each_modality_shows_its_latent_class_clearly(config):
  """The stored latents are what the image and audio show, readable in nearly every example
  (the probes' audio at 0 dB holds about half its power in the tone's band, redundant's -12 dB
  audio about a tenth), so the Bayes ceiling on the latents is nearly the ceiling on the data."""
  examples = [synthetic.make_example(config, 'train', i) for i in range(N)]
  assert np.mean([_decode_image(ex) == ex['image_latent'] for ex in examples]) > 0.95
  assert np.mean([_decode_audio(ex) == ex['audio_latent'] for ex in examples]) > 0.95
  assert _tone_power_fraction(examples) > 0.4
  assert _tone_power_fraction(
      [synthetic.make_example('redundant', 'train', i) for i in range(N)]) < 0.2
  # Each example's label is the one the exact joint gives its latents (the label is a function
  # of them in every probe), so the data's PID and ceiling below are the examples'.
  joint = synthetic.latent_joint(config)
  assert all(joint[ex['image_latent'], ex['audio_latent'], ex['label']] > 0 for ex in examples)
  assert all((joint[ex['image_latent'], ex['audio_latent']] > 0).sum() == 1 for ex in examples)


def _tone_power_fraction(examples):
  """The mean share of each clip's power inside its tone's band: about 0.53 at 0 dB, 0.12 at
  -12 dB (the band also holds 1/16 of the white noise)."""
  return np.mean([bands.max() / total for bands, total in map(_band_powers, examples)])


def test_synergy_needs_both_modalities_and_their_xor():
  """Each modality shows one of two classes; neither alone predicts the label better than chance
  (50%: two classes), and their XOR reads it in nearly every example, which no sum of
  per-modality scores computes."""
  examples = [synthetic.make_example('synergy', 'train', i) for i in range(N)]
  image = np.array([_decode_image(ex) for ex in examples])
  audio = np.array([_decode_audio(ex) for ex in examples])
  label = np.array([ex['label'] for ex in examples])
  assert set(label) == {0, 1}
  assert {ex['image_latent'] for ex in examples} == {ex['audio_latent'] for ex in examples} \
      == {0, 1}
  assert np.mean(image == [ex['image_latent'] for ex in examples]) > 0.95
  assert np.mean(audio == [ex['audio_latent'] for ex in examples]) > 0.95
  for decoded in (image, audio):  # the best rule from one modality: each class's majority label
    best = sum(max(np.sum(label[decoded == c] == 0), np.sum(label[decoded == c] == 1))
               for c in range(synthetic.NUM_CLASSES))
    assert best / N < 0.62
  assert np.mean((image + audio) % 2 == label) > 0.95


def test_mixed_shares_half_the_digit_and_hides_its_parity_in_an_xor():
  """`mixed`: image and audio both show r = label // 2 (so either alone reads the label at most
  half the time, its parity a coin flip), and the label's parity is the XOR of theirs."""
  examples = [synthetic.make_example('mixed', 'train', i) for i in range(N)]
  image = np.array([_decode_image(ex) for ex in examples])
  audio = np.array([_decode_audio(ex) for ex in examples])
  label = np.array([ex['label'] for ex in examples])
  assert np.mean(image // 2 == label // 2) > 0.95 and np.mean(audio // 2 == label // 2) > 0.95
  for decoded in (image, audio):
    assert 0.35 < np.mean(decoded == label) < 0.65
  assert np.mean(2 * (image // 2) + (image + audio) % 2 == label) > 0.95


# The data's PID in bits, from the exact joint of the latents (the module docstring's figures).
LOG10, LOG5 = np.log2(10), np.log2(5)
DATA_PID = {
    'redundancy': {'redundancy': LOG10, 'unique_1': 0, 'unique_2': 0, 'synergy': 0},
    'unique_image': {'redundancy': 0, 'unique_1': LOG10, 'unique_2': 0, 'synergy': 0},
    'unique_audio': {'redundancy': 0, 'unique_1': 0, 'unique_2': LOG10, 'synergy': 0},
    'synergy': {'redundancy': 0, 'unique_1': 0, 'unique_2': 0, 'synergy': 1},
    'mixed': {'redundancy': LOG5, 'unique_1': 0, 'unique_2': 0, 'synergy': 1},
}


@pytest.mark.parametrize('config', synthetic.PROBES)
def test_each_probes_latent_joint_has_the_stated_decomposition(config):
  from mmjax import pid  # pylint: disable=import-outside-toplevel
  measured = pid.decompose(synthetic.latent_joint(config))
  for key, bits in DATA_PID[config].items():
    assert measured[key] == pytest.approx(bits, abs=1e-3), (config, key, measured)
  bayes, chance = synthetic.bayes_and_chance(config)
  assert bayes == pytest.approx(1.0) and chance == pytest.approx(0.5 if config == 'synergy' else 0.1)


def test_the_built_dataset_holds_make_examples_examples_with_the_audio_as_bytes():
  """What a run reads is what make_example generates, whatever the storage: version 6.0.0 stores
  the audio as its int16 bytes (not a list of int64s) and left every example as it was."""
  import os  # pylint: disable=import-outside-toplevel
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from mmjax.data import datasets  # pylint: disable=import-outside-toplevel
  builder = datasets.prepare('synthetic/redundant', os.environ['TFDS_DATA_DIR'])
  # Serialised as one bytes string, not a tensor of int16s (an int64 list on disk).
  assert builder.info.features['audio'].get_serialized_info() == tfds.features.TensorInfo(
      shape=(), dtype=np.object_)
  source = builder.as_data_source('validation')
  for index in (0, 1, 499):  # stored in TFDS's shuffled order: each example carries its id
    stored = source[index]
    made = synthetic.make_example('redundant', 'validation', int(stored['id']))
    assert stored['audio'].dtype == np.int16
    np.testing.assert_array_equal(stored['audio'], made['audio'])
    np.testing.assert_array_equal(stored['text'], made['text'])
    np.testing.assert_array_equal(stored['image'][..., 0],
                                  np.asarray(Image.open(io.BytesIO(made['image']))))
    assert [stored[k] for k in ('id', 'label', 'image_latent', 'audio_latent')] == [
        made[k] for k in ('id', 'label', 'image_latent', 'audio_latent')]
