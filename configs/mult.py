"""`mult` (MulT, Tsai et al., 2019): cross-modal transformers in which each modality's tokens
attend to every other modality's, then self-attention per modality.

Variants as in configs/late_fusion.py (`avmnist`, `synthetic`), whose dataset, encoders and
optimizer recipe this reuses; only the fusion differs.
"""

from configs import late_fusion


def get_config(arg: str = 'avmnist'):
  config = late_fusion.get_config(arg)
  config.model.fusion = {'name': 'mult', 'dim': 32, 'cross_layers': 1, 'self_layers': 1,
                         'num_heads': 4}
  return config
