"""`tensor_fusion` (TFN, Zadeh et al., 2017): the outer product of [z_m; 1] over modalities,
z_m a small projection of each pooled encoding, into the MLP head.

Variants as in configs/late_fusion.py (`avmnist`, `synthetic`, `modality_dropout`), whose dataset
and encoders this reuses; only the fusion differs, and on AV-MNIST the gradient norm is clipped at
8, as MultiBench's trainer clips it. The outer product multiplies two LeNets' unnormalised features:
at initialisation the loss is 4.2 and the gradient norm 63 (seed 0), and unclipped at lr 0.1 that
seed stopped non-finite at step 5. The fusion comparison (`--experiment=avmnist_fusion`) keeps one
clipping rule for every method, the main job's (none), and trains it there with a 100-step
linear warm-up instead (`--config.optimizer.warmup_steps=100`), under which all five seeds are
healthy (`--experiment=avmnist_fusion_warmup` shows its runs with and without).
"""

from configs import late_fusion


def get_config(arg: str = 'avmnist'):
  config = late_fusion.get_config(arg)
  config.model.fusion = {'name': 'tensor_fusion', 'dim': 16}
  if arg != 'synthetic':
    config.optimizer.grad_clip_norm = 8.0
  return config
