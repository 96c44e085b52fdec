"""Sweeps (experiments/): run names, the runner's skip and resume, aggregation from hand-made
metrics.jsonl files, plots, `--quick` end to end, and the README's generated Results section."""

import dataclasses
import io
import json
import math
import pathlib
import re
import shlex
import shutil
import sys
import threading
import time

import pytest

from experiments import aggregate
from experiments import catalog
from experiments import plots
from experiments import readme_results
from experiments import runner
from experiments import runs as runs_lib
from mmjax import writers
from mmjax.data import avmnist
from mmjax.errors import UserError
from tests.conftest import REPO, run_python

TINY = 'tests/scripts/tiny_config.py'
CONFIG_CHANGE = runs_lib._config_change  # pylint: disable=protected-access


@pytest.fixture(autouse=True)
def _partial_config_json(monkeypatch):
  """The hand-made workdirs here hold a few fields of config.json, not a whole resolved config:
  their runs are not compared with their config files (test_a_run_of_an_edited_config_...)."""
  monkeypatch.setattr(runs_lib, '_config_change', lambda run, saved: '')


# ------------------------------------------------------------------------------------------------
# Runs: names, command lines, progress


def test_run_names_are_readable_safe_and_stable():
  name = runs_lib.run_name('configs/late_fusion.py:synthetic',
                           {'modality_dropout': {'image': 0.3, 'audio': 0.3},
                            'dataset.name': 'synthetic/unique'}, 2)
  assert name == ('late_fusion-synthetic__dataset.name=synthetic_unique__'
                  'modality_dropout.audio=0.3__modality_dropout.image=0.3__seed2')
  long = {f'model.fusion.field_{i}': 'x' * 20 for i in range(20)}
  a, b = runs_lib.run_name(TINY, long, 0), runs_lib.run_name(TINY, {**long, 'z': 1}, 0)
  assert len(a) <= 180 and len(b) <= 180 and a != b
  assert a == runs_lib.run_name(TINY, dict(reversed(long.items())), 0)


def test_every_experiment_has_distinct_workdirs_and_runnable_commands(tmp_path):
  for name in catalog.EXPERIMENTS:
    for quick in (False, True):
      experiment = catalog.get(name, quick=quick)
      names = [r.name for r in experiment.runs]
      assert len(set(names)) == len(names), name
      assert len({r.label for r in experiment.runs}) >= 1
      for run in experiment.runs:
        args = shlex.split(runs_lib.command_line(run, tmp_path / run.name))
        assert args[:3] == ['python', '-m', 'mmjax.main'] and f'--config.seed={run.seed}' in args
  # 7 fusions x 3 learning rates, and steps past the edge for the 4 whose best sat there: 3 of
  # them three times (best at 1e-3, then at 3e-3, then at 1e-2)
  search = catalog.get('avmnist_fusion_lr')
  assert len(search.runs) == 31
  assert 'again while it sat on the new edge: early_fusion AdamW 0.003, 0.01' in search.budget
  assert {r.seed for r in catalog.get('avmnist_fusion_lr').runs} == {catalog.SEARCH_SEED}
  synthetic = catalog.get('synthetic_interactions')
  assert len(synthetic.runs) == 250  # 10 methods x 5 probes x 5
  # A run that reaches the probes' Bayes ceiling (100%) on validation has converged and stops.
  assert {(r.settings['early_stopping_target'], r.settings['early_stopping_patience'])
          for r in synthetic.runs} == {(1.0, catalog.SYNTHETIC_PATIENCE)}
  assert 'reaches the Bayes ceiling or has not improved in 20 evaluations' in synthetic.budget
  assert catalog.AVMNIST_TRAIN_EXAMPLES == avmnist.N_TRAIN_IMAGES
  ablation = catalog.get('recipe_ablation')
  audio_lr = 10 if catalog.chosen_audio_lr() else 0  # the audio learning rate's winner above 1
  assert len(ablation.runs) == sum(step[2] for step in catalog.RECIPE_STEPS) + audio_lr + 9 * 3
  # From MultiBench's recipe, each of the main job's departures added in turn: all of them
  # together are the main job, so its row stands for the last.
  multibench = [r for r in ablation.runs if r.config == 'configs/late_fusion.py:multibench']
  assert len(multibench) == 27 and list(dict.fromkeys(r.facets['recipe'] for r in multibench)) == [
      "MultiBench's recipe (3 epochs at batch 40)", "MultiBench's recipe, its own 30 epochs",
      *(f'MultiBench + {label}' for label, _ in catalog.DEPARTURES[:-1])]
  every = {}
  for _, overrides in catalog.DEPARTURES:
    every = catalog._merged(every, overrides)  # pylint: disable=protected-access
  assert (runs_lib.load_config(runs_lib.Run('configs/late_fusion.py:multibench', every))
          == runs_lib.load_config(runs_lib.Run('configs/late_fusion.py')))
  assert [r.facets['recipe'] for r in ablation.runs[:2]] == ['main job',
                                                              'linear warm-up over 100 steps']
  assert sum(r.facets['recipe'] == 'main job' and r.label == 'late_fusion'
             for r in ablation.runs) == 10
  assert sum(r.label == 'unimodal_audio' for r in ablation.runs) == 20
  # The modality-dropout row's first five seeds are the robustness experiment's runs, trained once.
  dropout = {r.name for r in ablation.runs if r.facets['recipe'].startswith('modality dropout')}
  robust = {r.name for r in catalog.get('robustness').runs}
  assert len(dropout) == 10 and len(dropout & robust) == 5
  assert ablation.shares_runs_with == ('robustness',)
  # Auxiliary heads: each collapsing fusion with and without them on the same seeds; a warm-up
  # for the fusions heads do not reach, likewise (the recipe ablation's own 100 steps). A
  # method's runs without are avmnist_fusion's own until it adopts a remedy; then those with it.
  fusion = {r.name for r in catalog.get('avmnist_fusion').runs}
  remedied = catalog.chosen_remedies()
  for name, methods in (('avmnist_fusion_aux', {'gated_fusion', 'mult', 'bottleneck_fusion'}),
                        ('avmnist_fusion_warmup', {'tensor_fusion', 'bottleneck_fusion', 'mult'})):
    remedy, experiment = catalog.REMEDIES[name], catalog.get(name)
    assert len(experiment.runs) == 30 and {r.label for r in experiment.runs} == methods
    for run in experiment.runs:
      with_it = all(run.values().get(k) == v for k, v in remedy.extra.items())
      assert run.facets[remedy.facet] == remedy.labels[with_it]
      adopted = remedied.get(run.label) == name if with_it else run.label not in remedied
      assert (run.name in fusion) == adopted, run.name
    assert set(experiment.shares_runs_with) == {'avmnist_fusion', *catalog.REMEDIES} - {name}
  # Full AV-MNIST runs keep each config's own budget and selection, and one clipping rule.
  assert all(r.settings == catalog.SAME_CLIPPING for r in catalog.get('avmnist_fusion').runs)
  other = catalog.get('avmnist_fusion', steps=5)
  assert {r.settings['num_train_steps'] for r in other.runs} == {5}
  assert other.command.endswith('--steps=5') and other.budget.startswith('5 steps at batch')


def test_another_budget_keeps_the_validation_selection_that_searches_score_by():
  """--steps shortens the runs but keeps each config's validation evaluator and select_best,
  validation every tenth of the run as the main job's 130 of 1,300: a search run at another
  budget still has the best validation accuracy it is scored by."""
  search = catalog.get('avmnist_fusion_lr', steps=650)
  settings = {json.dumps(r.settings, sort_keys=True) for r in search.runs}
  assert len(settings) == 1
  settings = search.runs[0].settings
  assert settings['num_train_steps'] == 650 and settings['evals.validation.every_steps'] == 65
  assert 'evals' not in settings and 'select_best' not in settings
  assert 'validation accuracy every 65 steps selects' in search.budget
  config = runs_lib.load_config(search.runs[0])
  assert config.select_best == 'validation/accuracy'
  assert config.evals.validation.every_steps == 65 and 'robustness' in config.evals
  lines = [{'step': s, 'split': 'validation', 'accuracy': a}
           for s, a in ((65, 0.5), (130, 0.7), (650, 0.6))]
  assert aggregate.run_metrics(lines, 650)[catalog.SEARCH_METRIC] == 0.7
  # The stated budget itself is each config's own: nothing set.
  assert {json.dumps(r.settings) for r in catalog.get('avmnist_fusion_lr', steps=1300).runs} \
      == {json.dumps(catalog.SAME_CLIPPING)}


def test_the_zoo_leaves_out_configs_that_start_from_another_run():
  """distill_audio needs a teacher run on either variant, and contrastive_finetune's avmnist
  variant a pre-training run (its synthetic one trains from scratch): a zoo run of either would
  stop at once."""
  synthetic, avmnist = catalog.config_names('synthetic'), catalog.config_names('avmnist')
  assert 'distill_audio' not in synthetic and 'distill_audio' not in avmnist
  assert 'contrastive_finetune' in synthetic and 'contrastive_finetune' not in avmnist
  assert 'late_fusion' in synthetic and 'late_fusion' in avmnist


def test_no_committed_search_chooses_a_rate_on_its_grids_edge():
  """The rule the search's budget line states, held against the committed results: a method
  whose search has finished is never chosen at its grid's lowest or highest rate (the grid must
  then go a step further, in EDGE_EXTENSIONS)."""
  chosen = catalog.chosen_settings()
  assert chosen, 'no method in the committed search has finished'
  for method, setting in chosen.items():
    rates = catalog.LR_SEARCH[method][1]
    assert min(rates) < setting['optimizer.learning_rate'] < max(rates), (method, setting, rates)


