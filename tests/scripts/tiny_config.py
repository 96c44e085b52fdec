"""A tiny late-fusion config on the synthetic data: seconds per run on a CPU, for tests of the
trainer's reliability. `--config=tests/scripts/tiny_config.py` (run from the repository root)."""

from configs import default
from configs import late_fusion


def get_config():
  config = default.keep_modalities(late_fusion.get_config('synthetic'), ('image', 'audio'))
  small_cnn = {'name': 'cnn', 'features': (4,), 'kernel_sizes': (3,), 'pool': (True,)}
  config.model.encoders = {'image': dict(small_cnn), 'audio': dict(small_cnn)}
  config.model.frontends.audio.n_mels = 8
  config.model.head = {'hidden': (16,), 'dropout': 0.1}
  config.batch_size = 16
  config.num_train_steps = 8
  config.log_every_steps = 4
  config.evals.validation.every_steps = 8
  config.checkpoint_every_steps = 4
  return config
