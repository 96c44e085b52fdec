"""Cross-modal contrastive pretraining on AV-MNIST: the main job's LeNet encoders (images and 97x64
log-mel spectrograms) trained to align each image with its paired recording, no labels in the loss
(mmjax.contrastive). CLIP's InfoNCE with a learned temperature by default; `contrastive.py:siglip`
uses SigLIP's sigmoid loss with a learned temperature and bias.

The encoders' pooled 48 + 192 features (image, audio) each go through a linear projection to 64
dimensions. The negatives of every pair are the rest of the global batch (256), except the other
images paired with the same recording, which are positives (`dataset.pair_id = 'audio_id'`). AdamW at 1e-3 with
a cosine schedule, 1,000 steps (4.65 passes over the 55,000 training images).

Evaluators: `validation` (the loss and in-batch pair accuracy), `retrieval` (test split: Recall@1,
5 and 10 audio→image and image→audio, same-digit and exact-pair), `probe` (a linear classifier on
the frozen encoders' pooled features, fitted on the training split, accuracy on the test split).

Fine-tune the pretrained encoders with `configs/contrastive_finetune.py`.

Variants: `:siglip`; `:synthetic` (the synthetic image and audio, a smaller budget).
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
  # Images paired with one recording are positives of each other (mmjax.contrastive: pairs).
  config.dataset.pair_id = 'audio_id'
  config.batch_size = 256
  config.num_train_steps = 1000
  config.log_every_steps = 50
  config.checkpoint_every_steps = 250
  return config
