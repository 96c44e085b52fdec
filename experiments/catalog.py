"""The experiments `python -m experiments.sweep --experiment=NAME` runs, declared as grids of runs.

Each experiment is a function `(quick, seeds, steps) -> Experiment` (None: its defaults). Its
full mode trains every method on the same stated budget, sized to finish in about 90 minutes on
a 2-core CPU; `quick` swaps in tiny encoders, a few steps and fewer methods, to check the whole
path (runs, results.csv, table.md, plots) in minutes: its numbers mean nothing.

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
MODALITY_DROPOUT = {'image': 0.3, 'audio': 0.3}

# Full-mode budgets (steps at each config's own batch size), sized from measurements on the
# 2-core CPU these experiments target. AV-MNIST runs get one epoch (430 steps at batch 128):
# with `--jobs=2`, an image-only run took ~30 s, the others 140-250 s each, and avmnist_fusion's
# 30 runs 43 min. robustness's 18 runs of the main job's kind, with its 7 test passes
# each, took 91 min one after another. synthetic_interactions gets 300 steps at batch 64 (6.4
# epochs of its 3,000 examples): on synergy (seed 0), tensor, late and decision fusion reached
# 52, 43 and 51% after 80 steps, 100, 60 and 50% (decision fusion's ceiling) after 300.
AVMNIST_STEPS = 430
SYNTHETIC_STEPS = 300
ROBUSTNESS_STEPS = 430
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


def _grid(name, title, budget, specs, seeds, settings, quick, columns=None) -> Experiment:
  """specs: (config, overrides, method, facets) tuples; each × seeds."""
  grid = []
  for config, overrides, method, facets in specs:
    mode = {**settings, **(_tiny_model(config) if quick else {})}
    grid += [runs_lib.Run(config, overrides, seed, mode, method, facets) for seed in range(seeds)]
  return Experiment(name, title, grid, budget, columns, quick)


def avmnist_fusion(quick: bool = False, seeds: int | None = None,
                   steps: int | None = None) -> Experiment:
  methods = ('unimodal_image', 'late_fusion') if quick else AVMNIST_METHODS
  steps = steps or (QUICK_STEPS if quick else AVMNIST_STEPS)
  specs = [(f'configs/{m}.py', {}, m, {}) for m in methods]
  batch = _batch('configs/late_fusion.py')
  budget = (f'{steps} steps at batch {batch} ({steps * batch / 55000:.2f} epochs of AV-MNIST), '
            "each method's own config otherwise; test accuracy on the 10,000 test examples at "
            'the end')
  return _grid('avmnist_fusion', 'Fusion methods on AV-MNIST', budget, specs,
               seeds or (1 if quick else 3), _budget(steps, _test_eval()), quick)


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


def _robustness_eval(quick: bool) -> dict:
  """The main job's own robustness evaluator (conditions as configs/late_fusion.py states them),
  run once at the end; quick mode on the validation split with two noise levels."""
  main = runs_lib.load_config(runs_lib.Run('configs/late_fusion.py'), with_values=False)
  if 'robustness' not in main.get('evals', {}):
    raise UserError('configs/late_fusion.py has no evals.robustness evaluator; the robustness '
                    'experiment reads its conditions from there')
  cfg = main.evals.robustness.to_dict()
  cfg['every_steps'] = 0
  if quick:
    cfg['split'] = 'validation'
    cfg['noise'] = {m: {k: tuple(v)[:2] for k, v in levels.items()}
                    for m, levels in cfg.get('noise', {}).items()}
  return {'robustness': cfg}


def robustness(quick: bool = False, seeds: int | None = None,
               steps: int | None = None) -> Experiment:
  methods = ('late_fusion',) if quick else ROBUSTNESS_METHODS
  steps = steps or (QUICK_STEPS if quick else ROBUSTNESS_STEPS)
  dropout = ', '.join(f'{m} {p:g}' for m, p in MODALITY_DROPOUT.items())
  specs = []
  for m in methods:
    specs.append((f'configs/{m}.py', {}, m, {'training': 'standard'}))
    specs.append((f'configs/{m}.py', {'modality_dropout': dict(MODALITY_DROPOUT)}, m,
                  {'training': 'modality dropout'}))
  split = 'validation' if quick else 'test'
  batch = _batch('configs/late_fusion.py')
  budget = (f'{steps} steps at batch {batch} ({steps * batch / 55000:.2f} epochs of AV-MNIST), '
            f'with and without modality dropout ({dropout}) in training; accuracy on the {split} '
            'split with each modality missing and with extra noise on the (already noisy) '
            f'{split} audio')
  return _grid('robustness', 'Robustness to a missing or noisier modality', budget, specs,
               seeds or (1 if quick else 3),
               _budget(steps, _robustness_eval(quick)), quick)


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


EXPERIMENTS: dict[str, Callable[..., Experiment]] = {
    'avmnist_fusion': avmnist_fusion,
    'synthetic_interactions': synthetic_interactions,
    'robustness': robustness,
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
