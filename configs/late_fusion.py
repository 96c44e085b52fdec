"""`late_fusion` (MultiBench's late fusion): an encoder per modality, pooled representations
concatenated into an MLP head. The main job: AV-MNIST (standard) with MultiBench's recipe —
LeNet(1,6,3) on images, LeNet(1,6,5) on log-mel spectrograms, MLP 240-100-10.

Variants: `configs/late_fusion.py:synthetic` trains on the synthetic tri-modal data instead.
"""

from configs import default


def get_config(arg: str = 'avmnist'):
  config = default.get_config()
  config.model.fusion.name = 'late_fusion'
  if arg == 'synthetic':
    return config
  if arg != 'avmnist':
    raise ValueError(f'unknown variant {arg!r} of late_fusion.py; valid: avmnist, synthetic')
  config.dataset = default.avmnist_dataset('standard')
  config.model.encoders = {'image': {'name': 'lenet', 'channels': 6, 'additional_layers': 3},
                           'audio': {'name': 'lenet', 'channels': 6, 'additional_layers': 5}}
  config.model.head = {'hidden': (100,), 'dropout': 0.0}
  config.batch_size = 128
  config.num_train_steps = 1300   # ~3 epochs of 55,000
  config.log_every_steps = 50
  config.eval_every_steps = 430
  config.checkpoint_every_steps = 430
  config.optimizer.name = 'sgd'      # MultiBench's recipe: plain SGD, lr 0.1, weight decay 1e-4
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.0
  config.optimizer.warmup_steps = 50
  config.optimizer.weight_decay = 1e-4
  return config
