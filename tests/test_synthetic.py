"""The synthetic tri-modal dataset: deterministic, and each builder config places the label where
it says (checked with nearest-template decoders that read one modality each)."""

import io

import numpy as np
from PIL import Image
import pytest

from mmjax.data import synthetic

N = 300


def _decode_image(ex):
  x = (np.asarray(Image.open(io.BytesIO(ex['image'])), np.float32) - 128) / 40
  return int(np.argmax([(t * x).sum() for t in synthetic._TEMPLATES]))  # pylint: disable=protected-access


def _decode_audio(ex):
  spectrum = np.abs(np.fft.rfft(ex['audio'].astype(np.float32)))
  bins = (synthetic._FREQS * synthetic.AUDIO_SAMPLES / synthetic.SAMPLE_RATE).astype(int)  # pylint: disable=protected-access
  return int(np.argmax([spectrum[b - 3:b + 4].sum() for b in bins]))


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
    ('unique', {'image'}),
    ('synergy', set()),  # the label is (image class + audio class) mod K: no modality alone
])
def test_label_is_where_the_config_puts_it(config, informative):
  for modality, decode in (('image', _decode_image), ('audio', _decode_audio),
                           ('text', _decode_text)):
    acc = _accuracy(config, decode)
    if modality in informative:
      assert acc > 0.3, (config, modality, acc)   # chance is 0.1
    else:
      assert acc < 0.2, (config, modality, acc)
