"""Gradient blending (Wang, Tran & Feiszli, CVPR 2020; MultiBench's remedy for modality
imbalance): the main job's late-fusion model with an MLP head on each modality's encoding beside
the fused head, trained on a weighted sum of the three heads' cross-entropies; the fused head
alone predicts.

The weights are each model's generalisation over its overfitting squared, normalised to sum to 1:
w_k ∝ |L_val,k / (L_val,k - L_train,k)²| (MultiBench's training_structures/gradient_blend.py,
which uses these end-of-training losses, not the paper's differences between two checkpoints),
for k the image-only, audio-only and late-fusion models. `--experiment=gradient_blending_weights`
trains those three at each audio SNR and `--experiment=imbalance` trains this config at the
weights they give (experiments/catalog.py, `gradient_blending_weights`). The weights below are
equal: a placeholder that blends nothing.

Departures from MultiBench's AV-MNIST script (300 epochs of SGD 0.01, weights re-estimated every
10 epochs by training copies of the model for 10 epochs on 92% of the training set, then 25
epochs of fine-tuning a copy of the fused head on frozen features): the main job's 3-epoch
budget and recipe, so the weights are estimated once, offline, from three runs of that budget
(the paper's offline G-Blend), held out on AV-MNIST's validation split (5,000 examples, 8% of
train and validation, as MultiBench's v_rate=0.08), and no head fine-tuning.

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
  config.objective.head_weights = {'fused': 1 / 3, 'image': 1 / 3, 'audio': 1 / 3}
  return config