def test_a_setting_that_diverged_before_its_first_score_ends_the_search_below_the_rest(
    tmp_path, monkeypatch):
  """A search run stopped by a non-finite loss before two validation evaluations has no best
  validation accuracy; it is finished (diverged), so the method's choice is made without it."""
  name, rates = catalog.LR_SEARCH['tensor_fusion']
  rows = [{'method': 'tensor_fusion', 'overrides': json.dumps(
      {'optimizer.name': name, 'optimizer.learning_rate': lr}, sort_keys=True),
           catalog.SEARCH_METRIC: 0.5 + 0.01 * i, 'healthy': 1, 'diverged': 0}
          for i, lr in enumerate(rates)]
  rows[-1] = {**rows[-1], 'healthy': 0, 'diverged': 1}
  del rows[-1][catalog.SEARCH_METRIC]
  aggregate.write_csv(aggregate.Results(rows, [], []), tmp_path / 'results.csv')
  monkeypatch.setattr(catalog, 'SEARCH_RESULTS', tmp_path / 'results.csv')
  assert catalog.chosen_settings()['tensor_fusion'] == {
      'optimizer.name': name, 'optimizer.learning_rate': rates[-2]}
  for row in rows:  # every run diverged: still a choice, not a wait
    row.update(healthy=0, diverged=1)
    row.pop(catalog.SEARCH_METRIC, None)
  aggregate.write_csv(aggregate.Results(rows, [], []), tmp_path / 'results.csv')
  assert catalog.chosen_settings()['tensor_fusion'] is not None


def test_fusions_train_at_the_learning_rate_their_search_chose(tmp_path, monkeypatch):
  """avmnist_fusion and robustness read the committed search: each fusion at its grid's best
  healthy setting (best validation accuracy), five seeds, seed by seed; a fusion whose search
  has not finished every setting is not run, and the budget says so."""
  rows = []
  for method, (name, rates) in catalog.LR_SEARCH.items():
    if method == 'mult':
      continue  # its search has not finished
    for i, lr in enumerate(rates):
      rows.append({'method': method, 'overrides': json.dumps(
          {'optimizer.name': name, 'optimizer.learning_rate': lr}, sort_keys=True),
                   catalog.SEARCH_METRIC: 0.5 + 0.1 * i, 'healthy': 1})
  rows[5]['healthy'] = 0  # early_fusion's best rate is inert: the next best is chosen
  aggregate.write_csv(aggregate.Results(rows, [], []), tmp_path / 'results.csv')
  monkeypatch.setattr(catalog, 'SEARCH_RESULTS', tmp_path / 'results.csv')
  monkeypatch.setattr(catalog, 'REMEDY_RESULTS', tmp_path / 'no remedy yet')
  chosen = catalog.chosen_settings()
  assert chosen['early_fusion'] == {'optimizer.name': 'adamw', 'optimizer.learning_rate': 1e-2}
  assert chosen['tensor_fusion'] == {'optimizer.name': 'sgd', 'optimizer.learning_rate': 0.3}
  assert 'mult' not in chosen
  fusion = catalog.get('avmnist_fusion')
  assert len(fusion.runs) == 9 * 5 and 'mult' not in {r.label for r in fusion.runs}
  assert [r.seed for r in fusion.runs[:10]] == [0] * 9 + [1]
  [tensor] = [r for r in fusion.runs if r.label == 'tensor_fusion' and r.seed == 0]
  assert tensor.overrides == chosen['tensor_fusion']
  assert 'tensor_fusion SGD 0.3' in fusion.budget and 'has finished: mult' in fusion.budget
  late = [r for r in fusion.runs if r.label == 'late_fusion']
  assert all(r.overrides == {} for r in late)  # the main job itself
  robust = catalog.get('robustness')
  assert len(robust.runs) == (2 + 3 * 2) * 5
  assert {r.overrides.get('optimizer.learning_rate') for r in robust.runs
          if r.label == 'gated_fusion'} == {chosen['gated_fusion']['optimizer.learning_rate']}


def test_a_fusion_with_a_failed_seed_trains_with_the_remedy_that_made_all_its_seeds_healthy(
    tmp_path, monkeypatch):
  """avmnist_fusion reads the committed remedy experiments: a method with an inert or diverged
  seed among its five runs without a remedy, and none among its five with it, trains with it (its
  remedy column says which, its budget points to the remedy's table); where two remedies qualify,
  the better mean validation accuracy; a remedy short of five runs, or with a failed seed, or for a
  method that never failed, is not taken."""
  seeds = catalog.AVMNIST_SEEDS
  def rows(remedy, method, label, healthy, validation=0.8):
    return [{'method': method, remedy.facet: label, 'seed': s, 'healthy': int(h),
             catalog.SEARCH_METRIC: validation} for s, h in enumerate(healthy)]
  aux, warmup = (catalog.REMEDIES[n] for n in ('avmnist_fusion_aux', 'avmnist_fusion_warmup'))
  ok, failed = [1] * seeds, [1] * (seeds - 1) + [0]
  tables = {
      'avmnist_fusion_aux': [
          *rows(aux, 'gated_fusion', aux.labels[0], failed),
          *rows(aux, 'gated_fusion', aux.labels[1], ok),
          *rows(aux, 'mult', aux.labels[0], failed), *rows(aux, 'mult', aux.labels[1], ok, 0.9),
          *rows(aux, 'bottleneck_fusion', aux.labels[0], failed),
          *rows(aux, 'bottleneck_fusion', aux.labels[1], failed)],
      'avmnist_fusion_warmup': [
          *rows(warmup, 'mult', warmup.labels[0], failed),
          *rows(warmup, 'mult', warmup.labels[1], ok, 0.85),
          *rows(warmup, 'tensor_fusion', warmup.labels[0], failed),
          *rows(warmup, 'tensor_fusion', warmup.labels[1], ok[:-1]),  # a run still to finish
          *rows(warmup, 'bottleneck_fusion', warmup.labels[0], ok),
          *rows(warmup, 'bottleneck_fusion', warmup.labels[1], ok)]}
  for name, table in tables.items():
    (tmp_path / name).mkdir()
    aggregate.write_csv(aggregate.Results(table, [], [aux.facet, warmup.facet]),
                        tmp_path / name / 'results.csv')
  monkeypatch.setattr(catalog, 'REMEDY_RESULTS', tmp_path)
  assert catalog.chosen_remedies() == {'gated_fusion': 'avmnist_fusion_aux',
                                       'mult': 'avmnist_fusion_aux'}
  chosen = catalog.chosen_settings()
  fusion = catalog.get('avmnist_fusion')
  assert len(fusion.runs) == len(catalog.AVMNIST_METHODS) * seeds
  for run in fusion.runs:
    if run.label in ('gated_fusion', 'mult'):
      assert run.overrides == {**chosen[run.label], **aux.extra}
      assert run.facets == {'remedy': aux.label}
    else:
      assert run.overrides == chosen.get(run.label, {}) and run.facets == {'remedy': 'none'}
  assert ('gated_fusion, mult: `--experiment=avmnist_fusion_aux`, whose tables show the runs '
          'without it') in fusion.budget
  # The remedied runs are the remedy experiment's own: read from its records, not retrained.
  assert set(fusion.shares_runs_with) == set(catalog.REMEDIES)
  gated = {r.name for r in catalog.get('avmnist_fusion_aux').runs}
  assert {r.name for r in fusion.runs if r.label == 'gated_fusion'} < gated
  # The robustness experiment trains its fusions as avmnist_fusion does, with dropout and without.
  robust = catalog.get('robustness')
  gated = [r for r in robust.runs if r.label == 'gated_fusion']
  assert len(gated) == 2 * seeds and all(
      all(r.overrides.get(k) == v for k, v in aux.extra.items()) for r in gated)
  assert {r.name for r in gated if r.facets['training'] == 'standard'} == {
      r.name for r in fusion.runs if r.label == 'gated_fusion'}
  assert 'gated_fusion: `--experiment=avmnist_fusion_aux`' in robust.budget
  monkeypatch.setattr(catalog, 'REMEDY_RESULTS', tmp_path / 'none yet')
  assert all('remedy' not in r.facets for r in catalog.get('avmnist_fusion').runs)
  assert not any('objective.aux_weight' in r.overrides for r in catalog.get('robustness').runs)


def test_distillation_searches_the_teachers_share_per_temperature_then_pairs_seeds(
    tmp_path, monkeypatch):
  """distillation_weights: (1 - a) · label + (a / T) · T²·KL for a in 0.25, 0.5, 0.75 at each T
  (and 0.125 at T = 1 and 2, where 0.25 was best, and 0.875 at T = 4, where 0.75 was), one seed;
  distillation: five seeds of each T's best share beside the scratch runs it shares with
  avmnist_fusion, every student taught by avmnist_fusion's main-job run, seed 0."""
  search = catalog.get('distillation_weights')
  assert len(search.runs) == 12 and {r.seed for r in search.runs} == {catalog.SEARCH_SEED}
  assert 'T=1 0.125; T=2 0.125; T=4 0.875' in search.budget
  for run in search.runs:
    t, share = float(run.facets['temperature']), float(run.facets["teacher's share"])
    assert run.overrides == {'distill.temperature': t, 'distill.kd_weight': share / t,
                             'distill.label_weight': 1 - share}
    assert run.settings['distill.teacher'] == catalog.DISTILL_TEACHER
  [teacher] = [r for r in catalog.get('avmnist_fusion').runs
               if r.label == 'late_fusion' and r.seed == 0]
  assert str(aggregate.workdir(pathlib.Path('results/avmnist_fusion'), teacher)) == \
      catalog.DISTILL_TEACHER
  rows = [{'method': 'distill_audio', 'overrides': json.dumps(r.overrides, sort_keys=True),
           catalog.SEARCH_METRIC: 0.5 + 0.01 * i, 'healthy': 1}
          for i, r in enumerate(search.runs) if r.facets['temperature'] != '4']
  aggregate.write_csv(aggregate.Results(rows, [], []), tmp_path / 'results.csv')
  monkeypatch.setattr(catalog, 'DISTILL_SEARCH_RESULTS', tmp_path / 'results.csv')
  experiment = catalog.get('distillation')
  assert experiment.paired_with == 'unimodal_audio'
  assert experiment.shares_runs_with == ('avmnist_fusion',)
  by = {}
  for run in experiment.runs:
    by.setdefault(run.facets['teacher'], []).append(run)
  assert sorted(by) == ['T=1, share 0.75', 'T=2, share 0.75', 'none (scratch)']
  assert all(len(runs) == 5 for runs in by.values())
  assert all('distill.teacher' not in r.settings for r in by['none (scratch)'])
  assert 'not run until their weight search has finished: T=4' in experiment.budget
  scratch = {r.name for r in by['none (scratch)']}
  assert scratch <= {r.name for r in catalog.get('avmnist_fusion').runs}


