"""`lowrank_fusion` (LMF, Liu et al., 2018): TFN's multiplicative interactions through rank-r
modality-specific factors, without building the outer product.

Variants as in configs/late_fusion.py (`avmnist`, `synthetic`, `modality_dropout`), whose dataset,
encoders and recipe this reuses; only the fusion differs, and on AV-MNIST it trains with SGD at
0.03, the rate the fusion comparison chose on validation (`--experiment=avmnist_fusion_lr`).
"""

from configs import late_fusion


def get_config(arg: str = 'avmnist'):
  config = late_fusion.get_config(arg)
  config.model.fusion = {'name': 'lowrank_fusion', 'dim': 64, 'rank': 4}
  if arg != 'synthetic':  # tests/test_configs.py holds it to the committed search's choice
    config.optimizer.update(name='sgd', learning_rate=0.03)
  return config
