"""The experiments `python -m experiments.sweep --experiment=NAME` runs, declared as grids of runs.

Each experiment is a function `(quick, seeds, steps) -> Experiment` (None: its defaults). The
AV-MNIST experiments train every method on the main job's own budget and selection (its config's
3 epochs; validation accuracy every 0.3 epoch picks the state that test and robustness score),
five seeds a method (ten for the recipe ablation). A full sweep takes hours on a 2-core CPU: it
resumes where it stopped, so run it in the background with `--jobs=2` and aggregate as runs
finish. `quick` swaps in tiny encoders, a few steps and fewer methods, to check the whole path
(runs, results.csv, table.md, plots) in minutes: its numbers mean nothing.

Adding one: write the function and register it in EXPERIMENTS.
"""

import dataclasses
import functools
from typing import Callable

from experiments import runs as runs_lib
from mmjax.errors import UserError

AVMNIST_METHODS = ('unimodal_image', 'unimodal_audio', 'early_fusion', 'late_fusion',
                   'decision_fusion', 'tensor_fusion', 'lowrank_fusion', 'gated_fusion', 'mult',
                   'bottleneck_fusion')
# `redundant_noisy`, not `redundant`: on `redundant` every method but audio alone reached 100% in
# 300 steps, so it told the methods apart no more than `unique` does (results/ before 3.0.0).
SYNTHETIC_DATASETS = ('redundant_noisy', 'unique', 'synergy')
ROBUSTNESS_METHODS = ('late_fusion', 'decision_fusion', 'gated_fusion')
UNIMODAL_METHODS = ('unimodal_image', 'unimodal_audio')
MODALITY_DROPOUT = {'image': 0.3, 'audio': 0.3}
AVMNIST_SEEDS = 5   # a comparison between methods: five seeds each

# synthetic_interactions gets 300 steps at batch 64 (6.4 epochs of its 3,000 examples): on
# synergy (seed 0), tensor, late and decision fusion reached 52, 43 and 51% after 80 steps,
# 100, 60 and 50% (decision fusion's ceiling) after 300.
SYNTHETIC_STEPS = 300
QUICK_STEPS = 4


@dataclasses.dataclass(frozen=True)
class Experiment:
  """A grid of runs and how to present it.

  columns: a facet whose values become column groups of table.md (e.g. the dataset); None for
    one column per metric. budget: a sentence that states the budget every method got.
  """
  name: str
  title: str
  runs: list
  budget: str
  columns: str | None = None
  quick: bool = False
  seeds: int | None = None   # as given on the command line (None: the experiment's default)
  steps: int | None = None   # likewise

  @property
  def command(self) -> str:
    return (f'python -m experiments.sweep --experiment={self.name}' +
            (' --quick' if self.quick else '') +
            (f' --seeds={self.seeds}' if self.seeds is not None else '') +
            (f' --steps={self.steps}' if self.steps is not None else ''))


def _batch(config: str) -> int:
  return runs_lib.load_config(runs_lib.Run(config), with_values=False).batch_size


def _test_eval(split: str = 'test') -> dict:
  return {'test': {'type': 'classification', 'split': split, 'every_steps': 0}}


