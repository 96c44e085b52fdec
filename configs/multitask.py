"""Multi-task learning on AV-MNIST: the digit (10 classes) and the speaker of the recording (6
classes, a property of the audio alone) as two heads on the main job's fused representation, the
loss their weighted sum. Encoders, head and optimiser are the main job's (`late_fusion.py`).

Variants: `multitask.py:uncertainty` learns the task weights (Kendall, Gal & Cipolla, 2018)
instead of fixing them at 1; `:synthetic` trains on the synthetic data.
"""

from configs import late_fusion


def get_config(arg: str = 'avmnist'):
  if arg not in ('avmnist', 'uncertainty', 'synthetic'):
    raise ValueError(f'unknown variant {arg!r} of multitask.py; valid: avmnist, uncertainty, '
                     'synthetic')
  config = late_fusion.get_config('synthetic' if arg == 'synthetic' else 'avmnist')
  if arg == 'synthetic':
    # The synthetic data has one label; a second head on it exercises the two-task code path.
    config.tasks = {'label': {'num_classes': 10, 'weight': 1.0},
                    'label_again': {'num_classes': 10, 'weight': 0.5}}
    config.dataset.labels = {'label': 'label', 'label_again': 'label'}
    return config
  config.tasks = {'label': {'num_classes': 10, 'weight': 1.0},
                  'speaker': {'num_classes': 6, 'weight': 1.0}}
  config.dataset.labels = {'label': 'label', 'speaker': 'speaker'}
  del config.evals['robustness']  # the main job's figure; not this config's question
  config.select_best = 'validation/loss'  # the summed loss: no single task's accuracy decides
  if arg == 'uncertainty':
    config.objective.task_weighting = 'uncertainty'
  return config
