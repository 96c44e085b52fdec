"""`lowrank_fusion` (LMF, Liu et al., 2018): TFN's multiplicative interactions through rank-r
modality-specific factors, without building the outer product.

Variants as in configs/late_fusion.py (`avmnist`, `synthetic`, `modality_dropout`), whose dataset,
encoders and optimizer recipe this reuses; only the fusion differs.
"""

from configs import late_fusion


def get_config(arg: str = 'avmnist'):
  config = late_fusion.get_config(arg)
  config.model.fusion = {'name': 'lowrank_fusion', 'dim': 64, 'rank': 4}
  return config
