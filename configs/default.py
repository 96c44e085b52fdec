"""Defaults every experiment config starts from; each method's config overrides a few fields.

Run any config with `python -m mmjax.main --config=configs/NAME.py --workdir=DIR`, and override a
field with `--config.a.b=value`. Config files are Python and run as code: only use trusted ones.
"""

import ml_collections


def synthetic_dataset(variant: str = 'redundant') -> ml_collections.ConfigDict:
  """The deterministic tri-modal dataset (mmjax.data.synthetic) and its modality mapping."""
  return ml_collections.ConfigDict({
      'name': f'synthetic/{variant}',
      'data_dir': None,        # TFDS_DATA_DIR or TFDS's default when None
      'raw_data_dir': None,    # MMJAX_RAW_DATA_DIR when None
      'train_split': 'train',
      'num_workers': 0,        # grain worker processes for decoding (0 = in the main process)
      'read_threads': 0,       # threads reading batches ahead (0 = one per core, at most 16)
      # True: no global training batch holds two examples of one pair (needs pair_id;
      # mmjax.data.input_pipeline.OneExamplePerPair)
      'one_example_per_pair': False,
      # modality → TFDS feature and preprocessing (mmjax.data.preprocess)
      'modalities': {
          'image': {'feature': 'image', 'mean': 0.5, 'std': 0.5},
          'audio': {'feature': 'audio'},
          'text': {'feature': 'text', 'max_length': 16},
      },
      'labels': {'label': 'label'},  # task → TFDS feature
      'joins': {},
  })


def avmnist_dataset(variant: str = 'standard') -> ml_collections.ConfigDict:
  """AV-MNIST protocol v1 (docs/datasets.md); audio is stored once per FSDD recording."""
  ds = synthetic_dataset()
  ds.name = f'avmnist/{variant}'
  ds.modalities = {'image': {'feature': 'image', 'mean': 0.5, 'std': 0.5},
                   'audio': {'feature': 'audio'}}
  ds.joins = {'audio': {'dataset': f'fsdd/{variant}', 'key': 'audio_id', 'id': 'recording_id',
                        'feature': 'audio'}}
  return ds