def test_audio_lr_search_feeds_a_ten_seed_row_only_when_a_factor_above_1_wins(tmp_path,
                                                                              monkeypatch):
  """audio_lr: the main job (factor 1) and its audio encoder at 2, 4 and 8 times the learning
  rate, seed 100; recipe_ablation waits for it, then adds ten seeds of the winner, or no row when
  the main job itself wins."""
  search = catalog.get('audio_lr')
  path = tmp_path / 'results.csv'
  monkeypatch.setattr(catalog, 'AUDIO_LR_SEARCH_RESULTS', path)
  search = catalog.get('audio_lr')
  assert [r.overrides for r in search.runs] == [
      {}, *({'optimizer.lr_multipliers': (('encoders_audio', k),)} for k in (2.0, 4.0, 8.0))]
  assert {r.seed for r in search.runs} == {catalog.SEARCH_SEED}
  base = len(catalog.get('recipe_ablation').runs)
  assert 'waits for its search (`--experiment=audio_lr`)' in catalog.get('recipe_ablation').budget

  def scores(winner, factors):
    overrides = catalog._audio_lr  # pylint: disable=protected-access
    rows = [{'method': 'late_fusion', catalog.SEARCH_METRIC: 0.9 if k == winner else 0.8,
             'healthy': 1, 'overrides': json.dumps(overrides(k), sort_keys=True)}
            for k in factors]
    aggregate.write_csv(aggregate.Results(rows, [], []), path)

  for winner, added in ((4.0, 10), (1.0, 0)):
    scores(winner, catalog.AUDIO_LR_FACTORS)
    ablation = catalog.get('recipe_ablation')
    assert len(ablation.runs) == base + added
    labels = {r.facets['recipe'] for r in ablation.runs}
    assert ('the audio encoder at 4x the learning rate (chosen on validation: audio_lr)'
            in labels) == bool(added)
    assert ('no audio learning-rate row: the main job (k = 1) won' in ablation.budget) != bool(added)
  # The largest factor winning sends the search a step further, and the row waits for it.
  scores(8.0, catalog.AUDIO_LR_FACTORS)
  assert catalog.audio_lr_grid() == (1.0, 2.0, 4.0, 8.0, 16.0)
  assert len(catalog.get('audio_lr').runs) == 5 and catalog.chosen_audio_lr() is None
  scores(8.0, (*catalog.AUDIO_LR_FACTORS, 16.0))
  assert catalog.chosen_audio_lr() == {'optimizer.lr_multipliers': (('encoders_audio', 8.0),)}


def test_no_committed_distillation_search_chooses_a_share_on_its_grids_edge():
  """The edge rule for the teacher's share, held against the committed search as for the learning
  rate: a temperature whose search has finished is never chosen at its grid's smallest or largest
  share (the search must then go a step further, in DISTILL_EDGE_EXTENSIONS). It goes one step
  only: a choice at that step is where it stops, and the budget says so."""
  chosen = {t: c for t, c in catalog.chosen_shares().items() if c is not None}
  assert chosen, 'no temperature of the committed search has finished'
  budget = catalog.get('distillation_weights').budget
  for t, setting in chosen.items():
    share, shares = 1 - setting['distill.label_weight'], catalog.DISTILL_SEARCH[t]
    if share in catalog.DISTILL_EDGE_EXTENSIONS.get(t, ()) and share in (min(shares), max(shares)):
      assert 'the search stops there (' in budget and f'T={t:g} {share:g}' in budget.split(
          'the search stops there (')[1].split(')')[0], (t, share, budget)
    else:
      assert min(shares) < share < max(shares), (t, share, shares)


def test_a_remedy_is_paired_with_no_remedy_at_its_snr_and_seed():
  """imbalance's paired table: each remedy's late fusion minus late fusion without one on the same
  seed and SNR; the unimodal runs and the baseline itself are not rows of it."""
  assert (catalog.get('imbalance').paired_with, catalog.get('imbalance').paired_on,
          catalog.get('imbalance').paired_baseline) == ('late_fusion', ('SNR',),
                                                        (('remedy', 'none'),))
  rows = [{'method': 'late_fusion', 'SNR': snr, 'remedy': remedy, 'seed': seed,
           aggregate.HEADLINE: base + bonus + seed / 100}
          for snr, base in (('-12 dB', 0.8), ('0 dB', 0.9)) for seed in range(3)
          for remedy, bonus in (('none', 0.0), ('OGM-GE', 0.01 * (seed + 1)))]
  rows += [{'method': 'unimodal_audio', 'SNR': '0 dB', 'remedy': '—', 'seed': s,
            aggregate.HEADLINE: 0.5} for s in range(3)]
  found = aggregate.paired_differences(aggregate.Results(rows, [], ['SNR', 'remedy']),
                                       'late_fusion', ('SNR',), (('remedy', 'none'),))
  assert set(found) == {('late_fusion', '-12 dB', 'OGM-GE'), ('late_fusion', '0 dB', 'OGM-GE')}
  for d in found.values():
    assert d['seeds'] == [0, 1, 2]
    assert [round(x, 9) for x in d['diffs']] == [1.0, 2.0, 3.0]
  table = aggregate.paired_table(aggregate.Results(rows, [], ['SNR', 'remedy']), 'late_fusion',
                                 ('SNR',), (('remedy', 'none'),))
  assert 'Difference from `late_fusion`, remedy none on the same seed and SNR' in table


def test_each_recipe_change_and_remedy_is_paired_with_its_models_own_baseline_on_its_seed():
  """recipe_ablation's paired table: each recipe minus the main job's on the same seed, for each
  model (late fusion against the main job, the unimodal audio model against its own main-job
  recipe), over the seeds both have (a 3-seed row pairs with seeds 0-2); a model without a
  baseline run has no row. The fusion remedies, and modality dropout in robustness, pair each
  fusion with itself without them."""
  ablation = catalog.get('recipe_ablation')
  assert (ablation.paired_with, ablation.paired_on, ablation.paired_baseline) == (
      None, (), (('recipe', 'main job'),))
  assert catalog.get('avmnist_fusion_warmup').paired_baseline == (('warm-up', 'none'),)
  assert catalog.get('avmnist_fusion_aux').paired_baseline == (('heads', 'fused only'),)
  assert catalog.get('robustness').paired_baseline == (('training', 'standard'),)
  rows = [{'method': 'late_fusion', 'recipe': 'main job', 'seed': s,
           aggregate.HEADLINE: 0.8 + s / 100} for s in range(10)]
  rows += [{'method': 'late_fusion', 'recipe': 'clipped', 'seed': s,
            aggregate.HEADLINE: 0.8 + s / 100 + 0.01 * (s + 1)} for s in range(3)]
  rows += [{'method': 'unimodal_audio', 'recipe': recipe, 'seed': s,
            aggregate.HEADLINE: 0.5 - 0.02 * (recipe == 'warm-up')}
           for recipe in ('main job', 'warm-up') for s in range(4)]
  rows += [{'method': 'unimodal_image', 'recipe': 'warm-up', 'seed': s, aggregate.HEADLINE: 0.6}
           for s in range(4)]
  results = aggregate.Results(rows, [], ['recipe'])
  found = aggregate.paired_differences(results, None, (), (('recipe', 'main job'),))
  assert list(found) == [('late_fusion', 'clipped'), ('unimodal_audio', 'warm-up')]
  assert found[('late_fusion', 'clipped')]['seeds'] == [0, 1, 2]
  assert [round(x, 9) for x in found[('late_fusion', 'clipped')]['diffs']] == [1.0, 2.0, 3.0]
  assert [round(x, 9) for x in found[('unimodal_audio', 'warm-up')]['diffs']] == [-2.0] * 4
  table = aggregate.paired_table(results, None, (), (('recipe', 'main job'),))
  assert "Difference from each method's own runs with recipe main job, on the same seed" in table


