"""The synthetic tri-modal dataset: deterministic, and each builder config places the label where
it says (checked with nearest-template decoders that read one modality each)."""

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
    ('redundant_noisy', {'image', 'audio', 'text'}),
    ('unique', {'image'}),
])
def test_label_is_where_the_config_puts_it(config, informative):
  for modality, decode in (('image', _decode_image), ('audio', _decode_audio),
                           ('text', _decode_text)):
    acc = _accuracy(config, decode)
    if modality in informative:
      assert acc > 0.3, (config, modality, acc)   # chance is 0.1
    else:
      assert acc < 0.2, (config, modality, acc)


def _tone_power_fraction(examples):
  """The mean share of each clip's power inside its tone's band: about 0.53 at 0 dB, 0.12 at
  -12 dB (the band also holds 1/16 of the white noise)."""
  return np.mean([bands.max() / total for bands, total in map(_band_powers, examples)])


@pytest.fixture(scope='module')
def synergy():
  """N synergy examples and their decoded (image class, audio class, label)."""
  examples = [synthetic.make_example('synergy', 'train', i) for i in range(N)]
  decoded = np.array([[_decode_image(ex), _decode_audio(ex), ex['label']] for ex in examples])
  return examples, decoded.T


def test_synergys_image_and_audio_each_show_their_class_clearly(synergy):
  """On `synergy` what is hard is the interaction, not reading each part: its audio is clean
  (0 dB: `unimodal_audio.py:synthetic` reads 0-dB tones at 99% after 80 steps, redundant's
  -12 dB ones at 16% after 80 and 91% after 300), and the decoded classes give the label."""
  examples, (image, audio, label) = synergy
  assert _tone_power_fraction(examples) > 0.4
  assert _tone_power_fraction(
      [synthetic.make_example('redundant', 'train', i) for i in range(N)]) < 0.2
  k = synthetic.NUM_CLASSES
  assert np.mean((image + k // 2 * (audio >= k // 2)) % k == label) > 0.95


def test_synergy_needs_both_modalities_and_their_xor(synergy):
  """Image alone gives the label up to one bit (at most 50%), audio alone nothing, and that bit
  is the XOR of the two modalities' halves, which no sum of per-modality scores computes."""
  _, (image, audio, label) = synergy
  k = synthetic.NUM_CLASSES
  assert np.mean(image % (k // 2) == label % (k // 2)) > 0.95  # the image fixes label mod 5
  assert 0.4 < np.mean(image == label) < 0.6
  assert np.mean(audio == label) < 0.2
  high = label >= k // 2
  assert 0.4 < np.mean(high == (audio >= k // 2)) < 0.6  # neither half alone tells the bit
  assert 0.4 < np.mean(high == (image >= k // 2)) < 0.6
  assert np.mean(high == ((image >= k // 2) ^ (audio >= k // 2))) > 0.95


def test_redundant_noisy_shows_the_label_in_both_modalities_each_beside_another_class():
  """Either modality alone reads the label in about 60% of examples (its weight above half);
  the class both modalities show is the label, which reads it in about 96% (the module
  docstring's figures)."""
  examples = [synthetic.make_example('redundant_noisy', 'train', i) for i in range(N)]
  label = np.array([ex['label'] for ex in examples])
  image = np.array([_template_scores(ex) for ex in examples])
  audio = np.sqrt(np.array([_band_powers(ex)[0] for ex in examples]))  # amplitudes
  for scores in (image, audio):
    assert 0.45 < np.mean(scores.argmax(1) == label) < 0.72
  image, audio = image / image.max(1, keepdims=True), audio / audio.max(1, keepdims=True)
  decoded = []
  for i, a in zip(image, audio):
    # The class in both modalities' top two; when both show the same two, the stronger.
    shared = set(np.argsort(i)[-2:]) & set(np.argsort(a)[-2:])
    decoded.append(max(shared or range(synthetic.NUM_CLASSES), key=lambda c: i[c] + a[c]))
  assert np.mean(np.array(decoded) == label) > 0.9


def test_uniques_image_blends_the_label_with_another_class_and_its_audio_is_loud():
  """`unique`: image alone reads the label in about 60% of examples, and the distractor audio is
  as clean as synergy's (0 dB), so a fusion is tempted to use it."""
  examples = [synthetic.make_example('unique', 'train', i) for i in range(N)]
  assert 0.45 < np.mean([_decode_image(ex) == ex['label'] for ex in examples]) < 0.72
  assert _tone_power_fraction(examples) > 0.4
