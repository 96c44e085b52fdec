"""The experiments `python -m experiments.sweep --experiment=NAME` runs, declared as grids of runs.

Each experiment is a function `(quick, seeds, steps) -> Experiment` (None: its defaults). The
AV-MNIST experiments train every method on the main job's own budget and selection (its config's 3
epochs; validation accuracy every 0.3 epoch picks the state that test and robustness score), five
seeds a method (three in `imbalance`; ten or three an arm in the recipe ablation). Each fusion's
learning rate is first chosen on validation from a small grid (`avmnist_fusion_lr`, one seed); the
fusion comparison and the robustness experiment then read the committed choice. The paradigms follow
the same pattern: a search on validation with one seed (`distillation_weights`, `imbalance_alpha`;
`gradient_blending_weights` estimates its weights from three models, each trained and at
initialisation), then seeds at the chosen setting (`distillation`, `imbalance`); `contrastive`
pretrains beside its controls and `contrastive_labels` fine-tunes those runs. An experiment that
reads another's runs (a teacher, pretrained encoders, shared identical runs) runs after it. A full
sweep takes hours on a 2-core CPU: it resumes where it stopped, so run it in the background with
`--jobs=2` and aggregate as runs finish. `quick` swaps in tiny encoders, a few steps and fewer
methods, to check the whole path (runs, results.csv, table.md, plots) in minutes: its numbers mean
nothing.

Adding one: write the function and register it in EXPERIMENTS.
"""

import copy
import dataclasses
import functools
import json
import math
import pathlib
from typing import Callable

from experiments import runs as runs_lib
from mmjax.errors import UserError

AVMNIST_METHODS = ('unimodal_image', 'unimodal_audio', 'early_fusion', 'late_fusion',
                   'decision_fusion', 'tensor_fusion', 'lowrank_fusion', 'gated_fusion', 'mult',
                   'bottleneck_fusion')
# The interaction probes, each with a known decomposition (mmjax.data.synthetic); `redundant`
# is the tests' data.
SYNTHETIC_DATASETS = ('redundancy', 'unique_image', 'unique_audio', 'synergy', 'mixed')
ROBUSTNESS_METHODS = ('late_fusion', 'decision_fusion', 'gated_fusion')
UNIMODAL_METHODS = ('unimodal_image', 'unimodal_audio')
MODALITY_DROPOUT = {'image': 0.3, 'audio': 0.3}
AVMNIST_SEEDS = 5   # a comparison between methods: five seeds each

# synthetic_interactions trains each run until it converges: validation accuracy every 50 steps
# selects the state the test and PID evaluators score, and a run stops as soon as that accuracy
# reaches the probe's Bayes ceiling (nothing is left to learn), once it has not improved in 20
# evaluations (1,000 steps), or at 3,000 steps. (Version 3's fixed 300 steps stopped seeds of one
# method at 100% and at ~50% on its synergy column: a plateau shorter than the patience does not end
# a run. In a development run, late fusion's seed 1 on synergy sat at 48-52% validation accuracy for
# 550 steps and reached 100% at step 600, 50 steps before a patience of 10 evaluations would have
# stopped it; with 10, most runs spent 500 of their 550 steps after reaching 100%.)
SYNTHETIC_STEPS = 3000
SYNTHETIC_EVERY = 50
SYNTHETIC_PATIENCE = 20
SYNTHETIC_SEEDS = 5
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
  metrics: str | None = None  # a regular expression of the columns tables show (None: accuracy)
  quick: bool = False
  seeds: int | None = None   # as given on the command line (None: the experiment's default)
  steps: int | None = None   # likewise
  shares_runs_with: tuple[str, ...] = ()  # experiments whose identical runs this one reuses
  paired_with: str | None = None  # a method each other one is compared with seed by seed
  paired_on: tuple[str, ...] = ()  # facets a pair shares beside the seed
  # (facet, value) pairs that single out each method's baseline among its own runs: each method
  # is compared with its own (recipe_ablation: each recipe against the main job's), or only
  # paired_with where one is named (imbalance: each remedy against no remedy)
  paired_baseline: tuple[tuple[str, str], ...] = ()
  remedies: tuple[str, ...] = ()  # experiments training its failing methods again with a fix

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


# The fields an experiment's overrides may set (e.g. the recipe ablation's batch_norm) are there.
_TINY_CNN = {'name': 'cnn', 'features': (4,), 'kernel_sizes': (3,), 'pool': (True,),
             'batch_norm': False, 'input_mean': 0.0, 'input_std': 1.0}
_TINY = {'image': _TINY_CNN, 'audio': _TINY_CNN,
         'text': {'name': 'lstm', 'vocab_size': 64, 'hidden': (8,)}}


@functools.cache
def _model(config: str):
  return runs_lib.load_config(runs_lib.Run(config), with_values=False).model


def _tiny_model(config: str) -> dict:
  """Quick mode: 4-channel encoders and an 8-bin log-mel, so a run compiles in seconds."""
  model = _model(config)
  tiny = {'model.encoders': {m: dict(_TINY[m]) for m in model.encoders}}
  if model.get('frontends', {}).get('audio', {}).get('name') == 'logmel':
    tiny['model.frontends.audio.n_mels'] = 8
  return tiny


def _grid(name, title, budget, specs, seeds, settings, quick, columns=None, metrics=None,
          seed_major=False, first_seed=0) -> Experiment:
  """specs: (config, overrides, method, facets[, seeds]) tuples; each × seeds (its own, where a
  spec gives them); overrides may be a function of the seed. `settings`: a dict every run
  shares, or a function of the config file giving its runs'. `seed_major` orders the runs seed
  by seed (every spec's seed 0 first), so that a sweep stopped part-way leaves paired
  comparisons on its first seeds."""
  specs = [(*spec[:4], spec[4] if len(spec) > 4 else seeds) for spec in specs]
  most = max((spec[4] for spec in specs), default=0)
  order = [(spec, seed) for seed in range(most) for spec in specs if seed < spec[4]] \
      if seed_major else [(spec, seed) for spec in specs for seed in range(spec[4])]
  grid = []
  for (config, overrides, method, facets, _), seed in order:
    shared = settings(config) if callable(settings) else settings
    mode = {**shared, **(_tiny_model(config) if quick else {})}
    seed += first_seed
    own = overrides(seed) if callable(overrides) else overrides  # a run that reads its seed's
    grid.append(runs_lib.Run(config, own, seed, mode, method, facets))
  return Experiment(name, title, grid, budget, columns, metrics, quick)