def test_imbalance_chooses_ogm_alpha_per_snr_and_compares_with_no_remedy(tmp_path, monkeypatch):
  """imbalance_alpha: OGM-GE at alpha 0.1, 0.3, 1 at each SNR (and 0.03 at -12 and 0 dB, where
  0.1 was best, and 3 at -6 dB, where 1 was), modulating the first half of the main job's 1,300 steps; imbalance: three seeds of the unimodal models, late fusion without a
  remedy (alpha 0, no noise) and OGM-GE at each SNR's best alpha, the -12 dB unimodal runs
  shared with avmnist_fusion."""
  search = catalog.get('imbalance_alpha')
  assert len(search.runs) == 12
  assert '-12 dB 0.03; -6 dB 3; 0 dB 0.03' in search.budget
  assert {r.overrides['objective.end_step'] for r in search.runs} == {650}
  rows = [{'method': 'ogm_ge', 'SNR': r.facets['SNR'], catalog.SEARCH_METRIC:
           0.8 - 0.01 * float(r.facets['alpha']), 'healthy': 1,
           'overrides': json.dumps(r.overrides, sort_keys=True)}
          for r in search.runs if r.facets['SNR'] != '0 dB']
  aggregate.write_csv(aggregate.Results(rows, [], ['SNR']), tmp_path / 'results.csv')
  monkeypatch.setattr(catalog, 'IMBALANCE_SEARCH_RESULTS', tmp_path / 'results.csv')
  # Gradient blending's weights not estimated yet (its own test covers them).
  monkeypatch.setattr(catalog, 'GBLEND_RESULTS', tmp_path / 'no_estimate.csv')
  experiment = catalog.get('imbalance')
  remedies = {(r.facets['SNR'], r.facets['remedy']) for r in experiment.runs
              if r.label == 'late_fusion'}
  assert remedies == {('-12 dB', 'none'), ('-6 dB', 'none'), ('0 dB', 'none'),
                      ('-12 dB', 'OGM-GE, alpha 0.03'), ('-6 dB', 'OGM-GE, alpha 0.1')}
  assert 'not run until their alpha search has finished: 0 dB' in experiment.budget
  assert {r.seed for r in experiment.runs} == {0, 1, 2}
  # Another budget keeps the committed search's alpha and modulates the first half of its run.
  shorter = [r for r in catalog.get('imbalance', steps=400).runs
             if r.facets.get('remedy', '').startswith('OGM-GE')]
  assert {(r.overrides['objective.alpha'], r.overrides['objective.end_step'])
          for r in shorter} == {(0.03, 200), (0.1, 200)} and len(shorter) == 2 * 3
  plain = [r for r in experiment.runs if r.facets.get('remedy') == 'none']
  assert all(r.overrides == {'objective.modulation': 'ogm', 'objective.alpha': 0.0}
             for r in plain)
  fusion = {r.name for r in catalog.get('avmnist_fusion').runs}
  shared = {r.name for r in experiment.runs if r.name in fusion}
  assert shared == {f'unimodal_{m}__seed{s}' for m in ('image', 'audio') for s in range(3)}
  assert experiment.shares_runs_with == ('avmnist_fusion',)
  # Its table heads the branch accuracies by modality.
  assert re.match(experiment.metrics, 'test/ogm/audio/accuracy')
  assert aggregate._metric_label('test/ogm/audio/accuracy') == 'audio branch'


def test_blending_weights_are_generalisation_gained_over_overfitting_gained_squared():
  """w ∝ ΔG / ΔO² between initialisation and the trained state, normalised (Wang et al.'s offline
  G-Blend, MultiBench's delta=True); a validation loss that rose gains nothing (weight 0), and
  |ΔO| is floored at 1e-4."""
  init = (2.3, 2.3)
  weights = catalog.blending_weights({
      'image': {'initialisation': init, 'trained': (1.0, 1.5)},   # ΔG 0.8, ΔO 0.5
      'audio': {'initialisation': init, 'trained': (1.0, 2.0)},   # ΔG 0.3, ΔO 1.0
      'fused': {'initialisation': (2.0, 2.5), 'trained': (0.5, 1.0)}})  # ΔG 1.5, ΔO 0
  raw = {'image': 0.8 / 0.25, 'audio': 0.3 / 1.0, 'fused': 1.5 / 1e-8}
  assert weights == pytest.approx({h: w / sum(raw.values()) for h, w in raw.items()})
  assert sum(weights.values()) == pytest.approx(1.0)
  worse = catalog.blending_weights({'audio': {'initialisation': init, 'trained': (0.1, 3.2)},
                                    'fused': {'initialisation': init, 'trained': (0.3, 0.6)}})
  assert worse == {'audio': 0.0, 'fused': 1.0}


def _blending_rows(runs, losses):
  """results.csv rows of the estimation runs: {method: {state: (fit loss, validation loss)}}."""
  return [{'method': r.label, 'SNR': r.facets['SNR'], 'state': r.facets['state'],
           'fit/loss': losses[r.label][r.facets['state']][0],
           'validation/loss': losses[r.label][r.facets['state']][1],
           'overrides': json.dumps(r.overrides)} for r in runs]


def test_imbalance_blends_gradients_with_the_weights_its_estimate_gives(tmp_path, monkeypatch):
  """gradient_blending_weights: image-only once, audio-only and late fusion at each SNR, seed 100,
  each trained and at its initialisation (0 steps), each also scored on the training split;
  imbalance: gradient blending at each SNR whose six runs have finished, at the weights their
  losses give, three seeds."""
  estimate = catalog.get('gradient_blending_weights')
  models = [('unimodal_image', 'any'), *[(m, snr) for snr in catalog.IMBALANCE_SNRS
                                         for m in ('unimodal_audio', 'late_fusion')]]
  assert [(r.label, r.facets['SNR'], r.facets['state']) for r in estimate.runs] == [
      (*model, state) for state in ('trained', 'initialisation') for model in models]
  assert {r.seed for r in estimate.runs} == {catalog.SEARCH_SEED}
  for run in estimate.runs:
    config = runs_lib.load_config(run)
    assert config.evals.fit.split == 'train' and config.select_best == 'validation/accuracy'
    assert (config.num_train_steps == 0) == (run.facets['state'] == 'initialisation')
  trained = [r for r in estimate.runs if r.facets['state'] == 'trained']
  initial = [r for r in estimate.runs if r.facets['state'] == 'initialisation']
  # The initialisation is the trained run's own: the same config, seed and settings.
  assert [(r.config, r.seed, r.settings) for r in trained] == [
      (r.config, r.seed, r.settings) for r in initial]
  init = (2.3, 2.3)
  losses = {'unimodal_image': {'initialisation': init, 'trained': (0.9, 1.1)},
            'unimodal_audio': {'initialisation': init, 'trained': (1.2, 1.6)},
            'late_fusion': {'initialisation': init, 'trained': (0.4, 0.7)}}
  rows = [r for r in _blending_rows(estimate.runs, losses) if r['SNR'] in ('any', '-6 dB')]
  aggregate.write_csv(aggregate.Results(rows, [], ['SNR', 'state']), tmp_path / 'results.csv')
  monkeypatch.setattr(catalog, 'GBLEND_RESULTS', tmp_path / 'results.csv')
  experiment = catalog.get('imbalance')
  blended = [r for r in experiment.runs if r.facets['remedy'].startswith('gradient blending')]
  assert {r.facets['SNR'] for r in blended} == {'-6 dB'} and len(blended) == 3
  expected = catalog.blending_weights({'image': losses['unimodal_image'],
                                       'audio': losses['unimodal_audio'],
                                       'fused': losses['late_fusion']})
  run = blended[0]
  assert run.config == 'configs/gradient_blending.py:snr-6db'
  assert run.overrides == {f'objective.head_weights.{h}': round(w, 4)
                           for h, w in expected.items()}
  config = runs_lib.load_config(run)
  assert config.objective.head_weights.audio == round(expected['audio'], 4)
  assert 'not run until their weight estimate has finished: -12 dB, 0 dB' in experiment.budget
  # Without the initialisation's losses the estimate has not finished.
  aggregate.write_csv(aggregate.Results([r for r in rows if r['state'] == 'trained'], [],
                                        ['SNR', 'state']), tmp_path / 'results.csv')
  assert not any(r.facets['remedy'].startswith('gradient blending')
                 for r in catalog.get('imbalance').runs)
  # An image-only model whose overfitting barely changed takes nearly all the weight; the fused
  # head, which predicts, would not train: no run, and the budget says so.
  losses['unimodal_image']['trained'] = (2.0, 1.99995)
  rows = [r for r in _blending_rows(estimate.runs, losses) if r['SNR'] in ('any', '-6 dB')]
  aggregate.write_csv(aggregate.Results(rows, [], ['SNR', 'state']), tmp_path / 'results.csv')
  experiment = catalog.get('imbalance')
  assert not any(r.facets['remedy'].startswith('gradient blending') for r in experiment.runs)
  assert ('gradient blending not run where its estimated weights give the fused head, which '
          'predicts, under 0.05 of the loss: -6 dB (fused 0.00, image 1.00, audio 0.00)'
          in experiment.budget)


def test_contrastive_pretrains_beside_two_controls_then_fine_tunes_on_few_labels():
  """contrastive: five seeds of pretraining with pair ids, of single-positive InfoNCE, of batches
  holding one example per pair, of random encoders (no step) and of avmnist_fusion's labelled
  encoders of the same seed, frozen;
  contrastive_labels: each seed's pretrained encoders and the scratch model on 1% and 10% of the
  labels, compared seed by seed within each fraction."""
  experiment = catalog.get('contrastive')
  assert len(experiment.runs) == 5 * 5
  fusion = {r.seed: aggregate.workdir(pathlib.Path('results/avmnist_fusion'), r)
            for r in catalog.get('avmnist_fusion').runs if r.label == 'late_fusion'}
  for run in experiment.runs:
    kind = run.facets['encoders']
    if kind.startswith('trained with labels'):
      assert run.overrides == {'init_from': str(fusion[run.seed]),
                               'init_from_pattern': 'encoders_', 'freeze': 'encoders_'}
    elif kind.startswith('random'):
      assert run.overrides == {'num_train_steps': 0}
    elif kind.endswith('one positive each'):
      assert run.overrides == {'dataset.pair_id': ''}
    elif kind.endswith('one example per pair in a batch'):
      assert run.overrides == {'dataset.one_example_per_pair': True}
    else:
      assert run.overrides == {} and run.name == f'contrastive__seed{run.seed}'
  assert [aggregate._metric_label(m) for m in ('retrieval/audio_to_image/class/R@1',
                                               'probe[features=audio]/accuracy')] == [
      'audio→image class R@1', 'probe on audio']
  assert re.match(experiment.metrics, 'retrieval/image_to_audio/class/R@1')
  labels = catalog.get('contrastive_labels')
  assert len(labels.runs) == 2 * 2 * 5
  assert (labels.paired_with, labels.paired_on) == ('scratch', ('labels',))
  pretrained = {r.name: r for r in experiment.runs}
  for run in labels.runs:
    fraction = run.facets['labels']
    assert run.overrides['dataset.train_split'] == f'train[:{fraction}]'
    if run.label == 'pretrained':
      source = pathlib.Path(run.overrides['init_from'])
      assert source.parent == pathlib.Path('results/contrastive/runs')
      assert pretrained[source.name].seed == run.seed
    else:
      assert run.overrides['init_from'] == ''


