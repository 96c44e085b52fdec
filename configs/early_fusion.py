"""`early_fusion`: every modality's encoder tokens, projected and tagged with a modality
embedding, concatenated into one joint transformer.

Variants as in configs/late_fusion.py (`avmnist`, `synthetic`, `modality_dropout`), whose dataset,
encoders and optimizer recipe this reuses; only the fusion differs.
"""

from configs import late_fusion


def get_config(arg: str = 'avmnist'):
  config = late_fusion.get_config(arg)
  config.model.fusion = {'name': 'early_fusion', 'dim': 64, 'num_layers': 2, 'num_heads': 4}
  return config