def _budget(steps: int, evals: dict) -> dict:
  """Settings every run of a mode shares: `steps` of training, `evals` at the end only, on the
  last state (no `select_best`: there is no validation evaluator to select by)."""
  return {'num_train_steps': steps, 'log_every_steps': max(1, min(50, steps // 4)),
          'checkpoint_every_steps': max(1, steps // 2), 'evals': evals, 'select_best': ''}


_TINY = {'image': {'name': 'cnn', 'features': (4,), 'kernel_sizes': (3,), 'pool': (True,)},
         'audio': {'name': 'cnn', 'features': (4,), 'kernel_sizes': (3,), 'pool': (True,)},
         'text': {'name': 'lstm', 'vocab_size': 64, 'hidden': (8,)}}


@functools.cache
def _modalities(config: str) -> tuple[str, ...]:
  return tuple(runs_lib.load_config(runs_lib.Run(config), with_values=False).model.encoders)


def _tiny_model(config: str) -> dict:
  """Quick mode: 4-channel encoders and an 8-bin log-mel, so a run compiles in seconds."""
  modalities = _modalities(config)
  tiny = {'model.encoders': {m: dict(_TINY[m]) for m in modalities}}
  if 'audio' in modalities:
    tiny['model.frontends.audio.n_mels'] = 8
  return tiny


def _grid(name, title, budget, specs, seeds, settings, quick, columns=None,
          seed_major=False) -> Experiment:
  """specs: (config, overrides, method, facets[, seeds]) tuples; each × seeds (its own, where a
  spec gives them). `settings`: a dict every run shares, or a function of the config file giving
  its runs'. `seed_major` orders the runs seed by seed (every spec's seed 0 first), so that a
  sweep stopped part-way leaves paired comparisons on its first seeds."""
  specs = [(*spec[:4], spec[4] if len(spec) > 4 else seeds) for spec in specs]
  most = max((spec[4] for spec in specs), default=0)
  order = [(spec, seed) for seed in range(most) for spec in specs if seed < spec[4]] \
      if seed_major else [(spec, seed) for spec in specs for seed in range(spec[4])]
  grid = []
  for (config, overrides, method, facets, _), seed in order:
    shared = settings(config) if callable(settings) else settings
    mode = {**shared, **(_tiny_model(config) if quick else {})}
    grid.append(runs_lib.Run(config, overrides, seed, mode, method, facets))
  return Experiment(name, title, grid, budget, columns, quick)


def _main_job_budget(steps: int | None, quick: bool) -> tuple[Callable[[str], dict], str]:
  """(settings of a config's runs, budget sentence) of an AV-MNIST experiment: with `steps`
  unset, each config's own budget and selection (the main job's: no settings); with `steps`,
  that many steps, then test and the config's robustness evaluator on the last state."""
  main = runs_lib.load_config(runs_lib.Run('configs/late_fusion.py'), with_values=False)
  epochs = lambda n: f'{n * main.batch_size / 55000:.2f} epochs of AV-MNIST'
  if steps:
    split = 'validation' if quick else 'test'
    settings = lambda config: _budget(steps, {**_test_eval(split),
                                              **_robustness_eval(quick, config)})
    return settings, (f'{steps} steps at batch {main.batch_size} ({epochs(steps)}); test and '
                      'robustness on the last state')
  return lambda config: {}, (f"the main job's budget and selection for every method: {main.num_train_steps} "
              f'steps at batch {main.batch_size} ({epochs(main.num_train_steps)}), validation '
              f'accuracy every {main.evals.validation.every_steps} steps selects the state that '
              'test and robustness (each modality missing, extra audio noise) score')


def avmnist_fusion(quick: bool = False, seeds: int | None = None,
                   steps: int | None = None) -> Experiment:
  methods = ('unimodal_image', 'late_fusion') if quick else AVMNIST_METHODS
  settings, budget = _main_job_budget(QUICK_STEPS if quick else steps, quick)
  specs = [(f'configs/{m}.py', {}, m, {}) for m in methods]
  return _grid('avmnist_fusion', 'Fusion methods on AV-MNIST', budget + "; each method's own "
               'config otherwise', specs, seeds or (1 if quick else AVMNIST_SEEDS), settings,
               quick, seed_major=True)


def synthetic_interactions(quick: bool = False, seeds: int | None = None,
                           steps: int | None = None) -> Experiment:
  methods = ('late_fusion',) if quick else AVMNIST_METHODS
  steps = steps or (QUICK_STEPS if quick else SYNTHETIC_STEPS)
  specs = [(f'configs/{m}.py:synthetic', {'dataset.name': f'synthetic/{d}'}, m, {'dataset': d})
           for m in methods for d in SYNTHETIC_DATASETS]
  batch = _batch('configs/late_fusion.py:synthetic')
  budget = (f'{steps} steps at batch {batch} ({steps * batch / 3000:.1f} epochs of the 3,000 '
            "training examples), each method's `:synthetic` config otherwise; test accuracy on "
            '1,000 examples; chance is 10%')
  return _grid('synthetic_interactions', 'Which fusions capture redundancy, uniqueness, synergy',
               budget, specs, seeds or (1 if quick else 3), _budget(steps, _test_eval()), quick,
               columns='dataset')


def _robustness_eval(quick: bool, config: str = 'configs/late_fusion.py') -> dict:
  """`config`'s own robustness evaluator (a unimodal config's keeps only its modality's noise,
  or has none), run once at the end; quick mode on the validation split with two noise levels."""
  loaded = runs_lib.load_config(runs_lib.Run(config), with_values=False)
  if 'robustness' not in loaded.get('evals', {}):
    return {}
  cfg = loaded.evals.robustness.to_dict()
  cfg['every_steps'] = 0
  if quick:
    cfg['split'] = 'validation'
    cfg['noise'] = {m: {k: tuple(v)[:2] for k, v in levels.items()}
                    for m, levels in cfg.get('noise', {}).items()}
  return {'robustness': cfg}


def robustness(quick: bool = False, seeds: int | None = None,
               steps: int | None = None) -> Experiment:
  methods = ('late_fusion',) if quick else ROBUSTNESS_METHODS
  dropout = ', '.join(f'{m} {p:g}' for m, p in MODALITY_DROPOUT.items())
  specs = [(f'configs/{m}.py', {}, m, {'training': 'unimodal'})
           for m in (() if quick else UNIMODAL_METHODS)]
  for m in methods:
    specs.append((f'configs/{m}.py', {}, m, {'training': 'standard'}))
    specs.append((f'configs/{m}.py', {'modality_dropout': dict(MODALITY_DROPOUT)}, m,
                  {'training': 'modality dropout'}))
  settings, budget = _main_job_budget(QUICK_STEPS if quick else steps, quick)
  split = 'validation' if quick else 'test'
  budget = (f'{budget}; each fusion with and without modality dropout ({dropout}) in training, '
            f'beside the unimodal models; accuracy on the {split} split with each modality '
            f'missing and with extra noise on the (already noisy) {split} audio')
  return _grid('robustness', 'Robustness to a missing or noisier modality', budget, specs,
               seeds or (1 if quick else AVMNIST_SEEDS), settings, quick, seed_major=True)


ZOO_STEPS = 300


def config_names(variant: str) -> list[str]:
  """Every config in configs/ that has `variant` (get_config raises ValueError otherwise)."""
  names = []
  for path in sorted((runs_lib.REPO / 'configs').glob('*.py')):
    if path.stem in ('__init__', 'default'):
      continue
    try:
      runs_lib.load_config(runs_lib.Run(f'configs/{path.name}:{variant}'), with_values=False)
    except ValueError:
      continue
    names.append(path.stem)
  return names


def zoo(variant: str, quick: bool = False, seeds: int | None = None,
        steps: int | None = None) -> Experiment:
  """Every config briefly on one dataset variant: parameter counts, throughput and accuracy
  (experiments/zoo.py adds the parameter counts)."""
  steps = steps or (QUICK_STEPS if quick else ZOO_STEPS)
  specs = [(f'configs/{n}.py:{variant}', {}, n, {}) for n in config_names(variant)]
  budget = (f'{steps} steps at each config\'s own batch size and recipe, `{variant}` variant; test '
            'accuracy at the end')
  return _grid(f'zoo_{variant}', f'Every config on the {variant} data', budget, specs,
               seeds or 1, _budget(steps, _test_eval()), quick)


# The main job, and the main job with one of its departures from MultiBench's recipe undone:
# (label, overrides of configs/late_fusion.py, seeds). The warm-up, which decides whether a
# seed's audio branch learns at all, gets ten seeds a side; the rest three.
RECIPE_STEPS = (
    ('no warm-up', {'optimizer.warmup_steps': 0}, 10),
    ('main job', {}, 10),
    ("BatchNorm after every convolution (MultiBench's)",
     {'model.encoders.image.batch_norm': True, 'model.encoders.audio.batch_norm': True}, 3),
    ("gradient norm clipped at 8 (MultiBench's)", {'optimizer.grad_clip_norm': 8.0}, 3),
    ("parameters evaluated, no moving average (MultiBench's)", {'ema_decay': 0.0}, 3),
    ('one standardisation for all clips', {'model.frontends.audio.per_example_norm': False,
                                           'model.encoders.audio.input_mean': -3.21,
                                           'model.encoders.audio.input_std': 2.14}, 3),
)


def recipe_ablation(quick: bool = False, seeds: int | None = None,
                    steps: int | None = None) -> Experiment:
  """The main job and its recipe's departures, each on the main job's own budget and selection."""
  specs = [('configs/late_fusion.py', overrides, 'late_fusion', {'recipe': label},
            seeds or (1 if quick else n)) for label, overrides, n in RECIPE_STEPS]
  settings, budget = _main_job_budget(QUICK_STEPS if quick else steps, quick)
  return _grid('recipe_ablation', "The main job's recipe, one change at a time", budget, specs,
               None, settings, quick, seed_major=True)


EXPERIMENTS: dict[str, Callable[..., Experiment]] = {
    'avmnist_fusion': avmnist_fusion,
    'synthetic_interactions': synthetic_interactions,
    'robustness': robustness,
    'recipe_ablation': recipe_ablation,
}
# Tables that are not in the README: `python -m experiments.zoo --variant=...`.
OTHER_EXPERIMENTS: dict[str, Callable[..., Experiment]] = {
    'zoo_avmnist': functools.partial(zoo, 'avmnist'),
    'zoo_synthetic': functools.partial(zoo, 'synthetic'),
}


def names() -> list[str]:
  return [*EXPERIMENTS, *OTHER_EXPERIMENTS]


def get(name: str, quick: bool = False, seeds: int | None = None,
        steps: int | None = None) -> Experiment:
  """Experiment `name`; `seeds` and `steps` replace its defaults (a budget other than the stated
  one belongs in another --results_dir: a sweep refuses to resume runs of another budget)."""
  known = {**EXPERIMENTS, **OTHER_EXPERIMENTS}
  if name not in known:
    raise UserError(f'--experiment={name}: no such experiment; valid: {", ".join(known)}')
  for flag, value in (('seeds', seeds), ('steps', steps)):
    if value is not None and value < 1:
      raise UserError(f'--{flag}={value} must be at least 1')
  experiment = known[name](quick=quick, seeds=seeds, steps=steps)
  return dataclasses.replace(experiment, seeds=seeds, steps=steps)