def test_paired_differences_and_their_interval():
  """Each seed's difference from the baseline on that seed, and a 95% t-interval of the mean:
  differences 1..5 points have mean 3, std 1.58, t(0.975, 4) = 2.776, half-width 1.96."""
  rows = [{'method': 'scratch', 'seed': s, aggregate.HEADLINE: 0.5} for s in range(5)]
  rows += [{'method': 'student', 'T': '1', 'seed': s, aggregate.HEADLINE: 0.5 + (s + 1) / 100}
           for s in range(5)]
  rows += [{'method': 'student', 'T': '2', 'seed': 0, aggregate.HEADLINE: 0.48}]
  results = aggregate.Results(rows, [], ['T'])
  found = aggregate.paired_differences(results, 'scratch')
  one = found[('student', '1')]
  assert one['diffs'] == pytest.approx([1, 2, 3, 4, 5]) and one['mean'] == pytest.approx(3)
  assert (one['low'], one['high']) == pytest.approx((3 - 1.963, 3 + 1.963), abs=1e-3)
  two = found[('student', '2')]
  assert two['diffs'] == pytest.approx([-2]) and two['low'] is None
  table = aggregate.paired_table(results, 'scratch')
  assert '| student | 1 | +1.0 +2.0 +3.0 +4.0 +5.0 | +3.0 | [+1.0, +5.0] | 5 |' in table
  assert '| student | 2 | -2.0 | -2.0 | — | 1 |' in table
  assert 'different CPUs' not in table  # where each run trained is not recorded
  # Runs that record where they trained: a pair trained in two places is counted and named.
  for row in rows:
    row['run'] = f"{row['method']}{row.get('T', '')}__seed{row['seed']}"
  here = [{'step': 0, 'jax': '0.10.2', 'cpu': 'AMD EPYC 9B14'}]
  records = [{'run': row['run'], 'environment': here} for row in rows]
  records[1]['environment'] = [{**here[0], 'cpu': 'Intel Xeon'}]  # scratch seed 1, elsewhere
  records[5]['environment'] = None                                 # student T=1 seed 0: unknown
  found = aggregate.paired_differences(aggregate.Results(rows, [], ['T'], records=records),
                                       'scratch')
  assert (found[('student', '1')]['elsewhere'], found[('student', '2')]['elsewhere']) == (1, 0)
  table = aggregate.paired_table(aggregate.Results(rows, [], ['T'], records=records), 'scratch')
  assert ('Pairs whose two runs trained on different CPUs or library versions (records.jsonl '
          '`environment`): student 1: 1 of 5.') in ' '.join(table.split())
  # Paired on a facet too: each fraction's arm against that fraction's baseline only.
  rows = [{'method': m, 'labels': f, 'seed': 0, aggregate.HEADLINE: acc}
          for m, f, acc in (('scratch', '1%', 0.3), ('scratch', '10%', 0.6),
                            ('pretrained', '1%', 0.5), ('pretrained', '10%', 0.65))]
  found = aggregate.paired_differences(aggregate.Results(rows, [], ['labels']), 'scratch',
                                       ('labels',))
  assert {k: v['diffs'] for k, v in found.items()} == {('pretrained', '1%'): pytest.approx([20]),
                                                       ('pretrained', '10%'): pytest.approx([5])}


def test_every_run_of_every_experiment_parses_as_the_cli_parses_it(monkeypatch):
  """Each run's --config.* flags name fields its config has (an override of a field the
  config lacks stops the run at once: the recipe ablation's input standardisation once did)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  monkeypatch.chdir(REPO)
  seen = set()
  for name in catalog.EXPERIMENTS:
    for quick in (False, True):
      for run in catalog.get(name, quick=quick).runs:
        args = [a for a in runs_lib.main_args(run, 'wd')[2:] if not a.startswith('--workdir')
                and not a.startswith('--config.seed=')]
        if tuple(args) in seen:
          continue
        seen.add(tuple(args))
        values = flags.FlagValues()
        monkeypatch.setattr(sys, 'argv', ['sweep', *args])  # where config_flags finds overrides
        config_flags.DEFINE_config_file('config', None, '', flag_values=values, lock_config=True)
        values(['sweep', *args])
        assert values.config.get('seed') is not None, args
  assert len(seen) > 40


def test_progress_reads_a_dict_setting_with_the_fields_later_values_set_in_it(tmp_path):
  """Quick mode's tiny encoders (a dict setting) plus an override inside them, as the CLI
  resolves them: the run is finished, not a conflict with its own config.json."""
  tiny = {'image': {'name': 'cnn', 'batch_norm': False}}
  run = runs_lib.Run(TINY, {'model.encoders.image.batch_norm': True}, 0,
                     {'num_train_steps': 8, 'model.encoders': tiny})
  _fake_run(tmp_path / 'run', 0.5, config={'model': {'encoders': {
      'image': {'name': 'cnn', 'batch_norm': True}}}})
  assert runs_lib.progress(run, tmp_path / 'run').state == 'finished'
  _fake_run(tmp_path / 'other', 0.5, config={'model': {'encoders': tiny}})
  assert runs_lib.progress(run, tmp_path / 'other').state == 'conflict'


def test_a_run_of_an_edited_config_is_not_finished(tmp_path, monkeypatch):
  """A run counts as finished only while its config.json is what its config file and values
  resolve to now: a config file edited since (a new recipe default) makes it another run."""
  run = runs_lib.Run(TINY, {'batch_size': 4}, 3, {'num_train_steps': 8})
  saved = json.loads(runs_lib.load_config(run).to_json_best_effort())
  assert CONFIG_CHANGE(run, saved) == ''
  saved['optimizer']['warmup_steps'] += 1
  assert CONFIG_CHANGE(run, saved) == (
      f'optimizer.warmup_steps={saved["optimizer"]["warmup_steps"]} there, '
      f'{saved["optimizer"]["warmup_steps"] - 1} now')
  del saved['optimizer']['warmup_steps']
  assert CONFIG_CHANGE(run, saved).startswith('optimizer.warmup_steps="(absent)" there, ')
  monkeypatch.setattr(runs_lib, '_config_change', CONFIG_CHANGE)
  _fake_run(tmp_path / 'run', 0.5, config=saved)
  state = runs_lib.progress(run, tmp_path / 'run')
  assert state.state == 'conflict' and 'holds a run of another config: optimizer.warmup_steps' \
      in state.detail


def test_print_commands_cli():
  proc = run_python(['-m', 'experiments.sweep', '--experiment=robustness', '--print_commands',
                     '--results_dir=somewhere'])
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = proc.stdout.strip().splitlines()
  # One command per run of the experiment: the unimodal models, late fusion and each fusion whose
  # learning-rate search the committed results hold, with and without modality dropout, 5 seeds.
  runs = catalog.get('robustness').runs
  assert len(lines) == len(runs) >= 20 and len(runs) % 5 == 0
  workdir = ('--workdir=somewhere/runs/late_fusion__modality_dropout.audio=0.3__'
             'modality_dropout.image=0.3__seed4')
  [args] = [shlex.split(l) for l in lines if workdir in shlex.split(l)]
  assert '--config.modality_dropout={"image": 0.3, "audio": 0.3}' in args


def test_bad_flags_are_one_error_line():
  proc = run_python(['-m', 'experiments.sweep', '--experiment=nope'])
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      'mmjax: error: --experiment=nope: no such experiment; valid: avmnist_fusion_lr, '
      'avmnist_fusion, synthetic_interactions, robustness, avmnist_fusion_aux, '
      'avmnist_fusion_warmup, recipe_ablation, audio_lr, distillation_weights, distillation, '
      'imbalance_alpha, gradient_blending_weights, imbalance, contrastive, contrastive_labels, '
      'zoo_avmnist, zoo_synthetic']
  with pytest.raises(UserError, match='--steps=0 must be at least 1'):
    catalog.get('robustness', steps=0)
  proc = run_python(['-m', 'experiments.sweep', '--experiment=robustness', '--jobs=0'])
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == ['mmjax: error: --jobs=0 must be at least 1']


def _fake_run(workdir, accuracy, total=8, evals=('test',), conditions=None, config=None,
              checkpoint=True, final=True):
  """A workdir as a finished run leaves it: config.json, metrics.jsonl, checkpoints/<total>."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True)
  saved = {'num_train_steps': total, 'seed': 0,
           'evals': {e: {'type': 'classification', 'split': 'test'} for e in evals},
           **(config or {})}
  (workdir / 'config.json').write_text(json.dumps(saved))
  lines = [{'step': total // 2, 'split': 'train', 'loss': 2.0, 'accuracy': 0.2,
            'examples_per_sec': 10.0},
           {'step': total, 'split': 'train', 'loss': 1.0, 'accuracy': 0.5,
            'examples_per_sec': 30.0}]
  if final:
    for e in evals:
      for c, acc in (conditions or {None: accuracy}).items():
        lines.append({'step': total, 'split': e, **({'condition': c} if c else {}),
                      'loss': 1.0, 'accuracy': acc, 'num_examples': 100})
  (workdir / 'metrics.jsonl').write_text(''.join(json.dumps(l) + '\n' for l in lines))
  if checkpoint:
    (workdir / 'checkpoints' / str(total)).mkdir(parents=True)