def _main_job_budget(steps: int | None, quick: bool) -> tuple[Callable[[str], dict], str]:
  """(settings of a config's runs, budget sentence) of an AV-MNIST experiment: with `steps`
  unset, each config's own budget and selection (the main job's: no settings); with `steps`,
  that many steps and the same selection scaled to them (validation every tenth of the run, as
  the main job's every 130 of 1,300), so that a search still scores its settings; quick mode:
  test and the config's robustness evaluator on the last state."""
  main = runs_lib.load_config(runs_lib.Run('configs/late_fusion.py'), with_values=False)
  epochs = lambda n: f'{n * main.batch_size / AVMNIST_TRAIN_EXAMPLES:.2f} epochs of AV-MNIST'
  if quick:
    settings = lambda config: _budget(steps, {**_test_eval('validation'),
                                              **_robustness_eval(quick, config)})
    return settings, (f'{steps} steps at batch {main.batch_size} ({epochs(steps)}); test and '
                      'robustness on the last state')
  steps = steps or main.num_train_steps
  every = max(1, round(steps * main.evals.validation.every_steps / main.num_train_steps))
  selection = (f'validation accuracy every {every} steps selects the state that test and '
               'robustness (each modality missing, each swapped between examples, extra audio '
               'noise) score')
  if steps == main.num_train_steps:
    return lambda config: {}, (
        f"the main job's budget and selection for every method: {steps} steps at batch "
        f'{main.batch_size} ({epochs(steps)}), {selection}')
  settings = {'num_train_steps': steps, 'log_every_steps': min(main.log_every_steps, every),
              'checkpoint_every_steps': max(1, steps // 3), 'evals.validation.every_steps': every}
  return lambda config: settings, (
      f'{steps} steps at batch {main.batch_size} ({epochs(steps)}) for every method, {selection}')


# Each fusion's learning rate is chosen on validation (the best validation accuracy over the run,
# one seed: SEARCH_SEED, not among the reported ones) from a grid, with the optimizer its paper
# trains with: AdamW for the attention fusions, SGD for the rest; then five seeds at the chosen
# one. late_fusion is the main job itself (its recipe: the recipe ablation) and the unimodal
# models share it. Every method gets the same clipping rule, the main job's (none).
# A grid whose best setting sat on its edge is searched one step further that way (one more
# run), again while the best sits on the new edge, so that no method is reported at a rate its
# search stopped short of. Early fusion, MulT and bottleneck fusion were best at 1e-3, then at
# 3e-3, then at 1e-2; low-rank fusion at 0.03.
SGD_GRID = ('sgd', (0.03, 0.1, 0.3))
ADAMW_GRID = ('adamw', (1e-4, 3e-4, 1e-3))
GRIDS = {'early_fusion': ADAMW_GRID, 'decision_fusion': SGD_GRID, 'tensor_fusion': SGD_GRID,
         'lowrank_fusion': SGD_GRID, 'gated_fusion': SGD_GRID, 'mult': ADAMW_GRID,
         'bottleneck_fusion': ADAMW_GRID}
EDGE_EXTENSIONS = {'early_fusion': (3e-3, 1e-2, 3e-2), 'mult': (3e-3, 1e-2, 3e-2),
                   'bottleneck_fusion': (3e-3, 1e-2, 3e-2), 'lowrank_fusion': (0.01,)}
LR_SEARCH = {m: (name, tuple(sorted({*rates, *EDGE_EXTENSIONS.get(m, ())})))
             for m, (name, rates) in GRIDS.items()}
SEARCH_SEED = 100
# AV-MNIST's training examples: mmjax.data.avmnist.N_TRAIN_IMAGES (a test holds the two equal),
# not imported, so that the sweep's own process does not load TFDS.
AVMNIST_TRAIN_EXAMPLES = 55_000
SEARCH_METRIC = 'validation/best_accuracy'
SAME_CLIPPING = {'optimizer.grad_clip_norm': 0.0}


def _same_clipping(settings: Callable[[str], dict]) -> Callable[[str], dict]:
  """A config's run settings (`settings` of its file) with the one clipping rule every AV-MNIST
  comparison shares."""
  return lambda config: {**settings(config), **SAME_CLIPPING}
SEARCH_RESULTS = runs_lib.REPO / 'results' / 'avmnist_fusion_lr' / 'results.csv'


def _optimizer(name: str, lr: float) -> dict:
  return {'optimizer.name': name, 'optimizer.learning_rate': lr}


OPTIMIZER_NAMES = {'sgd': 'SGD', 'adamw': 'AdamW'}


def _setting_label(name: str, lr: float) -> str:
  return f'{OPTIMIZER_NAMES[name]} {lr:g}'


def avmnist_fusion_lr(quick: bool = False, seeds: int | None = None,
                      steps: int | None = None) -> Experiment:
  """The learning-rate search: each tuned fusion at every rate of its grid, one seed."""
  search = {'late_fusion': ('sgd', (0.1, 0.3))} if quick else LR_SEARCH
  settings, budget = _main_job_budget(QUICK_STEPS if quick else steps, quick)
  specs = [(f'configs/{m}.py', _optimizer(name, lr), m,
            {'learning rate': _setting_label(name, lr)}, seeds or 1)
           for m, (name, rates) in search.items() for lr in rates]
  base = {m: GRIDS[m] for m in search} if not quick else search
  grids = '; '.join(
      f'{OPTIMIZER_NAMES[name]} at {", ".join(f"{r:g}" for r in rates)} for '
      f'{", ".join(m for m, grid in base.items() if grid == (name, rates))}'
      for name, rates in dict.fromkeys(base.values()))
  if not quick:
    grids += ("; where the best sat on a grid's edge, a step further, again while it sat on the "
              'new edge: ' + '; '.join(
                  f'{m} {OPTIMIZER_NAMES[GRIDS[m][0]]} {", ".join(f"{lr:g}" for lr in steps)}'
                  for m, steps in EDGE_EXTENSIONS.items()))
  budget = (f'{budget}; seed {SEARCH_SEED}; no gradient clipping for any method; {grids}. Each '
            'setting scored by its best validation accuracy over the run; avmnist_fusion trains '
            'five seeds of the best')
  return _grid('avmnist_fusion_lr', "Each fusion's learning rate, chosen on validation", budget,
               specs, None, _same_clipping(settings), quick,
               metrics=f'^{SEARCH_METRIC}$', seed_major=False, first_seed=SEARCH_SEED)


def _committed_rows(path, where: dict | None = None) -> list[dict]:
  """The rows of the results.csv at `path` ([] before it exists) with the facet values `where`."""
  from experiments import aggregate  # pylint: disable=import-outside-toplevel
  path = pathlib.Path(path)
  return [r for r in (aggregate.read_csv(path) if path.exists() else [])
          if all(r.get(k) == v for k, v in (where or {}).items())]


def _best_on_validation(path, method: str, candidates: list[dict],
                        where: dict | None = None) -> dict | None:
  """The overrides among `candidates` whose run of `method` in the search results at `path`
  (those rows with the facet values `where`) has the best validation accuracy, among its healthy
  runs (all, where none is); None until every candidate has finished. A candidate that diverged
  before its first scores has finished, below every scored one."""
  done = {r['overrides']: r for r in _committed_rows(path, where)
          if r['method'] == method and (SEARCH_METRIC in r or r.get('diverged'))}
  wanted = {json.dumps(c, sort_keys=True): c for c in candidates}
  if set(wanted) - set(done):
    return None
  healthy = [o for o in wanted if done[o].get('healthy', 1)] or list(wanted)
  return wanted[max(healthy, key=lambda o: done[o].get(SEARCH_METRIC, -math.inf))]


def _edge_steps_note(name: str, grid, per: str, extensions: dict) -> str:
  """The budget's account of a search's grid (`name` values `grid` at each `per`) and of the
  steps past its edge, {label: values}."""
  further = '; '.join(f'{label} {", ".join(f"{v:g}" for v in values)}'
                      for label, values in extensions.items())
  return (f'; {name} {", ".join(f"{v:g}" for v in grid)} at each {per} and, where the best sat '
          f"on the grid's edge, a step further: {further}")


def chosen_settings(path=None) -> dict[str, dict]:
  """{method: optimizer overrides} chosen by the committed learning-rate search: the setting of
  its grid with the best validation accuracy, among its healthy runs. A method whose search has
  not finished every setting is left out."""
  chosen = {method: _best_on_validation(path or SEARCH_RESULTS, method,
                                        [_optimizer(name, lr) for lr in rates])
            for method, (name, rates) in LR_SEARCH.items()}
  return {m: c for m, c in chosen.items() if c is not None}


def avmnist_fusion(quick: bool = False, seeds: int | None = None,
                   steps: int | None = None) -> Experiment:
  methods = ('unimodal_image', 'late_fusion') if quick else AVMNIST_METHODS
  settings, budget = _main_job_budget(QUICK_STEPS if quick else steps, quick)
  chosen = {} if quick else chosen_settings()
  remedied = {} if quick else chosen_remedies()
  waiting = [m for m in methods if m in LR_SEARCH and m not in chosen]
  setting = _remedied(chosen, remedied)
  specs = [(f'configs/{m}.py', setting.get(m, {}), m,
            {'remedy': REMEDIES[remedied[m]].label if m in remedied else 'none'}
            if remedied else {})
           for m in methods if m not in waiting]
  picks = ', '.join(f'{m} {_setting_label(o["optimizer.name"], o["optimizer.learning_rate"])}'
                    for m, o in chosen.items())
  budget += ('; no gradient clipping for any method; late_fusion is the main job and the '
             'unimodal models share its recipe')
  if not quick:
    budget += (f'; learning rates chosen on validation (`--experiment=avmnist_fusion_lr`): '
               f'{picks or "none yet"}')
  if remedied:
    budget += ('; a method with an inert or diverged seed at its chosen rate trains with a remedy '
               f'under which all its seeds were healthy, named in its remedy column '
               f'({_remedies_note(remedied)}, whose tables show the runs without it); run health '
               'is read from the robustness evaluator, which scores the test split')
  if waiting:
    budget += f'; not run until their learning-rate search has finished: {", ".join(waiting)}'
  experiment = _grid('avmnist_fusion', 'Fusion methods on AV-MNIST', budget, specs,
                     seeds or (1 if quick else AVMNIST_SEEDS),
                     _same_clipping(settings), quick, seed_major=True)
  # The remedied runs are the remedy experiments' (trained once, read from their records).
  return dataclasses.replace(experiment, remedies=tuple(REMEDIES),
                             shares_runs_with=tuple(REMEDIES))


# The fusions with a seed whose audio branch stayed inert in avmnist_fusion, each again with an
# auxiliary head on each encoder (deep supervision: MultiBench's unimodal head, MLP 100, trained
# beside the fused head with objective.aux_weight 1; the fused head alone predicts). Each encoder
# then gets a gradient of its own whatever the fusion passes back: the test of whether a branch
# that never learned was starved of gradient by the fusion (its results say for which fusions).
AUX_METHODS = ('gated_fusion', 'mult', 'bottleneck_fusion')
AUX_HEADS = {'model.unimodal_heads': {'hidden': (100,), 'dropout': 0.0, 'param_init': 'torch',
                                      'prediction': 'fused'},
             'objective.aux_weight': 1.0}


@dataclasses.dataclass(frozen=True)
class Remedy:
  """A fix trained on avmnist_fusion's failing fusions, with and without, on the same seeds."""
  title: str
  methods: tuple[str, ...]
  facet: str                # the column that tells the runs apart
  labels: tuple[str, str]   # its values: (without, with)
  extra: dict               # the overrides the fix adds to a method's chosen setting
  what: str                 # the fix, for budget lines
  label: str                # the fix, in avmnist_fusion's remedy column


# The fusions whose failures a head per encoder does not reach: tensor fusion's seed 0 diverged at
# step 5, bottleneck fusion's inert seeds stayed inert with heads (the runs with curves show the
# audio encoder's gradient gone within 100 steps of AdamW at 0.01), and MulT had one inert seed of
# five either way (seed 1 without heads, seed 3 with them, whose audio encoder's gradient was 0
# within 600 steps). All three start at their full rate, as the main job does; a linear warm-up is
# the standard guard against early blow-up and dead units, and the recipe ablation's warm-up row
# uses the same 100 steps.
WARMUP_METHODS = ('tensor_fusion', 'bottleneck_fusion', 'mult')
WARMUP = {'optimizer.warmup_steps': 100}
# What avmnist_fusion's table points to (chosen_remedies picks one per failing method).
REMEDIES = {
    'avmnist_fusion_aux': Remedy(
        'Auxiliary unimodal heads against an inert branch', AUX_METHODS, 'heads',
        ('fused only', 'fused + a head per encoder'), AUX_HEADS,
        'an auxiliary head on each encoder (MLP 100, trained beside the fused head with weight '
        '1; the fused head predicts)', 'a head per encoder'),
    'avmnist_fusion_warmup': Remedy(
        'A learning-rate warm-up against divergence and a dead encoder', WARMUP_METHODS,
        'warm-up', ('none', '100 steps'), WARMUP,
        'a linear learning-rate warm-up over the first 100 steps', 'warm-up, 100 steps'),
}
REMEDY_RESULTS = runs_lib.REPO / 'results'


def chosen_remedies() -> dict[str, str]:
  """{method: remedy experiment} from the committed remedy results (under REMEDY_RESULTS): each
  method that had an inert or diverged seed among its AVMNIST_SEEDS runs without a remedy and
  none among its AVMNIST_SEEDS runs with it. Where two remedies qualify, the better mean
  validation accuracy; a remedy whose runs have not all finished does not."""
  best = {}
  for name, remedy in REMEDIES.items():
    rows = _committed_rows(REMEDY_RESULTS / name / 'results.csv')
    for method in remedy.methods:
      without, with_ = ([r for r in rows if r['method'] == method and r.get(remedy.facet) == label]
                        for label in remedy.labels)
      if (len(without) < AVMNIST_SEEDS or all(r['healthy'] for r in without)
          or len(with_) < AVMNIST_SEEDS or not all(r['healthy'] for r in with_)):
        continue
      score = sum(r.get(SEARCH_METRIC, 0.0) for r in with_) / len(with_)
      if method not in best or score > best[method][1]:
        best[method] = (name, score)
  return {method: name for method, (name, _) in best.items()}


def _remedied(chosen: dict, remedied: dict) -> dict:
  """{method: overrides}: `chosen` (each method's optimizer setting) with the overrides of the
  remedy avmnist_fusion adopted for it (`remedied`: chosen_remedies())."""
  return {m: {**overrides, **(REMEDIES[remedied[m]].extra if m in remedied else {})}
          for m, overrides in chosen.items()}


def _remedies_note(remedied: dict) -> str:
  """The budget's account of the remedies avmnist_fusion adopted."""
  return '; '.join(f'{", ".join(m for m in remedied if remedied[m] == name)}: '
                   f'`--experiment={name}`' for name in dict.fromkeys(remedied.values()))


def _with_and_without(methods, chosen: dict, facet: str, labels: tuple[str, str],
                      extra: dict) -> list[tuple]:
  """Specs of each method at its chosen setting (avmnist_fusion's run), then of the same with the
  `extra` overrides, their `facet` labelled `labels` (without, with)."""
  return [spec for m in methods for spec in (
      (f'configs/{m}.py', chosen.get(m, {}), m, {facet: labels[0]}),
      (f'configs/{m}.py', {**chosen.get(m, {}), **extra}, m, {facet: labels[1]}))]


def _fusion_remedy(name: str, quick: bool, seeds: int | None, steps: int | None) -> Experiment:
  """The remedy `name`'s methods at avmnist_fusion's settings and seeds, without and with it."""
  remedy = REMEDIES[name]
  methods = ('late_fusion',) if quick else remedy.methods
  settings, budget = _main_job_budget(QUICK_STEPS if quick else steps, quick)
  chosen = {} if quick else chosen_settings()
  waiting = [m for m in methods if m in LR_SEARCH and m not in chosen]
  specs = _with_and_without([m for m in methods if m not in waiting], chosen, remedy.facet,
                            remedy.labels, remedy.extra)
  budget += (f'; each fusion at the learning rate avmnist_fusion chose for it, with and without '
             f'{remedy.what}; no gradient clipping; a run that avmnist_fusion or the other '
             'remedy trains too is trained once (avmnist_fusion trains a method without a remedy '
             'until one makes all its seeds healthy, then with it)')
  if waiting:
    budget += f'; not run until their learning-rate search has finished: {", ".join(waiting)}'
  experiment = _grid(name, remedy.title, budget, specs, seeds or (1 if quick else AVMNIST_SEEDS),
                     _same_clipping(settings), quick, seed_major=True)
  # A method both remedies try (bottleneck fusion) has one run without either, trained once.
  others = tuple(other for other in REMEDIES if other != name)
  return dataclasses.replace(experiment, shares_runs_with=('avmnist_fusion', *others),
                             paired_baseline=((remedy.facet, remedy.labels[0]),))


def avmnist_fusion_aux(quick: bool = False, seeds: int | None = None,
                       steps: int | None = None) -> Experiment:
  """avmnist_fusion's collapsing fusions with and without auxiliary unimodal heads, same seeds."""
  return _fusion_remedy('avmnist_fusion_aux', quick, seeds, steps)


def avmnist_fusion_warmup(quick: bool = False, seeds: int | None = None,
                          steps: int | None = None) -> Experiment:
  """avmnist_fusion's diverged and dead-encoder fusions with and without a warm-up, same seeds."""
  return _fusion_remedy('avmnist_fusion_warmup', quick, seeds, steps)


def _pid_eval(split: str) -> dict:
  return {'pid': {'type': 'pid', 'split': split, 'every_steps': 0,
                  'sources': {'image': 'image_latent', 'audio': 'audio_latent'}}}


def synthetic_interactions(quick: bool = False, seeds: int | None = None,
                           steps: int | None = None) -> Experiment:
  """Every method on each interaction probe (mmjax.data.synthetic), trained to convergence;
  test accuracy and the PID of each model's predictions beside the data's."""
  from mmjax.data import synthetic  # pylint: disable=import-outside-toplevel
  methods = ('late_fusion',) if quick else AVMNIST_METHODS
  steps = steps or (QUICK_STEPS if quick else SYNTHETIC_STEPS)
  probes = ('unique_image', 'synergy') if quick else SYNTHETIC_DATASETS
  specs = [(f'configs/{m}.py:synthetic', {'dataset.name': f'synthetic/{d}'}, m, {'dataset': d})
           for m in methods for d in probes]
  batch = _batch('configs/late_fusion.py:synthetic')
  if quick:  # no selection: 4 steps, then test (test split) and PID on validation's 500 examples
    settings = _budget(steps, {**_test_eval(), **_pid_eval('validation')})
  else:
    settings = {'num_train_steps': steps, 'log_every_steps': SYNTHETIC_EVERY,
                'checkpoint_every_steps': 250, 'select_best': 'validation/accuracy',
                'early_stopping_patience': SYNTHETIC_PATIENCE,
                'early_stopping_target': _common_ceiling(probes),
                'evals': {'validation': {'type': 'classification', 'split': 'validation',
                                         'every_steps': SYNTHETIC_EVERY},
                          **_test_eval(), **_pid_eval('test')}}
  ceilings = '; '.join(f'{d} {100 * c:.0f}% / {100 * b:.0f}%' for d in SYNTHETIC_DATASETS
                       for b, c in [synthetic.bayes_and_chance(d)])
  test = synthetic.PROBE_SPLIT_SIZES['test']
  budget = (f"each method's `:synthetic` config at batch {batch}, trained until validation "
            f'accuracy (every {SYNTHETIC_EVERY} steps) reaches the Bayes ceiling or has not '
            f'improved in {SYNTHETIC_PATIENCE} evaluations, for at most {steps} steps '
            f'({steps * batch / 3000:.0f} epochs of '
            f'the 3,000 training examples); test accuracy and PID on the {test:,} test '
            'examples, at the best validation state. Chance / Bayes ceiling given the two latent '
            f'classes: {ceilings} (on synergy a sum of per-modality scores, decision fusion\'s, '
            'reaches at most 75%: an OR of the two bits)')
  return _grid('synthetic_interactions', 'Which fusions capture redundancy, uniqueness, synergy',
               budget, specs, seeds or (1 if quick else SYNTHETIC_SEEDS), settings, quick,
               columns='dataset', metrics=r'^test/accuracy$', seed_major=True)


def _common_ceiling(probes) -> float:
  """The probes' one Bayes ceiling: the validation accuracy at which a run has converged (one
  setting serves every run, so the probes must share it)."""
  from mmjax.data import synthetic  # pylint: disable=import-outside-toplevel
  ceilings = {round(synthetic.bayes_and_chance(p)[0], 6) for p in probes}
  if len(ceilings) != 1:
    raise ValueError(f'the probes\' Bayes ceilings differ ({sorted(ceilings)}); give each its own '
                     'early_stopping_target')
  return ceilings.pop()


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
  chosen = {} if quick else chosen_settings()
  remedied = {} if quick else {m: r for m, r in chosen_remedies().items() if m in methods}
  waiting = [m for m in methods if m in LR_SEARCH and m not in chosen]
  specs = [(f'configs/{m}.py', {}, m, {'training': 'unimodal'})
           for m in (() if quick else UNIMODAL_METHODS)]
  specs += _with_and_without([m for m in methods if m not in waiting],
                             _remedied(chosen, remedied), 'training',
                             ('standard', 'modality dropout'),
                             {'modality_dropout': dict(MODALITY_DROPOUT)})
  settings, budget = _main_job_budget(QUICK_STEPS if quick else steps, quick)
  split = 'validation' if quick else 'test'
  budget = (f'{budget}; each fusion with and without modality dropout ({dropout}) in training, '
            "at the learning rate avmnist_fusion uses, beside the unimodal models; accuracy on "
            f'the {split} split with each modality missing and with extra noise on the (already '
            f'noisy) {split} audio')
  if remedied:
    budget += ('; a fusion that avmnist_fusion trains with a remedy has it in both trainings '
               f'({_remedies_note(remedied)})')
  if waiting:
    budget += f'; not run until their learning-rate search has finished: {", ".join(waiting)}'
  budget += ('; the unimodal and standard runs are those of avmnist_fusion (the same runs, '
             'trained once)')
  experiment = _grid('robustness', 'Robustness to a missing or noisier modality', budget, specs,
                     seeds or (1 if quick else AVMNIST_SEEDS), _same_clipping(settings), quick,
                     seed_major=True)
  return dataclasses.replace(experiment, shares_runs_with=('avmnist_fusion',),
                             paired_baseline=(('training', 'standard'),))


# Distillation (configs/distill_audio.py): the main job, seed 0 of avmnist_fusion (its best
# state), teaches the audio-only student at each temperature T. The student minimises
# (1 - a) · label loss + (a / T) · T²·KL: the soft term's gradient on the logits, T · (p_T - q_T),
# then has weight a, and the whole stays bounded as the label loss's is, so the unclipped SGD
# recipe holds at every T (with both weights 1, a development run at T = 4 diverged within 5
# steps). The teacher's share a is chosen on validation per T (one seed), then five seeds against
# training from scratch (unimodal_audio, the same runs as avmnist_fusion's) on the same seeds.
# As in the other searches, a grid whose best share sat on its edge is searched a step further
# that way: at T = 1 and T = 2 the best was 0.25, the smallest; at T = 4, 0.75, the largest (the
# step halves the distance to the bound, as 0.125 does below: a share of 1 drops the labels).
# One step only: at T = 4 the step, 0.875, won (59.8% against 0.75's 57.6, one seed), and the
# search stops there. The next, 0.9375, nears the labels' dropping out, and these one-seed
# differences are within the seed-to-seed spread (the audio-only model's std, 2.3 points over 10
# seeds), so a further step would follow noise; as the OGM-GE search stops short of alpha 0.
DISTILL_TEACHER = 'results/avmnist_fusion/runs/late_fusion__seed0'  # _fusion_run(0, False)
DISTILL_TEMPERATURES = (1.0, 2.0, 4.0)
DISTILL_SHARES = (0.25, 0.5, 0.75)
DISTILL_EDGE_EXTENSIONS = {1.0: (0.125,), 2.0: (0.125,), 4.0: (0.875,)}
DISTILL_SEARCH = {t: tuple(sorted({*DISTILL_SHARES, *DISTILL_EDGE_EXTENSIONS.get(t, ())}))
                  for t in DISTILL_TEMPERATURES}
DISTILL_SEARCH_RESULTS = runs_lib.REPO / 'results' / 'distillation_weights' / 'results.csv'


def chosen_shares() -> dict[float, dict | None]:
  """{T: distillation overrides} chosen by the committed search of the teacher's share: the
  searched share with the best validation accuracy, among its healthy runs; None for a T whose
  search has not finished every share."""
  return {t: _best_on_validation(DISTILL_SEARCH_RESULTS, 'distill_audio',
                                 [_distill(t, a) for a in shares])
          for t, shares in DISTILL_SEARCH.items()}


def stopped_on_a_step() -> dict[float, float]:
  """{T: share} where the committed search chose the step past its grid's edge: it goes one
  step only, so the choice stays there."""
  stopped = {}
  for t, setting in chosen_shares().items():
    share = None if setting is None else 1 - setting['distill.label_weight']
    if share is not None and share in DISTILL_EDGE_EXTENSIONS.get(t, ()) and share in (
        min(DISTILL_SEARCH[t]), max(DISTILL_SEARCH[t])):
      stopped[t] = share
  return stopped


def _distill(temperature: float, share: float) -> dict:
  return {'distill.temperature': temperature, 'distill.kd_weight': share / temperature,
          'distill.label_weight': 1.0 - share}


def _distill_settings(settings, quick: bool):
  """A config's settings, plus the teacher for the student's runs (in quick mode, the quick
  avmnist_fusion's main-job run)."""
  teacher = _fusion_run(0, quick)
  return lambda config: {**settings(config), **SAME_CLIPPING, **(
      {'distill.teacher': teacher} if runs_lib.config_stem(config) == 'distill_audio' else {})}


def distillation_weights(quick: bool = False, seeds: int | None = None,
                         steps: int | None = None) -> Experiment:
  """The teacher's share of the student's gradient, per temperature, chosen on validation."""
  grid = ((1.0, (0.5,)),) if quick else tuple(DISTILL_SEARCH.items())
  specs = [('configs/distill_audio.py', _distill(t, a), 'distill_audio',
            {'temperature': f'{t:g}', "teacher's share": f'{a:g}'}, seeds or 1)
           for t, shares in grid for a in shares]
  settings, budget = _main_job_budget(QUICK_STEPS if quick else steps, quick)
  budget = (f'{budget}; the teacher: {DISTILL_TEACHER} (avmnist_fusion\'s main-job run, seed '
            f'0, its best state); seed {SEARCH_SEED}; loss (1 - a) · label loss + (a / T) · '
            'T²·KL to the teacher, a the teacher\'s share of the gradient on the logits. Each '
            'setting scored by its best validation accuracy; distillation trains five seeds of '
            'the best share at each T')
  if not quick:
    further = {f'T={t:g}': shares for t, shares in DISTILL_EDGE_EXTENSIONS.items()}
    budget += _edge_steps_note('shares', DISTILL_SHARES, 'T', further)
    stopped = stopped_on_a_step()
    if stopped:
      budget += ('; one step only: where it won, the search stops there ('
                 + ', '.join(f'T={t:g} {share:g}' for t, share in stopped.items())
                 + '), as a further step would near a share of 1, where the labels drop out')
  return _grid('distillation_weights', "The distillation's weights, chosen on validation",
               budget, specs, None, _distill_settings(settings, quick), quick,
               metrics=f'^{SEARCH_METRIC}$', first_seed=SEARCH_SEED)


def distillation(quick: bool = False, seeds: int | None = None,
                 steps: int | None = None) -> Experiment:
  """The audio-only student at each temperature's chosen share against training from scratch."""
  chosen = {1.0: _distill(1.0, 0.5)} if quick else chosen_shares()
  waiting = [f'T={t:g}' for t, c in chosen.items() if c is None]
  specs = [('configs/unimodal_audio.py', {}, 'unimodal_audio', {'teacher': 'none (scratch)'})]
  specs += [('configs/distill_audio.py', c, 'distill_audio',
             {'teacher': f'T={t:g}, share {1 - c["distill.label_weight"]:g}'})
            for t, c in chosen.items() if c is not None]
  settings, budget = _main_job_budget(QUICK_STEPS if quick else steps, quick)
  budget = (f'{budget}; the teacher: {DISTILL_TEACHER} (avmnist_fusion\'s main-job run, seed '
            "0, its best state); each temperature at the teacher's share chosen on validation "
            '(`--experiment=distillation_weights`); the from-scratch runs are those of '
            'avmnist_fusion')
  if waiting:
    budget += f'; not run until their weight search has finished: {", ".join(waiting)}'
  experiment = _grid('distillation', 'Knowledge distillation into an audio-only student', budget,
                     specs, seeds or (1 if quick else AVMNIST_SEEDS),
                     _distill_settings(settings, quick), quick, metrics='^test/accuracy$',
                     seed_major=True)
  return dataclasses.replace(experiment, shares_runs_with=('avmnist_fusion',),
                             paired_with='unimodal_audio')


# Modality imbalance (configs/late_fusion_ogm.py): does one modality dominate late fusion as
# the audio gets cleaner, and does OGM-GE (Peng et al., 2022) help? At each audio SNR, three
# seeds of the unimodal models, of late fusion without a remedy (OGM-GE's objective with alpha 0
# and no noise: plain training that logs each branch's accuracy through the fused head) and of
# OGM-GE, modulating the first half of the run as the authors' default does (epochs 0-50 of 100),
# at the alpha chosen on validation (one seed) from a grid around the authors' values. As in the
# learning-rate search, a grid whose best alpha sat on its edge is searched a step further that
# way: at -12 dB and 0 dB the best was 0.1, at -6 dB 1. At -12 and 0 dB, 0.03 then won by 0.04
# and 0.10 point (one seed); the next step down approaches alpha 0, imbalance's no-remedy row of
# three seeds, so the search stops there.
IMBALANCE_SNRS = {'-12 dB': 'standard', '-6 dB': 'snr-6db', '0 dB': 'snr0db'}
OGM_ALPHAS = (0.1, 0.3, 1.0)
OGM_EDGE_EXTENSIONS = {'-12 dB': (0.03,), '-6 dB': (3.0,), '0 dB': (0.03,)}
OGM_SEARCH = {snr: tuple(sorted({*OGM_ALPHAS, *OGM_EDGE_EXTENSIONS.get(snr, ())}))
              for snr in IMBALANCE_SNRS}
IMBALANCE_SEEDS = 3
IMBALANCE_SEARCH_RESULTS = runs_lib.REPO / 'results' / 'imbalance_alpha' / 'results.csv'
IMBALANCE_METRICS = r'^test/(accuracy|ogm/\w+/accuracy)$'


def _ogm(alpha: float, steps: int) -> dict:
  return {'objective.alpha': alpha, 'objective.end_step': steps // 2}


def _main_job_steps(steps: int | None, quick: bool) -> int:
  return QUICK_STEPS if quick else steps or runs_lib.load_config(
      runs_lib.Run('configs/late_fusion.py'), with_values=False).num_train_steps


def imbalance_alpha(quick: bool = False, seeds: int | None = None,
                    steps: int | None = None) -> Experiment:
  """OGM-GE's alpha at each audio SNR, chosen on validation."""
  snrs = {'0 dB': 'snr0db'} if quick else IMBALANCE_SNRS
  n = _main_job_steps(steps, quick)
  specs = [(f'configs/late_fusion_ogm.py:{variant}', _ogm(a, n), 'ogm_ge',
            {'SNR': snr, 'alpha': f'{a:g}'}, seeds or 1)
           for snr, variant in snrs.items() for a in ((0.3,) if quick else OGM_SEARCH[snr])]
  settings, budget = _main_job_budget(QUICK_STEPS if quick else steps, quick)
  budget = (f'{budget}; seed {SEARCH_SEED}; OGM-GE modulating steps 0 to {n // 2} (the first '
            "half, as the authors' default modulates epochs 0-50 of 100). Each alpha scored by "
            'its best validation accuracy; imbalance trains three seeds of the best at each SNR')
  if not quick:
    budget += _edge_steps_note('alpha', OGM_ALPHAS, 'SNR', OGM_EDGE_EXTENSIONS)
  return _grid('imbalance_alpha', "OGM-GE's alpha, chosen on validation", budget, specs, None,
               _same_clipping(settings), quick,
               metrics=f'^{SEARCH_METRIC}$', first_seed=SEARCH_SEED)


# Gradient blending (configs/gradient_blending.py): its weights from the image-only, audio-only and
# late-fusion models at each SNR, trained at the main job's budget (seed SEARCH_SEED), each with
# its loss on the training split (`fit`) beside validation's, at the state their selection chose
# and at their initialisation (the same run at 0 steps: the same seed initialises the same model):
# the two checkpoints of Wang et al.'s offline estimate.
GBLEND_RESULTS = runs_lib.REPO / 'results' / 'gradient_blending_weights' / 'results.csv'
GBLEND_HEADS = {'image': 'unimodal_image', 'audio': 'unimodal_audio', 'fused': 'late_fusion'}
GBLEND_STATES = {'trained': {}, 'initialisation': {'num_train_steps': 0}}
# Below this share of the loss the fused head, which alone predicts, would barely train.
MIN_FUSED_WEIGHT = 0.05


def _join(variant: str) -> dict:
  """The audio of FSDD at `variant`'s SNR (the standard one, -12 dB, is every config's own)."""
  return {} if variant == 'standard' else {'dataset.joins.audio.dataset': f'fsdd/{variant}'}


def gradient_blending_weights(quick: bool = False, seeds: int | None = None,
                              steps: int | None = None) -> Experiment:
  """The three models whose losses give gradient blending's weights at each audio SNR."""
  snrs = {'0 dB': 'snr0db'} if quick else IMBALANCE_SNRS
  models = [('configs/unimodal_image.py', {}, 'unimodal_image', 'any')] + [
      (f'configs/{m}.py', _join(variant), m, snr) for snr, variant in snrs.items()
      for m in ('unimodal_audio', 'late_fusion')]
  specs = [(config, {**join, **extra}, method, {'SNR': snr, 'state': state}, seeds or 1)
           for state, extra in GBLEND_STATES.items() for config, join, method, snr in models]
  settings, budget = _main_job_budget(QUICK_STEPS if quick else steps, quick)
  fit = {'type': 'classification', 'split': 'train[:256]' if quick else 'train', 'every_steps': 0}
  budget = (f'{budget}; seed {SEARCH_SEED}; each also scored on the training split (`fit`), '
            'trained and at its initialisation (0 steps); imbalance trains gradient blending at '
            'each SNR with weights w_k ∝ ΔG_k / ΔO_k² of these three models (Wang et al.\'s offline '
            'estimate; MultiBench\'s gradient_blend.py with delta=True): ΔG the fall of the '
            'validation loss from initialisation, ΔO the rise of validation minus training loss')

  def with_fit(config: str) -> dict:
    """The config's settings with `fit` added to its evaluators (given whole: the command line
    sets fields a config has, and a config has no `fit`)."""
    own = dict(settings(config))
    evals = own.pop('evals', None) or runs_lib.load_config(
        runs_lib.Run(config), with_values=False).evals.to_dict()
    every = own.pop('evals.validation.every_steps', None)
    if every is not None:
      evals['validation']['every_steps'] = every
    # Quick mode scores the last state with no validation evaluator: one at the end.
    evals.setdefault('validation', {'type': 'classification', 'split': 'validation',
                                    'every_steps': 0})
    return {**own, **SAME_CLIPPING, 'evals': {**evals, 'fit': fit}}

  # The table shows each run's accuracy and health; the losses the weights come from are in
  # results.csv (fit/loss, validation/loss) and the weights in imbalance's remedy column.
  return _grid('gradient_blending_weights', "Gradient blending's weights, estimated once",
               budget, specs, None, with_fit, quick, metrics=r'^test/accuracy$',
               first_seed=SEARCH_SEED)


def blending_weights(losses: dict[str, dict[str, tuple[float, float]]]) -> dict[str, float]:
  """{head: weight} from {head: {state: (training loss, validation loss)}} of the model each head
  stands for, at its initialisation and trained (GBLEND_STATES): w ∝ ΔG / ΔO², normalised to sum
  to 1, with ΔG = L_val(init) - L_val(trained), the generalisation gained, and ΔO the change of
  the overfitting O = L_val - L_train, as Wang et al.'s offline G-Blend between two checkpoints
  (MultiBench's gradient_blend.py with delta=True). A model whose validation loss rose gained
  nothing and gets weight 0 (MultiBench's abs() would count the rise as a gain); |ΔO| is floored
  at 1e-4, the floor MultiBench's delta=False puts on O (its delta=True has none)."""
  raw = {}
  for head, by_state in losses.items():
    (train0, val0), (train, val) = by_state['initialisation'], by_state['trained']
    overfitting = (val - train) - (val0 - train0)
    raw[head] = max(val0 - val, 0.0) / max(abs(overfitting), 1e-4) ** 2
  total = sum(raw.values()) or 1.0
  return {head: w / total for head, w in raw.items()}


def _blending_overrides(path, snr: str) -> dict | None:
  """objective.head_weights.<head> overrides from the estimation runs at `snr` in the results at
  `path`; None until all six (three models, each trained and at initialisation) have finished."""
  losses = {}
  for head, method in GBLEND_HEADS.items():
    for state in GBLEND_STATES:
      where = {'method': method, 'SNR': 'any' if method == 'unimodal_image' else snr,
               'state': state}
      found = [r for r in _committed_rows(path, where)
               if 'fit/loss' in r and 'validation/loss' in r]
      if not found:
        return None
      losses.setdefault(head, {})[state] = (float(found[0]['fit/loss']),
                                            float(found[0]['validation/loss']))
  return {f'objective.head_weights.{h}': round(w, 4)
          for h, w in blending_weights(losses).items()}


def imbalance(quick: bool = False, seeds: int | None = None,
              steps: int | None = None) -> Experiment:
  """Each unimodal model, late fusion without a remedy, with OGM-GE and with gradient blending,
  at each audio SNR."""
  snrs = {'0 dB': 'snr0db'} if quick else IMBALANCE_SNRS
  n, stated = _main_job_steps(steps, quick), _main_job_steps(None, quick)
  specs = [('configs/unimodal_image.py', {}, 'unimodal_image', {'SNR': 'any', 'remedy': '—'})]
  waiting = {'alpha search': [], 'weight estimate': []}
  unblended = []  # SNRs whose estimated weights leave the predicting head untrained
  for snr, variant in snrs.items():
    specs.append(('configs/unimodal_audio.py', _join(variant), 'unimodal_audio',
                  {'SNR': snr, 'remedy': '—'}))
    late = f'configs/late_fusion_ogm.py:{variant}'
    specs.append((late, {'objective.modulation': 'ogm', 'objective.alpha': 0.0}, 'late_fusion',
                  {'SNR': snr, 'remedy': 'none'}))
    # The committed search ran at the stated budget; another budget keeps its alpha and
    # modulates the first half of its own run.
    chosen = _ogm(0.3, n) if quick else _best_on_validation(
        IMBALANCE_SEARCH_RESULTS, 'ogm_ge', [_ogm(a, stated) for a in OGM_SEARCH[snr]],
        {'SNR': snr})
    if chosen is None:
      waiting['alpha search'].append(snr)
    else:
      chosen = _ogm(chosen['objective.alpha'], n)
      specs.append((late, chosen, 'late_fusion', {
          'SNR': snr, 'remedy': f'OGM-GE, alpha {chosen["objective.alpha"]:g}'}))
    weights = _blending_overrides(GBLEND_RESULTS, snr) if not quick else {
        'objective.head_weights.fused': 0.5, 'objective.head_weights.image': 0.25,
        'objective.head_weights.audio': 0.25}
    if weights is None:
      waiting['weight estimate'].append(snr)
      continue
    shown = [f'{h} {weights[f"objective.head_weights.{h}"]:.2f}'
             for h in ('fused', 'image', 'audio')]
    if weights['objective.head_weights.fused'] < MIN_FUSED_WEIGHT:
      unblended.append(f'{snr} ({", ".join(shown)})')
    else:
      specs.append((f'configs/gradient_blending.py:{variant}', weights, 'late_fusion',
                    {'SNR': snr, 'remedy': f'gradient blending, {" / ".join(shown)}'}))
  settings, budget = _main_job_budget(QUICK_STEPS if quick else steps, quick)
  budget = (f'{budget}; audio at each SNR (fsdd joined at that SNR; images unchanged); late '
            "fusion without a remedy logs each branch's accuracy through the fused head "
            '(ogm/<modality>/accuracy); OGM-GE modulates the first half of the run at the alpha '
            'chosen on validation (`--experiment=imbalance_alpha`); gradient blending weights '
            'its fused, image and audio heads as estimated by '
            '`--experiment=gradient_blending_weights` and predicts with the fused head; the '
            "-12 dB unimodal runs are avmnist_fusion's")
  for stage, snrs_waiting in waiting.items():
    if snrs_waiting:
      budget += f'; not run until their {stage} has finished: {", ".join(snrs_waiting)}'
  if unblended:
    budget += ('; gradient blending not run where its estimated weights give the fused head, '
               f'which predicts, under {MIN_FUSED_WEIGHT:g} of the loss: {"; ".join(unblended)} '
               '(a model whose overfitting barely changed over training, ΔO near 0, takes '
               'nearly all the weight; MultiBench then fine-tunes the fused head on frozen '
               'features for 25 epochs, which this gradient blending does not)')
  experiment = _grid('imbalance', 'Modality imbalance: OGM-GE and gradient blending', budget,
                     specs, seeds or (1 if quick else IMBALANCE_SEEDS),
                     _same_clipping(settings), quick,
                     metrics=IMBALANCE_METRICS, seed_major=True)
  return dataclasses.replace(experiment, shares_runs_with=('avmnist_fusion',),
                             paired_with='late_fusion', paired_on=('SNR',),
                             paired_baseline=(('remedy', 'none'),))


# Cross-modal contrastive learning (configs/contrastive.py, no label in the loss): five seeds of
# pretraining with the pair ids the data has (images paired with one recording are each other's
# positives), beside single-positive InfoNCE (what that is worth) and batches that never hold
# two examples of one pair (`dataset.one_example_per_pair`), and the two controls in the
# same retrieval and probe code: randomly initialised encoders (0 steps) and the main job's
# encoders, trained with labels and frozen, with projections trained by the same loss. Then
# fine-tuning with 1% and 10% of the training labels, pretrained against from scratch.
CONTRASTIVE_SEEDS = 5
CONTRASTIVE_METRICS = (r'^(retrieval/\w+_to_\w+/class/R@1|retrieval/\w+_to_\w+/pair/R@1|'
                       r'probe\[features=\w+\]/accuracy)$')
LABEL_FRACTIONS = ('1%', '10%')


def _run_dir(experiment: str, run_name: str, quick: bool) -> str:
  """Where `experiment`'s sweep (the default --results_dir) keeps the run `run_name`."""
  from experiments import runner  # pylint: disable=import-outside-toplevel
  return f'{runner.default_results_dir(experiment, quick)}/runs/{run_name}'


def _fusion_run(seed: int, quick: bool) -> str:
  """avmnist_fusion's main-job run of `seed`: the supervised encoders, and (seed 0) the teacher."""
  return _run_dir('avmnist_fusion', f'late_fusion__seed{seed}', quick)


def contrastive(quick: bool = False, seeds: int | None = None,
                steps: int | None = None) -> Experiment:
  """Retrieval and linear probes of pretrained encoders and of the two controls."""
  config = 'configs/contrastive.py'
  supervised = lambda seed: {'init_from': _fusion_run(seed, quick),
                             'init_from_pattern': 'encoders_', 'freeze': 'encoders_'}
  specs = [(config, {}, 'contrastive', {'encoders': 'pretrained, pairs as positives'}),
           (config, {'dataset.pair_id': ''}, 'contrastive',
            {'encoders': 'pretrained, one positive each'}),
           (config, {'dataset.one_example_per_pair': True}, 'contrastive',
            {'encoders': 'pretrained, one example per pair in a batch'}),
           (config, {'num_train_steps': 0}, 'contrastive', {'encoders': 'random (control)'}),
           (config, supervised, 'contrastive',
            {'encoders': 'trained with labels, frozen (control)'})]
  budget = ("contrastive.py's own budget (1,000 steps at batch 256, AdamW 1e-3, cosine); "
            'the images paired with one recording are positives of each other, or each other\'s '
            'negatives (one positive each), or never in one batch (one example per pair); '
            'retrieval (class- and pair-level Recall@1 both ways, test split) and a linear '
            'probe on each modality\'s pooled features (fitted on train, scored on test); '
            'random encoders: the same model untrained; labelled encoders: avmnist_fusion\'s '
            'main-job run of the same seed, frozen, its projections trained by the same loss')
  settings = {'num_train_steps': QUICK_STEPS} if quick else {}
  experiment = _grid('contrastive', 'Cross-modal contrastive pretraining', budget, specs,
                     seeds or (1 if quick else CONTRASTIVE_SEEDS), settings, quick,
                     metrics=CONTRASTIVE_METRICS, seed_major=True)
  return experiment


def contrastive_labels(quick: bool = False, seeds: int | None = None,
                       steps: int | None = None) -> Experiment:
  """Fine-tuning on a fraction of the labels: from the pretrained encoders, or from scratch."""
  pretrained = lambda seed: _run_dir('contrastive', f'contrastive__seed{seed}', quick)
  config = 'configs/contrastive_finetune.py'
  specs = []
  for fraction in (('1%',) if quick else LABEL_FRACTIONS):
    split = {'dataset.train_split': f'train[:{fraction}]'}
    specs.append((config, lambda seed, split=split: {
        **split, 'init_from': pretrained(seed)}, 'pretrained',
                  {'labels': fraction}))
    specs.append((config, {**split, 'init_from': ''}, 'scratch', {'labels': fraction}))
  settings, budget = _main_job_budget(QUICK_STEPS if quick else steps, quick)
  budget = (f'{budget}; trained on the first 1% or 10% of the training split (550 or 5,500 '
            'examples; validation and test whole); pretrained: the encoders of the contrastive '
            'run of the same seed (`--experiment=contrastive`), the head fresh; scratch: the '
            'same model from its initialisation')
  experiment = _grid('contrastive_labels', 'Few labels: pretrained against from scratch',
                     budget, specs, seeds or (1 if quick else CONTRASTIVE_SEEDS),
                     _same_clipping(settings), quick,
                     metrics='^test/accuracy$', seed_major=True)
  return dataclasses.replace(experiment, paired_with='scratch', paired_on=('labels',))


ZOO_STEPS = 300


def config_names(variant: str) -> list[str]:
  """Every config in configs/ that has `variant` (get_config raises ValueError otherwise) and
  trains on its own: not one that starts from another finished run (`init_from`, or a
  distillation teacher, which an empty `distill.teacher` still needs)."""
  names = []
  for path in sorted((runs_lib.REPO / 'configs').glob('*.py')):
    if path.stem in ('__init__', 'default'):
      continue
    try:
      config = runs_lib.load_config(runs_lib.Run(f'configs/{path.name}:{variant}'),
                                    with_values=False)
    except ValueError:
      continue
    if not config.get('init_from') and 'distill' not in config:
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
# (label, overrides or a function of the main job's config giving them, seeds[, config:
# late_fusion by default]). The warm-up, a guard against a seed whose audio branch waits, gets
# ten seeds a side, for the main job and for the audio-only model on its recipe; so do the cosine
# decay and the two candidate remedies at the end; the rest three.
RECIPE_STEPS = (
    ('main job', {}, 10),
    ('linear warm-up over 100 steps', WARMUP, 10),
    ('main job', {}, 10, 'unimodal_audio'),
    ('linear warm-up over 100 steps', WARMUP, 10, 'unimodal_audio'),
    # At a constant rate the validation accuracy of most seeds peaks and falls back by the end.
    ('cosine decay to 0', {'optimizer.schedule': 'cosine'}, 10),
    ("BatchNorm after every convolution (MultiBench's)",
     {'model.encoders.image.batch_norm': True, 'model.encoders.audio.batch_norm': True}, 3),
    ("gradient norm clipped at 8 (MultiBench's)", {'optimizer.grad_clip_norm': 8.0}, 3),
    ("parameters evaluated, no moving average (MultiBench's)", {'ema_decay': 0.0}, 3),
    ('one standardisation for all clips', lambda main: {
        'model.frontends.audio.per_example_norm': False,
        # The training set's log-mel mean and std (docs/datasets.md), as the encoder's input
        # standardisation; the main job's encoder config does not list these fields.
        'model.encoders.audio': {**main.model.encoders.audio.to_dict(), 'input_mean': -3.21,
                                 'input_std': 2.14}}, 3),
    # A candidate remedy rather than a departure undone: each branch must classify alone in the
    # examples that lose the other modality, which should shorten the audio branch's wait
    # behind the image's (the runs' curves say whether it does).
    # Seeds 0-4 are the robustness experiment's late-fusion runs with modality dropout.
    ('modality dropout (image 0.3, audio 0.3)', {'modality_dropout': dict(MODALITY_DROPOUT)}, 10),
    # Another: each encoder trained by a head of its own beside the fused one (avmnist_fusion_aux).
    ('an auxiliary head on each encoder', AUX_HEADS, 10),
)


# The last candidate remedy: the audio encoder at k times the learning rate of the rest
# (optimizer.lr_multipliers), so that the small gradient its branch gets early on, while the
# image's branch fits first, moves it faster. k chosen on validation (one seed, SEARCH_SEED) from
# 1 (the main job itself), 2, 4 and 8, and twice the largest again while the largest wins; where
# some k above 1 wins, recipe_ablation trains it on the ten seeds as the other candidates.
AUDIO_LR_FACTORS = (1.0, 2.0, 4.0, 8.0)
AUDIO_LR_SEARCH_RESULTS = runs_lib.REPO / 'results' / 'audio_lr' / 'results.csv'


def _audio_lr(factor: float) -> dict:
  return {} if factor == 1 else {'optimizer.lr_multipliers': (('encoders_audio', factor),)}


def _best_audio_lr(grid) -> dict | None:
  return _best_on_validation(AUDIO_LR_SEARCH_RESULTS, 'late_fusion',
                             [_audio_lr(k) for k in grid])


def audio_lr_grid() -> tuple[float, ...]:
  """AUDIO_LR_FACTORS, and twice the largest searched factor while the committed search's best
  is its largest."""
  grid = AUDIO_LR_FACTORS
  while _best_audio_lr(grid) == _audio_lr(grid[-1]):
    grid += (2 * grid[-1],)
  return grid


def chosen_audio_lr() -> dict | None:
  """The overrides of the committed search's best factor (None until it has finished)."""
  return _best_audio_lr(audio_lr_grid())


def audio_lr(quick: bool = False, seeds: int | None = None,
             steps: int | None = None) -> Experiment:
  """The main job with its audio encoder at k times the learning rate, k chosen on validation."""
  grid = (2.0,) if quick else audio_lr_grid()
  specs = [('configs/late_fusion.py', _audio_lr(k), 'late_fusion',
            {'audio learning rate': f'{k:g}x'}, seeds or 1) for k in grid]
  settings, budget = _main_job_budget(QUICK_STEPS if quick else steps, quick)
  budget = (f'{budget}; seed {SEARCH_SEED}; the audio encoder at '
            f'{", ".join(f"{k:g}" for k in grid)} times the learning rate of the rest')
  if not quick:
    budget += (' (1: the main job; twice the largest again while the largest wins). Each setting '
               'scored by its best validation accuracy; recipe_ablation trains ten seeds of the '
               'best where it is above 1')
  return _grid('audio_lr', "The audio encoder's learning rate, chosen on validation", budget,
               specs, None, settings, quick, metrics=f'^{SEARCH_METRIC}$',
               first_seed=SEARCH_SEED)


# From MultiBench's recipe as its code runs it (configs/late_fusion.py:multibench) to the main
# job, adding mmjax's departures one at a time, each row keeping the ones above it: the last
# would be the main job itself (a test holds this), so the main job's row stands for it. Beside
# them, MultiBench's own 30 epochs. Three seeds each.
MAIN_EPOCH = -(-AVMNIST_TRAIN_EXAMPLES // 128)  # steps of an epoch at batch 128
DEPARTURES = (
    ("97x64 log-mel instead of the 112x112 spectrogram", {
        'model.frontends.audio': {'name': 'logmel', 'sample_rate': 8000, 'n_fft': 256,
                                  'hop_length': 80, 'n_mels': 64, 'log_offset': 1e-6,
                                  'per_example_norm': False}}),
    ('each clip standardised', {'model.frontends.audio.per_example_norm': True}),
    ('no BatchNorm', {'model.encoders.image.batch_norm': False,
                      'model.encoders.audio.batch_norm': False}),
    ('batch 128 (3 epochs: 1,300 steps)', {
        'batch_size': 128, 'num_train_steps': 1300, 'evals.validation.every_steps': MAIN_EPOCH,
        'checkpoint_every_steps': MAIN_EPOCH}),
    ('validation every 0.3 epoch', {'evals.validation.every_steps': 130}),
    ('a moving average of the parameters (0.99)', {'ema_decay': 0.99}),
    ('weight decay on kernels only', {'optimizer.weight_decay_on': 'kernels'}),
    ('no gradient clipping (the main job)', {'optimizer.grad_clip_norm': 0.0}),
)
MULTIBENCH_SEEDS = 3


def _merged(overrides: dict, more: dict) -> dict:
  """`overrides` and then `more`, a field inside a dict that `overrides` sets written into it:
  the command line cannot set a field of a dict it replaces in the same run."""
  out = {k: copy.deepcopy(v) for k, v in overrides.items()}
  for key, value in more.items():
    parent = next((p for p in out if key.startswith(p + '.') and isinstance(out[p], dict)), None)
    if parent is None:
      out[key] = value
      continue
    node, *path, leaf = [out[parent], *key[len(parent) + 1:].split('.')]
    for name in path:
      node = node[name]
    node[leaf] = value
  return out


def multibench_steps() -> list[tuple]:
  """RECIPE_STEPS' rows from MultiBench's recipe towards the main job: (label, overrides, seeds,
  config), each adding one departure to the row above; the last, the main job, left out."""
  multibench = runs_lib.load_config(runs_lib.Run('configs/late_fusion.py:multibench'),
                                    with_values=False)
  epoch = multibench.evals.validation.every_steps  # it validates every epoch
  rows = [("MultiBench's recipe (3 epochs at batch 40)", {}),
          ("MultiBench's recipe, its own 30 epochs", {'num_train_steps': 30 * epoch})]
  added = {}
  for label, overrides in DEPARTURES[:-1]:
    added = _merged(added, overrides)
    rows.append((f'MultiBench + {label}', added))
  return [(label, overrides, MULTIBENCH_SEEDS, 'late_fusion:multibench')
          for label, overrides in rows]


def recipe_ablation(quick: bool = False, seeds: int | None = None,
                    steps: int | None = None) -> Experiment:
  """The main job and its recipe's departures, each on the main job's own budget and selection;
  then MultiBench's recipe with mmjax's departures added one at a time."""
  main = runs_lib.load_config(runs_lib.Run('configs/late_fusion.py'), with_values=False)
  audio = None if quick else chosen_audio_lr()
  chosen = [(f"the audio encoder at {audio['optimizer.lr_multipliers'][0][1]:g}x the learning "
             'rate (chosen on validation: audio_lr)', audio, 10)] if audio else []
  rows = [step if len(step) > 3 else (*step, 'late_fusion')
          for step in (*RECIPE_STEPS, *chosen, *multibench_steps())]
  specs, seen = [], set()
  for label, overrides, n, config in rows:
    name, _, variant = config.partition(':')
    overrides = overrides(main) if callable(overrides) else overrides
    if quick:  # its runs replace the evaluators: no validation to schedule, one row fewer
      overrides = {k: v for k, v in overrides.items() if not k.startswith('evals.')}
      if (key := json.dumps([config, overrides], sort_keys=True, default=str)) in seen:
        continue
      seen.add(key)
    specs.append((f'configs/{name}.py' + (f':{variant}' if variant else ''), overrides, name,
                  {'recipe': label}, seeds or (1 if quick else n)))
  settings, budget = _main_job_budget(QUICK_STEPS if quick else steps, quick)
  if not quick and not steps:
    budget += ("; the rows that start from MultiBench's recipe train at their own budget and "
               'selection, which their labels state (MultiBench validates every epoch)')
    if audio is None:
      budget += ('; a row for the audio encoder at k times the learning rate waits for its '
                 'search (`--experiment=audio_lr`): it is added if some k above 1 wins there')
    elif not audio:
      budget += '; no audio learning-rate row: the main job (k = 1) won its search (audio_lr)'
  experiment = _grid('recipe_ablation', "The main job's recipe, one change at a time", budget,
                     specs, None, settings, quick, seed_major=True)
  # What each change is worth: each model's run minus its main-job recipe's on the same seed.
  return dataclasses.replace(experiment, shares_runs_with=('robustness',),
                             paired_baseline=(('recipe', 'main job'),))


EXPERIMENTS: dict[str, Callable[..., Experiment]] = {
    'avmnist_fusion_lr': avmnist_fusion_lr,
    'avmnist_fusion': avmnist_fusion,
    'synthetic_interactions': synthetic_interactions,
    'robustness': robustness,
    'avmnist_fusion_aux': avmnist_fusion_aux,
    'avmnist_fusion_warmup': avmnist_fusion_warmup,
    'recipe_ablation': recipe_ablation,
    'audio_lr': audio_lr,
    'distillation_weights': distillation_weights,
    'distillation': distillation,
    'imbalance_alpha': imbalance_alpha,
    'gradient_blending_weights': gradient_blending_weights,
    'imbalance': imbalance,
    'contrastive': contrastive,
    'contrastive_labels': contrastive_labels,
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
