"""`gated_fusion`: the gated multimodal unit (GMU, Arevalo et al., 2017), a learned per-feature
gate over the modalities' tanh projections.

Variants as in configs/late_fusion.py (`avmnist`, `synthetic`, `modality_dropout`), whose dataset,
encoders and optimizer recipe this reuses; only the fusion differs. The fusion comparison trains it
on AV-MNIST with an auxiliary head on each encoder (`--config.objective.aux_weight=1.0` and a
`model.unimodal_heads` dict, which `--experiment=avmnist_fusion --print_commands` prints in full):
without them two seeds of five left the audio branch inert (`--experiment=avmnist_fusion_aux` shows
its runs with and without).
"""

from configs import late_fusion


def get_config(arg: str = 'avmnist'):
  config = late_fusion.get_config(arg)
  config.model.fusion = {'name': 'gated_fusion', 'dim': 64, 'gate': 'softmax'}
  return config
