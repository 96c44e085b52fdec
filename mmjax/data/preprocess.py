"""Host-side preprocessing: one function per modality, the only place each modality is prepared.

Heavy, tunable signal processing (the audio log-mel front end) runs on the device inside the model
(`mmjax.models.frontend`), so changing it needs no dataset rebuild.
"""

import numpy as np

from mmjax.errors import UserError
from mmjax.registry import Registry

PREPROCESSORS = Registry('modality preprocessor')


@PREPROCESSORS.register('image')
def image(x, cfg):
  """uint8 [H, W] or [H, W, C] → normalised float32 [H, W, C]."""
  x = np.asarray(x, np.float32)
  if x.ndim == 2:
    x = x[..., None]
  return (x / 255.0 - cfg.get('mean', 0.5)) / cfg.get('std', 0.5)


@PREPROCESSORS.register('audio')
def audio(x, cfg):
  """int16 waveform → float32 in [-1, 1); float input (waveform or spectrogram) passes through."""
  x = np.asarray(x)
  if np.issubdtype(x.dtype, np.integer):
    return x.astype(np.float32) / 32768.0
  return x.astype(np.float32)


@PREPROCESSORS.register('text')
def text(x, cfg):
  """Token ids (0 = padding) → int32 [max_length]; longer sequences are an error, not a silent cut."""
  x = np.asarray(x, np.int32).reshape(-1)
  max_length = cfg['max_length']
  length = int(np.count_nonzero(x))
  if length > max_length:
    raise UserError(
        f'text of {length} tokens exceeds dataset.modalities.text.max_length={max_length}; '
        'raise max_length')
  x = x[x != 0]
  return np.pad(x, (0, max_length - len(x)))
