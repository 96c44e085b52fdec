"""Gradient blending (Wang, Tran & Feiszli, CVPR 2020; MultiBench's remedy for modality
imbalance): the main job's late fusion with an MLP head on each modality's encoding beside the
fused head, trained on a weighted sum of the three heads' cross-entropies; the fused head alone
predicts. Weights w_k ∝ ΔG_k / ΔO_k², normalised, for k the image-only, audio-only and
late-fusion models between initialisation and the trained state (ΔG the validation loss gained, ΔO
the overfitting gained: Wang et al.'s offline estimate, MultiBench's delta=True), from
`--experiment=gradient_blending_weights` at each audio SNR; `--experiment=imbalance` trains this
config at them (not where the fused head would get under 0.05).

Departures from MultiBench's AV-MNIST script (300 epochs of SGD 0.01, the weights re-estimated
every 10): the main job's 3-epoch recipe; no fine-tuning of the fused head; a model whose
validation loss rose gets weight 0 (MultiBench's abs() counts the rise as a gain).

Variants: the audio SNR, as in configs/late_fusion_ogm.py: `:standard` (-12 dB, the default),
`:snr-6db`, `:snr0db`; `:synthetic` (the synthetic image and audio).
"""

from configs import default
from configs import late_fusion

VARIANTS = ('standard', 'snr-6db', 'snr0db', 'synthetic')


def get_config(arg: str = 'standard'):
  if arg not in VARIANTS:
    raise ValueError(f'unknown variant {arg!r} of gradient_blending.py; valid: '
                     f'{", ".join(VARIANTS)}')
  config = late_fusion.get_config('synthetic' if arg == 'synthetic' else 'avmnist')
  config = default.keep_modalities(config, ('image', 'audio'))
  if arg != 'synthetic':
    config.dataset.joins.audio.dataset = f'fsdd/{arg}'
  # MultiBench's unimodal heads: MLP(features, 100, 10), as the fused head.
  config.model.unimodal_heads = {'hidden': (100,), 'dropout': 0.0, 'param_init': 'torch',
                                 'prediction': 'fused'}
  # A placeholder that blends nothing: the estimated weights come as overrides.
  config.objective.head_weights = {'fused': 1 / 3, 'image': 1 / 3, 'audio': 1 / 3}
  return config
