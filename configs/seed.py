"""The seed architecture, exactly: image CNN (conv 32/64/128 3x3, 2x2 max-pool, flatten), text
2xLSTM(64), audio CNN of the same shape over a log-mel spectrogram computed in JAX,
concatenation, MLP 128-64 with dropout 0.5, softmax — on the synthetic tri-modal data.

The architecture fields (front end, encoders, fusion, head and its initialisation) are set here
explicitly (today they equal the defaults), so the seed's numbers keep their meaning if
`configs/default.py` moves on.
"""

from configs import default


def get_config(arg: str = 'synthetic'):
  if arg != 'synthetic':
    raise ValueError(f'seed.py has only the synthetic variant, not {arg!r}')
  config = default.get_config()
  config.dataset = default.synthetic_dataset('redundant')
  config.model.frontends = {'audio': default.logmel(hop_length=128, n_mels=32)}
  config.model.encoders = {
      'image': {'name': 'cnn', 'features': (32, 64, 128)},
      'audio': {'name': 'cnn', 'features': (32, 64, 128)},
      'text': {'name': 'lstm', 'vocab_size': 64, 'hidden': (64, 64)},
  }
  config.model.fusion = {'name': 'late_fusion'}
  config.model.head = {'hidden': (128, 64), 'dropout': 0.5, 'param_init': 'flax'}
  return config