def test_progress_of_a_workdir(tmp_path):
  run = runs_lib.Run(TINY, settings={'num_train_steps': 8})
  assert runs_lib.progress(run, tmp_path / 'none').state == 'not started'
  _fake_run(tmp_path / 'done', 0.5)
  assert runs_lib.progress(run, tmp_path / 'done').state == 'finished'
  _fake_run(tmp_path / 'no_ckpt', 0.5, checkpoint=False)
  assert runs_lib.progress(run, tmp_path / 'no_ckpt').describe() == 'partial: step 8 of 8'
  _fake_run(tmp_path / 'no_eval', 0.5, final=False)
  assert runs_lib.progress(run, tmp_path / 'no_eval').describe() == (
      'partial: step 8 of 8, no final test lines')
  # A run of 0 steps only evaluates: it writes no checkpoint, and its final lines finish it.
  zero = runs_lib.Run(TINY, settings={'num_train_steps': 0})
  _fake_run(tmp_path / 'zero', 0.5, total=0, checkpoint=False)
  assert runs_lib.progress(zero, tmp_path / 'zero').state == 'finished'
  _fake_run(tmp_path / 'zero_no_eval', 0.5, total=0, checkpoint=False, final=False)
  assert runs_lib.progress(zero, tmp_path / 'zero_no_eval').state == 'partial'
  _fake_run(tmp_path / 'other', 0.5, total=4)
  state = runs_lib.progress(run, tmp_path / 'other')
  assert state.state == 'conflict' and 'num_train_steps=4, not 8' in state.detail
  # Finished on the data as it is (datasets.json as the trainer writes it), or on an older one.
  from mmjax.data import synthetic  # pylint: disable=import-outside-toplevel
  (tmp_path / 'done' / 'datasets.json').write_text(
      json.dumps({'synthetic/redundant': synthetic.Synthetic.EXAMPLES_VERSIONS['redundant']}))
  assert runs_lib.progress(run, tmp_path / 'done').state == 'finished'
  (tmp_path / 'done' / 'datasets.json').write_text(json.dumps({'synthetic/redundant': '0.1.0'}))
  state = runs_lib.progress(run, tmp_path / 'done')
  assert state.state == 'conflict' and state.detail == (
      f'{tmp_path / "done"} holds a run trained on synthetic/redundant 0.1.0, which is now '
      f"{synthetic.Synthetic.EXAMPLES_VERSIONS['redundant']}; use another --results_dir or move "
      'that workdir away')


def test_a_run_stopped_early_is_finished_at_its_stop_and_aggregated_there(tmp_path):
  """early_stopping_patience ends a run before num_train_steps: its train metrics mark the step,
  where its checkpoint and final evaluator lines are."""
  run = runs_lib.Run(TINY, settings={'num_train_steps': 8})
  workdir = aggregate.workdir(tmp_path, run)
  workdir.mkdir(parents=True)
  (workdir / 'config.json').write_text(json.dumps(
      {'num_train_steps': 8, 'seed': 0, 'evals': {'test': {'type': 'classification'}}}))
  with (workdir / 'metrics.jsonl').open('w') as f:
    for line in ({'step': 3, 'split': 'train', 'loss': 2.0, 'accuracy': 0.2},
                 {'step': 6, 'split': 'train', 'loss': 0.8, 'accuracy': 0.6},
                 {'step': 6, 'split': 'train', 'stopped_early': True},
                 {'step': 6, 'split': 'test', 'loss': 0.9, 'accuracy': 0.7, 'num_examples': 100,
                  'selected_step': 4}):
      f.write(json.dumps(line) + '\n')
  assert runs_lib.progress(run, workdir).describe() == 'partial: step 6 of 8'  # no checkpoint
  (workdir / 'checkpoints' / '6').mkdir(parents=True)
  state = runs_lib.progress(run, workdir)
  assert (state.state, state.step, state.total) == ('finished', 6, 8)
  [row] = aggregate.collect(catalog.Experiment('x', 'x', [run], 'b'), tmp_path).rows
  assert (row['step'], row['test/accuracy'], row['test/selected_step']) == (6, 0.7, 4)
  assert (row['train/loss'], row['train/accuracy']) == (0.8, 0.6)
  # Resumed with a changed config (another patience), it trained on: the mark no longer ends it.
  with (workdir / 'metrics.jsonl').open('a') as f:
    f.write(json.dumps({'step': 8, 'split': 'train', 'loss': 0.7, 'accuracy': 0.7}) + '\n')
  assert runs_lib.progress(run, workdir).describe() == 'partial: step 8 of 8, no final test lines'


def test_dataset_versions_are_read_once_per_config_not_per_run(tmp_path, monkeypatch):
  loads = []
  load_config = runs_lib.load_config
  monkeypatch.setattr(runs_lib, 'load_config', lambda run: loads.append(run) or load_config(run))
  monkeypatch.setattr(runs_lib, '_DATASET_VERSIONS', {})
  from mmjax.data import synthetic  # pylint: disable=import-outside-toplevel
  for seed in range(3):
    run = runs_lib.Run(TINY, seed=seed, settings={'num_train_steps': 8})
    _fake_run(tmp_path / str(seed), 0.5, config={'seed': seed})
    (tmp_path / str(seed) / 'datasets.json').write_text(
        json.dumps({'synthetic/redundant': synthetic.Synthetic.EXAMPLES_VERSIONS['redundant']}))
    for _ in range(2):  # once before training it, once after
      assert runs_lib.progress(run, tmp_path / str(seed)).state == 'finished'
  assert len(loads) == 1
  other = runs_lib.Run(TINY, overrides={'batch_size': 4}, settings={'num_train_steps': 8})
  runs_lib.dataset_versions(other)
  assert len(loads) == 2


# ------------------------------------------------------------------------------------------------
# Aggregation from hand-made metrics.jsonl files


def _handmade(root, accuracies: dict, facet=None, conditions=None):
  """Finished fake runs of a hand-made experiment: {(method, seed): accuracy or None (missing)}."""
  grid = []
  for (method, seed), acc in accuracies.items():
    facets = {'data': facet} if facet else {}
    run = runs_lib.Run(f'configs/{method}.py', {}, seed, {'num_train_steps': 8}, method, facets)
    grid.append(run)
    if acc is not None:
      conds = None if conditions is None else {c: acc + d for c, d in conditions.items()}
      _fake_run(aggregate.workdir(root, run), acc, evals=('robustness',) if conditions else
                ('test',), conditions=conds, config={'seed': seed})
  return catalog.Experiment('handmade', 'Hand-made', grid, 'eight steps')


def test_mean_std_and_n_over_seeds_and_missing_runs(tmp_path):
  experiment = _handmade(tmp_path, {('late_fusion', 0): 0.5, ('late_fusion', 1): 0.6,
                                    ('late_fusion', 2): 0.7, ('early_fusion', 0): 0.25,
                                    ('early_fusion', 1): None})
  results = aggregate.collect(experiment, tmp_path)
  assert [r['seed'] for r in results.rows] == [0, 1, 2, 0]
  [(missing, state)] = results.missing
  assert missing.name == 'early_fusion__seed1' and state.state == 'not started'
  stats = aggregate.summary(results.rows, ['method'], 'test/accuracy')
  mean, std, n = stats[('late_fusion',)]
  assert (mean, n) == (pytest.approx(0.6), 3) and std == pytest.approx(0.1)  # sample std
  assert math.isnan(stats[('early_fusion',)][1])
  table = aggregate.markdown(results, experiment)
  assert '| late_fusion | 60.0 ± 10.0 | 50.0 | 50.0 60.0 70.0 | 3/3 | 3 |' in table
  assert '| early_fusion | 25.0 | 25.0 | 25.0 | 1/1 | 1 |' in table
  assert '1 of 5 runs not finished: 1 not started.' in table
  begun = aggregate.Results([], [(missing, runs_lib.Progress('partial', 4, 8)), (missing, state)],
                            [])
  assert aggregate.missing_note(begun, 9) == (
      '2 of 9 runs not finished: `early_fusion__seed1` (partial: step 4 of 8); 1 not started.')

  aggregate.write_csv(results, tmp_path / 'results.csv')
  rows = aggregate.read_csv(tmp_path / 'results.csv')
  assert len(rows) == 4 and rows[1]['test/accuracy'] == 0.6 and rows[1]['seed'] == 1
  assert rows[1]['train/accuracy'] == 0.5 and rows[1]['train/examples_per_sec'] == 30.0
  assert [p.name for p in plots.write_all(results, tmp_path)] == ['accuracy.png']
  svg = (tmp_path / 'accuracy.svg').read_bytes()
  assert svg.startswith(b'<?xml') and b'<svg' in svg
  plots.write_all(results, tmp_path)  # drawn again: the same bytes, nothing for git to show
  assert (tmp_path / 'accuracy.svg').read_bytes() == svg


