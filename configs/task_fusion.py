"""Task-level fusion: the main job's late-fusion model plus a classifier on each modality's
encoding alone, all trained jointly (each head's cross-entropy, `objective.aux_weight` for the
per-modality ones); the prediction averages the log-probabilities of the fused head and of the
heads of the modalities present. Metrics are logged per head (`label/fused/accuracy`,
`label/image/accuracy`, `label/audio/accuracy`) beside the combined `accuracy`.

Variants: `task_fusion.py:synthetic` trains on the synthetic tri-modal data;
`:modality_dropout` as in configs/late_fusion.py.
"""

from configs import late_fusion


def get_config(arg: str = 'avmnist'):
  config = late_fusion.get_config(arg)
  config.model.unimodal_heads = {'hidden': (100,), 'dropout': 0.0}
  config.objective.aux_weight = 1.0
  return config
