"""Configs for `experiments.benchmark` on random inputs (no dataset needed), for accelerators.

  python -m experiments.benchmark --config=experiments/bench_configs.py:main_job
  python -m experiments.benchmark --config=experiments/bench_configs.py:mbt_vitb

- `main_job`: configs/late_fusion.py (the main job's model, batch and optimizer) on random inputs
  of AV-MNIST's shapes: 28x28 images, 1-s waveforms at 8 kHz (the log-mel runs on the device).
- `mbt_vitb`: MBT (bottleneck fusion, Nagrani et al., 2021) at ViT-B size in bfloat16: a
  224x224 RGB frame (196 patches of 16x16) and a 512-frame x 128-mel spectrogram (256 patches),
  12 layers per modality of width 768, 12 heads, MLP 3072, fusion through 4 bottleneck tokens
  from layer 8 on, as in the paper; batch 64.

A `_tiny` suffix (`main_job_tiny`, `mbt_vitb_tiny`) shrinks either to seconds on a CPU, to check
the benchmark script itself.
"""

import ml_collections

from configs import late_fusion


def main_job(tiny: bool = False) -> ml_collections.ConfigDict:
  config = late_fusion.get_config('avmnist')
  config.benchmark_inputs = {'image': {'shape': (28, 28, 1)}, 'audio': {'shape': (8000,)}}
  if tiny:
    config.benchmark_inputs.audio.shape = (1000,)
    config.model.frontends.audio.n_mels = 16
    for encoder in config.model.encoders.values():
      encoder.update(channels=2, additional_layers=1)
    config.batch_size = 8
  return config


def mbt_vitb(tiny: bool = False) -> ml_collections.ConfigDict:
  config = late_fusion.get_config('avmnist')
  dim, layers, heads, patch = (32, 2, 2, 8) if tiny else (768, 12, 12, 16)
  image, audio = ((32, 32, 3), (32, 16)) if tiny else ((224, 224, 3), (512, 128))
  config.benchmark_inputs = {'image': {'shape': image}, 'audio': {'shape': audio}}
  config.model.frontends = {}  # the spectrogram is the input
  # The encoders only cut patches (num_layers=0); the fusion holds both modalities' 12 layers.
  patches = {'dim': dim, 'num_layers': 0, 'num_heads': heads, 'patch_size': patch,
             'cls_token': False}
  config.model.encoders = {'image': {'name': 'vit', **patches},
                           'audio': {'name': 'ast', **patches}}
  config.model.fusion = {'name': 'bottleneck_fusion', 'dim': dim, 'num_layers': layers,
                         'fusion_layer': layers * 2 // 3, 'num_bottlenecks': 4,
                         'num_heads': heads, 'mlp_ratio': 4}
  config.model.head = {'hidden': (), 'dropout': 0.0}
  config.dtype = 'bfloat16'
  config.batch_size = 8 if tiny else 64
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 1e-4
  return config


def get_config(arg: str = 'main_job'):
  name, tiny = (arg[:-len('_tiny')], True) if arg.endswith('_tiny') else (arg, False)
  builders = {'main_job': main_job, 'mbt_vitb': mbt_vitb}
  if name not in builders:
    raise ValueError(f'unknown benchmark config {arg!r}; valid: '
                     f'{", ".join(sorted(builders))} (and each with _tiny)')
  return builders[name](tiny)