def test_an_evaluator_run_during_training_also_gives_its_best_accuracy():
  lines = [{'step': 4, 'split': 'validation', 'accuracy': 0.7},
           {'step': 8, 'split': 'validation', 'accuracy': 0.6},
           {'step': 8, 'split': 'test', 'accuracy': 0.65, 'selected_step': 4},
           {'step': 8, 'split': 'robustness', 'condition': 'all', 'accuracy': 0.65}]
  metrics = aggregate.run_metrics(lines, 8)
  assert metrics['validation/best_accuracy'] == 0.7 and metrics['validation/accuracy'] == 0.6
  assert 'test/best_accuracy' not in metrics  # scored once: nothing to choose from
  assert aggregate.metric_columns([metrics]) == ['test/accuracy', 'robustness[all]/accuracy']


def test_jobs_train_that_many_runs_at_a_time_and_overlap_counts_once(tmp_path, monkeypatch):
  """`--jobs=2`: two runs at once, never more; the wall time is the time any run was running,
  and the table says how many ran at a time."""
  experiment = _handmade(tmp_path, {('late_fusion', s): None for s in range(5)})
  lock, done, running, peak = threading.Lock(), set(), [0], [0]

  def execute(run, wd, log, timeout_s):  # pylint: disable=unused-argument
    with lock:
      running[0] += 1
      peak[0] = max(peak[0], running[0])
    time.sleep(0.4)
    with lock:
      running[0] -= 1
      done.add(run.name)
    return 0

  monkeypatch.setattr(runs_lib, 'execute', execute)
  monkeypatch.setattr(runs_lib, 'progress', lambda run, wd: runs_lib.Progress(
      'finished' if run.name in done else 'not started'))
  out = io.StringIO()
  assert runner.run_all(experiment, tmp_path, 60, out=out, jobs=2) == []
  assert peak[0] == 2 and len(done) == 5 and out.getvalue().count('done in') == 5
  timed = aggregate.read_attempts(tmp_path)
  assert set(timed) == {r.name for r in experiment.runs}
  seconds, jobs = aggregate.elapsed([a for runs in timed.values() for a in runs])
  assert jobs == 2 and 1.1 < seconds < 5 * 0.4  # 3 rounds of 0.4 s, not 5
  assert sum(a['seconds'] for runs in timed.values() for a in runs) >= 5 * 0.4


def test_a_run_shared_with_another_experiment_is_trained_once(tmp_path, monkeypatch):
  """robustness shares its unimodal and standard runs with avmnist_fusion: a run the other
  experiment has is linked and skipped (or resumed there), the rest train in its own directory,
  and its results read both."""
  fusion = _handmade(tmp_path / 'fusion', {('late_fusion', 0): 0.8})
  mine = _handmade(tmp_path / 'robust', {('late_fusion', 0): None, ('early_fusion', 0): None})
  mine = dataclasses.replace(mine, shares_runs_with=('fusion',))
  trained = []

  def execute(run, wd, log, timeout_s):  # pylint: disable=unused-argument
    trained.append(run.name)
    _fake_run(wd, 0.6, config={'seed': run.seed})
    return 0

  monkeypatch.setattr(runs_lib, 'execute', execute)
  out = io.StringIO()
  assert runner.run_all(mine, tmp_path / 'robust', 60, out=out) == []
  assert trained == ['early_fusion__seed0']
  linked = aggregate.workdir(tmp_path / 'robust', mine.runs[0])
  assert linked.is_symlink() and linked.resolve() == aggregate.workdir(tmp_path / 'fusion',
                                                                        fusion.runs[0])
  assert '[1/2] late_fusion__seed0 (shared with fusion): finished, skipped' in out.getvalue()
  rows = aggregate.collect(mine, tmp_path / 'robust').rows
  assert {r['method']: r['test/accuracy'] for r in rows} == {'late_fusion': 0.8,
                                                             'early_fusion': 0.6}
  # Without the other experiment's run, or without sharing, a run is trained in its own place.
  alone = dataclasses.replace(mine, runs=[runs_lib.Run('configs/late_fusion.py', {}, 1,
                                                       {'num_train_steps': 8}, 'late_fusion')])
  assert runner.run_all(alone, tmp_path / 'robust', 60, out=out) == []
  assert trained[-1] == 'late_fusion__seed1'
  assert not aggregate.workdir(tmp_path / 'robust', alone.runs[0]).is_symlink()
  assert catalog.get('robustness').shares_runs_with == ('avmnist_fusion',)


def test_elapsed_time_is_the_union_of_the_attempts():
  timings = [{'run': 'a', 'seconds': 10, 'exit': 0, 'start': 100, 'jobs': 2},
             {'run': 'b', 'seconds': 10, 'exit': 0, 'start': 105, 'jobs': 2},  # overlaps a
             {'run': 'a', 'seconds': 4, 'exit': 0, 'start': 1000, 'jobs': 1}]  # a later resume
  assert aggregate.elapsed(timings) == (15 + 4, 2)
  assert aggregate.elapsed(timings[2:]) == (4, 1)
  # An attempt recorded without its start (before start times were kept): no union to take.
  assert aggregate.elapsed(timings + [{'run': 'c', 'seconds': 7, 'jobs': 2}]) == (None, 2)
  note = aggregate.wall_note(aggregate.Results([{'wall_s': 1200}, {'wall_s': 600}], [], [],
                                               900.0, 2))
  assert note == (' Wall time of the 2 finished runs the sweep timed: 15 min, up to 2 at a time '
                  '(`--jobs=2`; 30 min summed over the runs).')
  note = aggregate.wall_note(aggregate.Results([{'wall_s': 1200}, {'wall_s': 600}], [], [],
                                               None, 2))
  assert note == (' Wall time of the 2 finished runs the sweep timed: 30 min summed over the runs, '
                  'up to 2 at a time.')


def test_a_run_recorded_in_the_results_is_finished_without_its_workdir(tmp_path, monkeypatch):
  """Workdirs stay where they trained; records.jsonl goes with the results. From a clone that
  has the results but not the workdirs, the sweep skips what they record and aggregates the same
  results.csv; a record of the run as it resolved before an edit is ignored and the run trains."""
  root = tmp_path / 'handmade'
  experiment = _handmade(root, {('late_fusion', 0): 0.8, ('late_fusion', 1): 0.7,
                                ('early_fusion', 0): None})
  # Where each run trained goes with it (a run from before environment.jsonl has None).
  environment = {'step': 0, 'jax': '0.10.2', 'cpu': 'AMD EPYC 9B14', 'devices': 1}
  (aggregate.workdir(root, experiment.runs[1]) / 'environment.jsonl').write_text(
      json.dumps(environment) + '\n')
  runner.write_results(experiment, root, out=io.StringIO())
  records = aggregate.read_records(experiment, root)
  assert sorted(records) == ['late_fusion__seed0', 'late_fusion__seed1']
  assert records['late_fusion__seed1']['row']['test/accuracy'] == 0.7
  assert records['late_fusion__seed1']['config']['seed'] == 1
  assert records['late_fusion__seed1']['environment'] == [environment]
  assert records['late_fusion__seed0']['environment'] is None
  before = aggregate.read_csv(root / aggregate.CSV)
  shutil.rmtree(root / aggregate.RUNS_DIR)

  trained = []

  def execute(run, wd, log, timeout_s):  # pylint: disable=unused-argument
    trained.append(run.name)
    _fake_run(wd, 0.6, total=run.settings['num_train_steps'], config={'seed': run.seed})
    return 0

  monkeypatch.setattr(runs_lib, 'execute', execute)
  out = io.StringIO()
  assert runner.run_all(experiment, root, 60, out=out) == []
  assert trained == ['early_fusion__seed0']
  assert ('[2/3] late_fusion__seed1: finished at step 8 of 8 (recorded in the results), skipped'
          in out.getvalue())
  runner.write_results(experiment, root, out=io.StringIO())
  rows = aggregate.read_csv(root / aggregate.CSV)
  assert rows[:2] == before and rows[2]['test/accuracy'] == 0.6
  # A workdir, once begun, is what counts: an interrupted one resumes beside the record.
  _fake_run(aggregate.workdir(root, experiment.runs[1]), 0.5, checkpoint=False,
            config={'seed': 1})
  state, record = aggregate.status(experiment.runs[1], root, records)
  assert (state.describe(), record) == ('partial: step 8 of 8', None)

  # The same runs at another budget (settings are not in a run's name): the records are not
  # theirs.
  longer = dataclasses.replace(experiment, runs=[
      dataclasses.replace(r, settings={'num_train_steps': 16}) for r in experiment.runs[:1]])
  state, record = aggregate.status(longer.runs[0], root, aggregate.read_records(longer, root))
  assert (state.state, record) == ('not started', None)
  assert state.detail == ('records.jsonl holds a run with num_train_steps=8, not 16: it trains '
                          'again')
  out = io.StringIO()
  assert runner.run_all(longer, root, 60, out=out) == []
  assert trained[-1] == 'late_fusion__seed0'
  assert (f'[1/1] late_fusion__seed0: running ({state.detail})') in out.getvalue()


def test_a_plot_the_aggregation_no_longer_draws_is_removed(tmp_path):
  """Runs that no longer count (here: the same runs at another budget) leave no plot of them
  behind for the README to show."""
  root = tmp_path / 'handmade'
  experiment = _handmade(root, {('late_fusion', 0): 0.8})
  runner.write_results(experiment, root, out=io.StringIO())
  assert (root / 'accuracy.png').exists() and (root / 'accuracy.svg').exists()
  longer = dataclasses.replace(experiment, runs=[
      dataclasses.replace(r, settings={'num_train_steps': 16}) for r in experiment.runs])
  runner.write_results(longer, root, out=io.StringIO())
  assert not list(root.glob('*.png')) and not list(root.glob('*.svg'))


