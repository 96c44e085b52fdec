"""Cross-modal contrastive pretraining on AV-MNIST (mmjax.objectives.contrastive): the main job's
LeNet encoders (images, 97x64 log-mel spectrograms) trained to align each image with its paired
recording, no labels in the loss. CLIP's InfoNCE with a learned temperature; `:siglip` uses
SigLIP's sigmoid loss with a learned temperature and bias.

Pooled 48 + 192 features (image, audio) each projected to 64 dimensions. A pair's negatives are
the rest of the global batch (256), except images paired with the same recording: positives
(`dataset.pair_id = 'audio_id'`). AdamW 1e-3, cosine, 1,000 steps (4.65 passes over train).

Evaluators: `validation` (loss, in-batch pair accuracy), `retrieval` (test: Recall@1, 5, 10 in
both directions, same-digit and exact-pair), `probe` (a linear classifier on the frozen encoders'
pooled features, fitted on train, scored on test). Fine-tune with `contrastive_finetune.py`.

Variants: `:siglip`; `:synthetic` (the synthetic image and audio, a smaller budget);
`:synthetic_siglip`.
"""

from configs import default
from configs import late_fusion

VARIANTS = ('avmnist', 'siglip', 'synthetic', 'synthetic_siglip')


def get_config(arg: str = 'avmnist'):
  if arg not in VARIANTS:
    raise ValueError(f'unknown variant {arg!r} of contrastive.py; valid: {", ".join(VARIANTS)}')
  synthetic = arg.startswith('synthetic')
  config = late_fusion.get_config('synthetic' if synthetic else 'avmnist')
  config = default.keep_modalities(config, ('image', 'audio'))
  config.objective = {
      'name': 'contrastive',
      'loss': 'siglip' if arg.endswith('siglip') else 'clip',
      'modalities': ('audio', 'image'),
      'embed_dim': 64,
      'projection_hidden': (),
      'init_log_scale': None,   # None: CLIP's log(1/0.07), SigLIP's log(10)
      'init_bias': None,        # SigLIP only; None: -10
      'chunk_size': 0,          # 0: the whole [B, B] similarity at once; c: c rows at a time
  }
  config.evals = {
      'validation': {'type': 'classification', 'split': 'validation', 'every_steps': 250},
      'retrieval': {'type': 'retrieval', 'split': 'test', 'every_steps': 0, 'task': 'label'},
      'probe': {'type': 'linear_probe', 'split': 'test', 'fit_split': 'train', 'every_steps': 0,
                'task': 'label', 'max_fit_examples': 0, 'steps': 300, 'l2': 1e-4},
  }
  config.select_best = ''  # pretraining keeps its last state
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 50
  config.optimizer.weight_decay = 1e-4
  config.optimizer.grad_clip_norm = 1.0
  if synthetic:
    config.batch_size = 64
    config.num_train_steps = 200
    config.evals.validation.every_steps = 100
    config.checkpoint_every_steps = 100
    return config
  # Images paired with one recording are positives of each other (mmjax.objectives.contrastive: pairs).
  config.dataset.pair_id = 'audio_id'
  config.batch_size = 256
  config.num_train_steps = 1000
  config.log_every_steps = 50
  config.checkpoint_every_steps = 250
  return config
