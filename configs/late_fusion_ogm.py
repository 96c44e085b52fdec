"""Late fusion at 0 dB audio SNR with OGM-GE (mmjax.objectives.ogm_ge): the main job
(`late_fusion.py`: its model, recipe, budget and evaluators) with its audio at 0 dB SNR
(`avmnist/standard` joined with `fsdd/snr0db`), where the audio is the stronger modality, with the
dominant modality's encoder gradient modulated at every step. Training logs each modality's branch
score, branch accuracy and gradient coefficient (`ogm/<modality>/...`).

alpha = 0.8 (the authors' value for CREMA-D, their audio-dominated benchmark), modulating the
whole run. README's imbalance results instead use the alpha chosen on validation at each SNR
(`--experiment=imbalance_alpha`) and modulate the first half (`objective.end_step=650`).

The same model without the remedy: `--config.objective.name=classification`. The audio-only model
at 0 dB: `configs/unimodal_audio.py` with `--config.dataset.joins.audio.dataset=fsdd/snr0db`.

Variants: `:snr-6db` (audio at -6 dB), `:standard` (-12 dB), `:synthetic` (the synthetic image
and audio).
"""

from configs import default
from configs import late_fusion

VARIANTS = ('snr0db', 'snr-6db', 'standard', 'synthetic')


def get_config(arg: str = 'snr0db'):
  if arg not in VARIANTS:
    raise ValueError(f'unknown variant {arg!r} of late_fusion_ogm.py; valid: {", ".join(VARIANTS)}')
  config = late_fusion.get_config('synthetic' if arg == 'synthetic' else 'avmnist')
  config = default.keep_modalities(config, ('image', 'audio'))
  if arg != 'synthetic':  # the standard images and pairing; only the audio's SNR differs
    config.dataset.joins.audio.dataset = f'fsdd/{arg}'
  config.objective.update({'name': 'ogm_ge', 'alpha': 0.8, 'modulation': 'ogm_ge',
                           'start_step': 0, 'end_step': 0})
  return config