def test_each_committed_results_csv_is_what_its_records_give(tmp_path, monkeypatch):
  """The results a clone holds regenerate from its records alone, with every record still of its
  run as the configs and data resolve now (an edited config makes its results stale here)."""
  monkeypatch.setattr(runs_lib, '_config_change', CONFIG_CHANGE)
  committed = sorted((REPO / 'results').glob(f'*/{aggregate.CSV}'))
  assert committed
  for path in REPO.glob(f'results/*/{aggregate.RECORDS}'):
    (tmp_path / path.parent.name).mkdir()
    shutil.copy(path, tmp_path / path.parent.name)
  for path in committed:
    name = path.parent.name
    results = aggregate.collect(catalog.get(name), tmp_path / name)
    aggregate.write_csv(results, tmp_path / name / aggregate.CSV)
    assert (tmp_path / name / aggregate.CSV).read_text() == path.read_text(), name


def test_a_run_another_experiment_records_is_not_trained_again(tmp_path, monkeypatch):
  fusion = _handmade(tmp_path / 'fusion', {('late_fusion', 0): 0.8})
  runner.write_results(fusion, tmp_path / 'fusion', out=io.StringIO())
  shutil.rmtree(tmp_path / 'fusion' / aggregate.RUNS_DIR)
  mine = dataclasses.replace(_handmade(tmp_path / 'robust', {('late_fusion', 0): None}),
                             shares_runs_with=('fusion',))
  monkeypatch.setattr(runs_lib, 'execute', lambda *args: pytest.fail('trained again'))
  assert runner.run_all(mine, tmp_path / 'robust', 60, out=io.StringIO()) == []
  [row] = aggregate.collect(mine, tmp_path / 'robust').rows
  assert row['test/accuracy'] == 0.8


def test_facet_columns_and_robustness_plots(tmp_path):
  conditions = {'all': 0.0, 'missing=audio': -0.2, 'missing=image': -0.3,
                'noise=audio,snr_db=0': -0.05, 'noise=audio,snr_db=-6': -0.1}
  experiment = _handmade(tmp_path, {('late_fusion', 0): 0.8, ('late_fusion', 1): 0.9},
                         conditions=conditions)
  results = aggregate.collect(experiment, tmp_path)
  assert 'robustness[noise=audio,snr_db=-6]/accuracy' in results.rows[0]
  table = aggregate.table(results)
  assert table.splitlines()[0] == ('| method | all | missing=audio | missing=image | '
                                   'noise=audio,snr_db=0 | noise=audio,snr_db=-6 | min | '
                                   'per seed | healthy | n |')
  row = ('| late_fusion | 85.0 ± 7.1 | 65.0 ± 7.1 | 55.0 ± 7.1 | 80.0 ± 7.1 | 75.0 ± 7.1 | '
         '80.0 | 80.0 90.0 | 2/2 | 2 |')
  assert row in table
  assert [p.name for p in plots.write_all(results, tmp_path)] == [
      'accuracy.png', 'robustness_snr.png', 'robustness_missing.png']

  # A facet as column groups (the synthetic table: one column per dataset).
  rows = [{'method': m, 'data': d, 'seed': s, 'test/accuracy': a}
          for m, d, s, a in [('lf', 'synergy', 0, 0.4), ('lf', 'synergy', 1, 0.6),
                             ('lf', 'unique', 0, 0.9), ('img', 'unique', 0, 0.8)]]
  pivot = aggregate.table(aggregate.Results(rows, [], ['data']), columns='data')
  assert pivot.splitlines() == ['| method | synergy | unique | healthy | n |',
                                '|---|---:|---:|---:|---:|',
                                '| lf | 50.0 ± 14.1, min 40.0 | 90.0 | 3/3 | 1–2 |',
                                '| img | — | 80.0 | 1/1 | 1 |']


def test_interactions_table_puts_each_models_decomposition_beside_the_datas():
  def row(method, seed, accuracy, predicted, data=(0.0, 0.0, 0.0, 1.0)):
    out = {'method': method, 'probe': 'synergy', 'seed': seed, 'test/accuracy': accuracy,
           'pid[labels_at_model_accuracy]/synergy': 0.1 * seed}
    for condition, values in (('labels', data), ('predictions', predicted)):
      out.update({f'pid[{condition}]/{p}': v for p, v in zip(
          ('redundancy', 'unique_audio', 'unique_image', 'synergy'), values)})
    return out

  rows = [row('late_fusion', 0, 1.0, (0.0, 0.0, 0.0, 1.0)),
          row('late_fusion', 1, 0.9, (0.0, 0.0, 0.02, 0.8)),
          row('decision_fusion', 0, 0.5, (-1e-9, 0.0, 0.9, 0.0))]
  results = aggregate.Results(rows, [], ['probe'])
  assert aggregate.interactions_table(results, 'probe').splitlines() == [
      '| probe | method | test accuracy (%), per seed | R | U audio | U image | S | '
      'S, labels at its accuracy | n |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|',
      '| synergy | data | — | 0.00 | 0.00 | 0.00 | 1.00 | — | |',
      '| synergy | late_fusion | 100.0 90.0 | 0.00 ± 0.00 | 0.00 ± 0.00 | 0.01 ± 0.01 | '
      '0.90 ± 0.14 | 0.05 ± 0.07 | 2 |',
      '| synergy | decision_fusion | 50.0 | 0.00 | 0.00 | 0.90 | 0.00 | 0.00 | 1 |']
  experiment = catalog.Experiment('x', 'x', [None] * 3, 'b', columns='probe')
  assert 'partial information decomposition' in aggregate.markdown(results, experiment)
  without = aggregate.Results([{k: v for k, v in r.items() if 'pid' not in k} for r in rows], [],
                              ['probe'])
  assert aggregate.interactions_table(without, 'probe') == ''
  assert 'partial information' not in aggregate.markdown(without, experiment)


# ------------------------------------------------------------------------------------------------
# End to end


def _without_timing(workdir):
  return [{k: v for k, v in line.items() if k not in writers.TIMING_KEYS}
          for line in runs_lib.read_metrics(workdir)]


@pytest.mark.slow
def test_quick_sweep_end_to_end_skips_finished_runs_and_resumes_an_interrupted_one(tmp_path):
  """`--quick` (tiny encoders, 4 steps) trains, aggregates and plots; the numbers mean nothing.
  Run again, it trains only the run whose last checkpoint was lost, which resumes."""
  root = tmp_path / 'quick'
  args = ['-m', 'experiments.sweep', '--experiment=synthetic_interactions', '--quick',
          f'--results_dir={root}']
  proc = run_python(args, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert '2 of 2 runs finished' in proc.stdout
  rows = aggregate.read_csv(root / 'results.csv')
  assert [r['dataset'] for r in rows] == ['unique_image', 'synergy']
  assert all(r['test/num_examples'] == 4000 and r['step'] == 4 and r['wall_s'] > 0 for r in rows)
  assert all(r['pid[labels]/num_examples'] == 500 for r in rows)
  # The data's own decomposition, measured on validation's 500 examples (the estimate of a
  # label's entropy from 500 examples falls a little short of log2 10 = 3.32 bits)
  unique, synergy = rows
  assert unique['pid[labels]/unique_image'] > 3.0 and synergy['pid[labels]/synergy'] > 0.9
  table = (root / 'table.md').read_text()
  assert '| method | unique_image | synergy | healthy | n |' in table
  assert 'All 2 runs finished.' in table
  assert (root / 'accuracy.png').stat().st_size > 0
  # The runs train one program: the 2nd loads it from the persistent cache.
  for run in catalog.get('synthetic_interactions', quick=True).runs[1:]:
    log = (root / 'logs' / f'{run.name}.log').read_text()
    loaded = re.search(r'; (\d+) loaded from the persistent compilation cache', log)
    assert loaded and int(loaded.group(1)) >= 2, log[-2000:]  # its train and eval steps at least

  [run] = [r for r in catalog.get('synthetic_interactions', quick=True).runs
           if r.facets['dataset'] == 'unique_image']
  workdir = aggregate.workdir(root, run)
  reference = _without_timing(workdir)
  # Killed after the step-2 checkpoint: the final one is lost (its later lines are rewritten).
  assert runs_lib.checkpoint_steps(workdir) == [2, 4]
  shutil.rmtree(workdir / 'checkpoints' / '4')
  proc = run_python(args, timeout=600)  # the same command again
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert proc.stdout.count('finished, skipped') == 1, proc.stdout
  assert f'{run.name}: running (resuming: partial: step 4 of 4)' in proc.stdout
  assert 'resumed from step 2' in (root / 'logs' / f'{run.name}.log').read_text()
  assert _without_timing(workdir) == reference
  assert len(aggregate.read_csv(root / 'results.csv')) == 2


# ------------------------------------------------------------------------------------------------
# README


def test_readme_results_section_matches_the_result_files():
  diff = readme_results.check()
  assert not diff, f'run `python -m experiments.readme_results`:\n{diff}'


def test_readme_check_notices_a_changed_table(tmp_path):
  shutil.copy(REPO / 'README.md', tmp_path / 'README.md')
  name = next(iter(catalog.EXPERIMENTS))
  if (REPO / 'results').exists():
    # Not the run workdirs a local sweep leaves there (gigabytes; ignored by git).
    shutil.copytree(REPO / 'results', tmp_path / 'results',
                    ignore=shutil.ignore_patterns('runs', 'logs'))
  assert readme_results.check(tmp_path) == ''
  folder = tmp_path / 'results' / name
  folder.mkdir(parents=True, exist_ok=True)
  (folder / 'table.md').write_text('| method | test | n |\n|---|---:|---:|\n| x | 1.0 | 1 |\n')
  assert '+| x | 1.0 | 1 |' in readme_results.check(tmp_path)
  assert readme_results.write(tmp_path)
  assert readme_results.check(tmp_path) == ''
  assert '| x | 1.0 | 1 |' in (tmp_path / 'README.md').read_text()
