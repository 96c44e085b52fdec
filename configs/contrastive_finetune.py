"""Fine-tuning contrastively pretrained encoders on AV-MNIST classification: the main job
(`late_fusion.py`: its model, recipe, budget and evaluators) started from the encoders of a
`contrastive.py` run.

The pretraining run is named by its workdir, `config.init_from`: by default `runs/contrastive`, where
`python -m mmjax.main --config=configs/contrastive.py --workdir=runs/contrastive` puts it (relative
to the directory the command runs in); give another with `--config.init_from=PATH`. Only the parameters and batch statistics whose path matches
`init_from_pattern = 'encoders_'` are copied (the encoders'); the fusion head starts fresh. A
missing or empty workdir is an error before training. Add `--config.freeze=encoders_` for a
frozen-encoder run (a non-linear probe).

Variants: `:synthetic` (the synthetic image and audio; no `init_from`, so it trains from scratch).
"""

from configs import default
from configs import late_fusion


def get_config(arg: str = 'avmnist'):
  if arg not in ('avmnist', 'synthetic'):
    raise ValueError(f'unknown variant {arg!r} of contrastive_finetune.py; valid: avmnist, '
                     'synthetic')
  config = default.keep_modalities(late_fusion.get_config(arg), ('image', 'audio'))
  config.init_from_pattern = 'encoders_'
  config.init_from = '' if arg == 'synthetic' else 'runs/contrastive'
  return config
