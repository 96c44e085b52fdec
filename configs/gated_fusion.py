"""`gated_fusion`: the gated multimodal unit (GMU, Arevalo et al., 2017), a learned per-feature
gate over the modalities' tanh projections.

Variants as in configs/late_fusion.py (`avmnist`, `synthetic`, `modality_dropout`), whose dataset,
encoders and optimizer recipe this reuses; only the fusion differs.
"""

from configs import late_fusion


def get_config(arg: str = 'avmnist'):
  config = late_fusion.get_config(arg)
  config.model.fusion = {'name': 'gated_fusion', 'dim': 64, 'gate': 'softmax'}
  return config