def logmel(sample_rate: int = 8000, **kwargs) -> ml_collections.ConfigDict:
  """The audio front end (mmjax.models.frontend.LogMel); by default the datasheet's: 64-bin
  log-mel, 256-sample window, hop 80 — 97 frames x 64 mels on a 1-s clip at 8 kHz."""
  cfg = {'name': 'logmel', 'sample_rate': sample_rate, 'n_fft': 256, 'hop_length': 80,
         'n_mels': 64, 'log_offset': 1e-6, 'per_example_norm': False}
  cfg.update(kwargs)
  return ml_collections.ConfigDict(cfg)


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.batch_size = 64            # global: across all devices and hosts
  # Each step's batch in this many micro-batches, their gradients averaged: the same update with
  # 1/k of the activation memory (mmjax.training.steps.accumulated_gradients)
  config.grad_accum_steps = 1
  # Parameters, their moving average and the optimizer state split over the devices (FSDP-style)
  # instead of replicated on each: per-device state memory ÷ devices (mmjax.parallel.state_sharding)
  config.fsdp = False
  config.num_train_steps = 300
  config.num_train_epochs = 0.0     # > 0: train this many epochs instead (sets num_train_steps)
  config.log_every_steps = 25       # also the host-sync interval (keep small on multi-device CPU)
  config.checkpoint_every_steps = 100
  config.max_checkpoints_to_keep = 3
  config.on_nonfinite = 'stop'      # 'stop' or 'skip' a step whose loss or gradient is not finite
  config.modality_dropout = {}      # {modality: p}: train with each modality absent w.p. p
  config.modality_noise = {}        # {modality: {'p': prob, 'snr_db' | 'std': (low, high)}}
  # A fixed front end of a modality joined by id (AV-MNIST's audio: 3,000 recordings) computed
  # once per recording at the start instead of once per example in every step; evaluation keeps
  # the waveforms (mmjax.training.features)
  config.precompute_frontends = False
  config.select_best = ''           # 'EVALUATOR/METRIC': final evaluators score the best state
  # > 0: stop training once select_best's metric has not improved in this many of its evaluator's
  # evaluations (0: train num_train_steps); the final evaluators score the best state
  config.early_stopping_patience = 0
  # > 0: stop training as soon as select_best's metric reaches this value (at least it for a
  # maximised metric, at most for a loss), e.g. a task's Bayes ceiling (0: no target)
  config.early_stopping_target = 0.0
  config.init_from = ''             # a workdir: a fresh run starts from its matching params
  config.init_from_pattern = ''     # regex: copy only the parameters whose path matches it
  config.freeze = ''                # regex: parameters whose path matches it are not trained
  # Evaluate (and hand to distillation and init_from) an exponential moving average of the
  # parameters with this decay, e.g. 0.99; 0: the parameters themselves
  # (mmjax.training.steps.ema_decay)
  config.ema_decay = 0.0
  config.dtype = 'float32'          # compute dtype: 'float32' or 'bfloat16' (params stay float32)
  # JAX's persistent compilation cache: 'auto' ($MMJAX_COMPILATION_CACHE, else
  # ~/.cache/mmjax/jax), 'off', or a directory (mmjax.compilation)
  config.compilation_cache = 'auto'
  # A jax.profiler trace of steps first_step+1 .. first_step+num_steps in <workdir>/profile
  # (num_steps=0: none); `python -m mmjax.profiling --workdir=DIR` summarises it.
  config.profile = {'first_step': 0, 'num_steps': 0}

  # What is minimised (mmjax.objectives) and what is measured (mmjax.evaluators). Every
  # evaluator also runs once at the end; every_steps=0 runs it only then.
  config.objective = {'name': 'classification', 'task_weighting': 'fixed', 'aux_weight': 1.0}
  config.evals = {
      'validation': {'type': 'classification', 'split': 'validation', 'every_steps': 100},
      'test': {'type': 'classification', 'split': 'test', 'every_steps': 0},
  }

  config.dataset = synthetic_dataset()
  config.tasks = {'label': {'num_classes': 10, 'weight': 1.0}}

  config.model = ml_collections.ConfigDict()
  config.model.frontends = {'audio': logmel(hop_length=128, n_mels=32)}
  config.model.encoders = {
      'image': {'name': 'cnn'},
      'audio': {'name': 'cnn'},
      'text': {'name': 'lstm', 'vocab_size': 64, 'hidden': (64, 64)},
  }
  config.model.fusion = {'name': 'late_fusion'}
  config.model.head = {'hidden': (128, 64), 'dropout': 0.5, 'param_init': 'flax'}  # or 'torch'
  config.model.unimodal_heads = {}  # task-level fusion: e.g. {'hidden': (64,)} adds a head per modality

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 20
  config.optimizer.weight_decay = 1e-4
  # Which parameters decay: 'kernels' (2+ dimensions; not biases or norm scales) or 'all' (as a
  # PyTorch optimizer's weight_decay does, MultiBench's)
  config.optimizer.weight_decay_on = 'kernels'
  config.optimizer.momentum = 0.9     # sgd only
  config.optimizer.grad_clip_norm = 1.0
  # ((regex over parameter paths, factor), ...): the parameters a pattern matches first train at
  # factor x the learning rate, e.g. (('^encoders_audio/', 3.0),); paths: mmjax.optim.param_path
  config.optimizer.lr_multipliers = ()
  return config


def keep_modalities(config: ml_collections.ConfigDict, keep) -> ml_collections.ConfigDict:
  """Drops every modality not in `keep` from the model, the dataset and the robustness
  evaluators (unimodal baselines). An evaluator left with nothing to vary goes too."""
  for group in (config.model.encoders, config.model.frontends, config.dataset.modalities,
                config.dataset.joins):
    for modality in [m for m in group if m not in keep]:
      del group[modality]
  for name, cfg in list(config.get('evals', {}).items()):
    if cfg.get('type') != 'robustness':
      continue
    if 'missing' in cfg:
      cfg.missing = tuple(m for m in cfg.missing if m in keep)
    if 'noise' in cfg:
      cfg.noise = {m: levels for m, levels in cfg.noise.items() if m in keep}
    # Unset, `missing` is every modality when there are several (mmjax.evaluators.Robustness).
    removes_some = len(keep) > 1 and cfg.get('missing', True)
    if not cfg.get('noise') and not removes_some:
      del config.evals[name]
  return config
