"""`tensor_fusion` (TFN, Zadeh et al., 2017): the outer product of [z_m; 1] over modalities,
z_m a small projection of each pooled encoding, into the MLP head.

Variants as in configs/late_fusion.py (`avmnist`, `synthetic`), whose dataset, encoders and
optimizer recipe this reuses; only the fusion differs.
"""

from configs import late_fusion


def get_config(arg: str = 'avmnist'):
  config = late_fusion.get_config(arg)
  config.model.fusion = {'name': 'tensor_fusion', 'dim': 16}
  return config
