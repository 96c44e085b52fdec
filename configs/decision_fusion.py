"""`decision_fusion`: a classifier per modality, log-probabilities averaged over the present
modalities; each per-modality head takes the shared head's hidden sizes and dropout, and Flax's
default initialisation (not the shared head's `param_init`).

Variants as in configs/late_fusion.py (`avmnist`, `synthetic`, `modality_dropout`), whose dataset,
encoders and optimizer recipe this reuses; only the fusion differs.
"""

from configs import late_fusion


def get_config(arg: str = 'avmnist'):
  config = late_fusion.get_config(arg)
  config.model.fusion = {'name': 'decision_fusion', 'hidden': config.model.head.hidden,
                         'dropout': config.model.head.dropout, 'combine': 'mean'}
  return config
