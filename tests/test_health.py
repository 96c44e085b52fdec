"""Run health (mmjax.health): the flags on hand-made accuracies, the trainer's warning line, and
the sweep's health columns, table marks and plots built from hand-made runs."""

import dataclasses
import json
import logging

import pytest

from experiments import aggregate
from experiments import catalog
from experiments import plots
from experiments import runner
from experiments import runs as runs_lib
from mmjax import health
from mmjax.models.model import build_model
from mmjax.training import train
from tests.conftest import REPO
from tests.test_sweep import _fake_run

HEALTHY = {'all': 0.83, 'missing=audio': 0.64, 'missing=image': 0.52,
           'noise=audio,snr_db=0': 0.80, 'noise=audio,snr_db=-18': 0.66}
AV = ('image', 'audio')


@pytest.fixture(autouse=True)
def _partial_config_json(monkeypatch):
  """Hand-made workdirs hold a few fields of config.json (see tests/test_sweep.py)."""
  monkeypatch.setattr(runs_lib, '_config_change', lambda run, saved: '')


def test_a_healthy_run_is_not_flagged():
  found = health.check(HEALTHY, AV, 0.1)
  assert found.healthy and found == health.Health()


def test_a_branch_at_chance_without_the_other_modality_is_inert():
  found = health.check({**HEALTHY, 'all': 0.63, 'missing=image': 0.096}, AV, 0.1)
  assert found.inert == ('audio',) and not found.diverged and not found.healthy
  assert found.reasons == ('audio branch inert: accuracy with the image removed 9.6% '
                           '(chance 10%)',)
  # 5 points above chance is still chance; 5.1 is not.
  assert health.check({**HEALTHY, 'missing=image': 0.15}, AV, 0.1).inert == ('audio',)
  assert health.check({**HEALTHY, 'missing=image': 0.151}, AV, 0.1).healthy


def test_where_swapping_was_measured_it_decides_use_not_removal():
  # Tensor fusion at SGD 0.03 (the learning-rate search): 74.9% with both, so it reads the
  # image (audio alone tops out near 55%), yet 7.0% with the audio removed: the product of its
  # features with a zeroed modality's is no input it trained on. Swapping keeps inputs real.
  multiplicative = {'all': 0.749, 'missing=audio': 0.070, 'missing=image': 0.206,
                    'noise=audio,snr_db=-18': 0.579}
  assert health.check(multiplicative, AV, 0.1).inert == ('image',)
  found = health.check({**multiplicative, 'swapped=image': 0.21, 'swapped=audio': 0.52}, AV, 0.1)
  assert found.healthy
  # A branch the model ignores: swapping it moves nothing, whatever removal shows.
  ignored = health.check({**HEALTHY, 'all': 0.631, 'swapped=image': 0.2,
                          'swapped=audio': 0.6275}, AV, 0.1)
  assert ignored.inert == ('audio',)
  assert ignored.reasons == ("audio branch inert: giving each example another example's audio "
                             'moves accuracy by 0.35 point',)
  assert health.check({**HEALTHY, 'swapped=image': 0.2, 'swapped=audio': 0.825},
                      AV, 0.1).healthy


def test_a_branch_that_the_strongest_noise_does_not_move_is_inert():
  ignored = {**HEALTHY, 'all': 0.631, 'noise=audio,snr_db=0': 0.631,
             'noise=audio,snr_db=-18': 0.627}
  found = health.check(ignored, AV, 0.1)
  assert found.inert == ('audio',)
  assert found.reasons == ('audio branch inert: snr_db=-18 noise on the audio moves accuracy '
                           'by 0.40 point',)
  # Noise at 0 dB barely moving it is no flag: the strongest level decides.
  assert health.check({**HEALTHY, 'noise=audio,snr_db=0': 0.83}, AV, 0.1).healthy
  assert health.strongest_noise(['noise=image,std=0.1', 'noise=image,std=0.5',
                                 'noise=audio,snr_db=-6'], 'image') == 'noise=image,std=0.5'


def test_a_run_at_chance_or_with_a_nonfinite_loss_diverged():
  at_chance = health.check({'all': 0.0966}, ('audio',), 0.1)
  assert at_chance.diverged and not at_chance.inert
  assert at_chance.reasons == ('accuracy 9.7% with every modality (chance 10%)',)
  assert health.check({'all': 0.5}, ('audio',), 0.1).healthy
  assert health.check({}, ('audio',), 0.1, nonfinite=True).diverged
  # A unimodal run has no other modality to remove: never inert.
  assert health.check({'all': 0.5, 'noise=audio,snr_db=-18': 0.5}, ('audio',), 0.1).healthy


def test_the_trainer_warns_once_per_flag(caplog, monkeypatch):
  config = catalog.runs_lib.load_config(runs_lib.Run('configs/late_fusion.py'),
                                        with_values=False)
  model = build_model(config)
  # The README's example line, from the conditions the main job's robustness evaluator has.
  inert = [{'condition': c, 'accuracy': a, 'loss': 1.0}
           for c, a in {**HEALTHY, 'all': 0.631, 'swapped=image': 0.2,
                        'swapped=audio': 0.6275}.items()]
  caplog.set_level(logging.WARNING)
  train._warn_if_unhealthy(model, {'test': [{'accuracy': 0.631, 'loss': 1.0}],
                                   'robustness': inert})
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert warnings == ["robustness: audio branch inert: giving each example another example's "
                      'audio moves accuracy by 0.35 point']
  assert f'`{warnings[0]}`' in ' '.join((REPO / 'README.md').read_text().split())
  caplog.clear()
  train._warn_if_unhealthy(model, {'robustness': [{'condition': c, 'accuracy': a}
                                                  for c, a in HEALTHY.items()]})
  assert not [r for r in caplog.records if r.levelno == logging.WARNING]


# ------------------------------------------------------------------------------------------------
# The sweep: results.csv columns, the table, the plots

AV_CONFIG = {'tasks': {'label': {'num_classes': 10}},
             'model': {'encoders': {'image': {}, 'audio': {}}}}


def _experiment(root, runs: dict):
  """{(method, seed): {condition: accuracy} or 'nonfinite'} as finished (or diverged) runs."""
  grid = []
  for (method, seed), conditions in runs.items():
    run = runs_lib.Run(f'configs/{method}.py', {}, seed, {'num_train_steps': 8}, method)
    grid.append(run)
    wd = aggregate.workdir(root, run)
    config = {**AV_CONFIG, 'seed': seed}
    if method.startswith('unimodal_'):
      config['model'] = {'encoders': {method.removeprefix('unimodal_'): {}}}
    if conditions == 'nonfinite':
      _fake_run(wd, 0.0, config=config, checkpoint=False, final=False)
      with open(wd / 'metrics.jsonl', 'a', encoding='utf-8') as f:
        f.write(json.dumps({'step': 5, 'split': 'train', 'stopped_nonfinite': True}) + '\n')
    else:
      _fake_run(wd, None, evals=('robustness',), conditions=conditions, config=config)
  return catalog.Experiment('handmade', 'Hand-made', grid, 'eight steps')


def test_health_columns_table_marks_and_healthy_counts(tmp_path):
  inert = {**HEALTHY, 'all': 0.63, 'missing=image': 0.096}
  experiment = _experiment(tmp_path, {('late_fusion', 0): HEALTHY, ('late_fusion', 1): inert,
                                      ('late_fusion', 2): {**HEALTHY, 'all': 0.85},
                                      ('unimodal_audio', 0): {'all': 0.52},
                                      ('unimodal_audio', 1): 'nonfinite'})
  results = aggregate.collect(experiment, tmp_path)
  assert not results.missing  # the diverged run is a result, not a missing run
  flags = {(r['method'], r['seed']): (r['inert'], r['diverged'], r['healthy'])
           for r in results.rows}
  assert flags == {('late_fusion', 0): ('', 0, 1), ('late_fusion', 1): ('audio', 0, 0),
                   ('late_fusion', 2): ('', 0, 1), ('unimodal_audio', 0): ('', 0, 1),
                   ('unimodal_audio', 1): ('', 1, 0)}
  table = aggregate.table(results)
  assert table.splitlines()[0].endswith('| min | per seed | healthy | n |')
  assert '| late_fusion | 77.0 ± 12.2 |' in table
  assert '| 63.0 | 83.0 63.0† 85.0 | 2/3 | 3 |' in table
  assert '| unimodal_audio | 52.0 | — | — | — | — | 52.0 | 52.0 —‡ | 1/2 | 1 |' in table
  note = aggregate.health_note(results)
  assert ('2 of 5 runs are not: `late_fusion__seed1` (inert in audio); '
          '`unimodal_audio__seed1` (diverged).') in note
  assert 'with the other modality removed within 5 points of chance' in note
  # The rule the note states is the one each run was judged by: the swap where a run measured
  # it (mmjax.health), removal for the runs that did not.
  swapped = dataclasses.replace(results, rows=[
      {**r, 'robustness[swapped=audio]/accuracy': 0.5} if r['seed'] == 0 else r
      for r in results.rows])
  note = aggregate.health_note(swapped)
  assert ("giving each example another example's modality moves accuracy by under 0.5 point "
          '(runs that measured it; the 2 that did not: with the other modality removed within 5 '
          'points of chance)') in note
  every = dataclasses.replace(results, rows=[
      {**r, 'robustness[swapped=audio]/accuracy': 0.5} for r in results.rows])
  assert 'removed' not in aggregate.health_note(every)
  # Where the failing methods are trained again with a fix, the note says so; not when all pass.
  pointed = dataclasses.replace(experiment, remedies=('fix_a', 'fix_b'))
  assert ('Their methods are trained again on the same seeds with a remedy in '
          '`--experiment=fix_a` and `--experiment=fix_b`, whose tables show these runs') in ' '.join(
              aggregate.markdown(results, pointed).split())
  healthy = dataclasses.replace(results, rows=[r for r in results.rows if r['healthy']])
  assert aggregate.health_note(healthy).endswith(' All 3 runs are healthy.')
  one = dataclasses.replace(results, rows=healthy.rows[:1])
  assert aggregate.health_note(one).endswith(' The run is healthy.')
  assert 'remedy' not in aggregate.markdown(healthy, pointed)
  assert 'remedy' not in aggregate.markdown(results, experiment)
  fusion = catalog.get('avmnist_fusion')
  assert fusion.remedies and all(
      catalog.get(name).shares_runs_with[0] == 'avmnist_fusion' for name in fusion.remedies)

  aggregate.write_csv(results, tmp_path / 'results.csv')
  rows = aggregate.read_csv(tmp_path / 'results.csv')
  assert [r.get('inert', '') for r in rows] == ['', 'audio', '', '', '']
  assert [r['healthy'] for r in rows] == [1, 0, 1, 1, 0] and rows[0]['chance'] == 0.1

  # The runner counts the diverged run as done: rerunning it would stop at the same step.
  assert runs_lib.progress(experiment.runs[-1], aggregate.workdir(tmp_path, experiment.runs[-1])
                           ).describe() == 'diverged: non-finite loss at step 5 of 8'
  assert runner.run_all(catalog.Experiment('one', 'One', experiment.runs[-1:], ''), tmp_path,
                        60) == []


def test_plots_show_every_seed_chance_and_the_best_unimodal_model(tmp_path):
  inert = {**HEALTHY, 'all': 0.63, 'missing=image': 0.096, 'noise=audio,snr_db=0': 0.63,
           'noise=audio,snr_db=-18': 0.63}
  experiment = _experiment(tmp_path, {('late_fusion', 0): HEALTHY, ('late_fusion', 1): inert,
                                      ('unimodal_image', 0): {'all': 0.64},
                                      ('unimodal_image', 1): {'all': 0.62}})
  results = aggregate.collect(experiment, tmp_path)
  accuracy, snr, missing = plots.write_all(results, tmp_path)
  assert accuracy.name == 'accuracy.png' and (tmp_path / 'accuracy.png').stat().st_size > 0
  assert sorted(accuracy.points) == [('', 'late_fusion', 63.0, 'inert'),
                                     ('', 'late_fusion', 83.0, 'healthy'),
                                     ('', 'unimodal_image', 62.0, 'healthy'),
                                     ('', 'unimodal_image', 64.0, 'healthy')]
  assert accuracy.bars == {'': {'late_fusion': pytest.approx(73.0),
                                'unimodal_image': pytest.approx(63.0)}}
  assert accuracy.lines == {'chance': 10.0,
                            'best unimodal (unimodal_image)': pytest.approx(63.0)}
  # Noise and missing-modality curves: healthy runs only, the inert one named as left out.
  assert snr.name == 'robustness_snr.png' and snr.left_out == ['late_fusion__seed1']
  assert snr.curves == {'late_fusion': {0.0: pytest.approx(80.0), -18.0: pytest.approx(66.0)}}
  assert missing.bars['late_fusion'] == {'all': pytest.approx(83.0),
                                         'missing=audio': pytest.approx(64.0),
                                         'missing=image': pytest.approx(52.0)}
  assert all(0 <= p[2] <= 100 for plot in (accuracy, snr, missing) for p in plot.points)


def test_each_methods_bars_are_centred_on_its_name(tmp_path):
  """The accuracy plot puts a method's bars side by side over its own tick: one bar (a method
  trained one way, e.g. with its one remedy) right over it, two either side of it; series keep
  their colours across methods."""
  rows = [{'method': method, 'remedy': remedy, 'seed': 0, 'run': f'{method}-{remedy}',
           'test/accuracy': 0.8, 'healthy': 1}
          for method, remedy in (('late_fusion', 'none'), ('mult', 'none'), ('mult', 'warm-up'),
                                 ('gated_fusion', 'heads'))]
  results = aggregate.Results(rows, [], ['remedy'])
  plot = plots.accuracy_plot(results, tmp_path)
  assert plot.where == {'none': {'late_fusion': 0.0, 'mult': pytest.approx(0.8)},
                        'warm-up': {'mult': pytest.approx(1.2)},
                        'heads': {'gated_fusion': 2.0}}
  assert {p[:2] for p in plot.points} == {('none', 'late_fusion'), ('none', 'mult'),
                                          ('warm-up', 'mult'), ('heads', 'gated_fusion')}


def test_robustness_plots_score_a_unimodal_model_without_the_evaluator_by_its_test_accuracy(
    tmp_path):
  """An image-only model has no audio-noise evaluator: its test accuracy (what robustness[all]
  would be) still makes it the best unimodal line, and the missing-modality plot draws every
  unimodal model, the reference for each missing bar."""
  robust = lambda acc, **more: {'robustness[all]/accuracy': acc, **{
      f'robustness[{c}]/accuracy': v for c, v in more.items()}}
  rows = [{'method': 'unimodal_image', 'run': 'ui', 'healthy': 1, 'chance': 0.1,
           'test/accuracy': 0.65},
          {'method': 'unimodal_audio', 'run': 'ua', 'healthy': 1, 'chance': 0.1,
           'test/accuracy': 0.52, **robust(0.52, **{'noise=audio,snr_db=0': 0.35})},
          {'method': 'late_fusion', 'run': 'lf', 'healthy': 1, 'chance': 0.1,
           'test/accuracy': 0.83, **robust(0.83, **{'noise=audio,snr_db=0': 0.74,
                                                    'missing=audio': 0.49,
                                                    'missing=image': 0.37})}]
  snr, missing = plots.robustness_plots(aggregate.Results(rows, [], []), tmp_path)
  assert snr.lines == {'chance': 10.0, 'best unimodal (unimodal_image)': pytest.approx(65.0)}
  assert missing.lines == {'chance': 10.0, 'best unimodal (unimodal_image)': pytest.approx(65.0),
                           'unimodal_audio': pytest.approx(52.0)}
  assert missing.bars['late_fusion'] == {'all': pytest.approx(83.0),
                                         'missing=audio': pytest.approx(49.0),
                                         'missing=image': pytest.approx(37.0)}


def test_training_curves_show_each_seeds_validation_and_gradient_norms(tmp_path):
  lines = lambda acc: [
      {'step': 50, 'split': 'train', 'loss': 2.0, 'grad_norm/audio': 0.3, 'grad_norm/image': 1.0},
      {'step': 100, 'split': 'validation', 'accuracy': acc[0]},
      {'step': 100, 'split': 'train', 'loss': 1.0, 'grad_norm/audio': 1.5, 'grad_norm/image': 0.8},
      {'step': 200, 'split': 'validation', 'accuracy': acc[1]}]
  curves = {f'lf{s}': aggregate.run_curves(lines(acc))
            for s, acc in enumerate([(0.6, 0.8), (0.3, 0.85)])}
  assert curves['lf1'] == {'grad_norm/audio': [(50, 0.3), (100, 1.5)],
                           'grad_norm/image': [(50, 1.0), (100, 0.8)],
                           'validation': [(100, 0.3), (200, 0.85)]}
  rows = [{'method': 'late_fusion', 'seed': s, 'run': f'lf{s}', 'healthy': 1} for s in (0, 1)]
  plot = plots.curves_plot(aggregate.Results(rows, [], [], curves=curves), tmp_path)
  assert plot.name == 'training_curves.png' and (tmp_path / plot.name).stat().st_size > 0
  assert plot.curves == {'late_fusion': {0: {100: 0.6, 200: 0.8}, 1: {100: 0.3, 200: 0.85}}}


def test_a_chance_level_measured_on_the_data_replaces_one_over_the_classes():
  """On the synergy probe the label takes 2 of 10 classes: chance is 50%, and a model there has
  learnt nothing; the pid evaluator's `chance` says so, where 1/10 would call it healthy."""
  row = {'test/accuracy': 0.52, 'pid[labels]/synergy': 1.0}
  config = {'tasks': {'label': {'num_classes': 10}}, 'model': {'encoders': {'image': {}}}}
  assert aggregate.health_columns(row, config, False)['healthy'] == 1
  flags = aggregate.health_columns({**row, 'pid[labels]/chance': 0.5}, config, False)
  assert (flags['chance'], flags['diverged'], flags['healthy']) == (0.5, 1, 0)
  assert aggregate.health_columns({**row, 'test/accuracy': 0.75, 'pid[labels]/chance': 0.5},
                                  config, False)['healthy'] == 1


def test_a_unimodal_run_whose_modality_carries_nothing_is_not_diverged_at_chance(tmp_path):
  """On the synergy probe the image alone carries 0 bits about the label (the data's PID): an
  image-only model at chance has reached its ceiling. Where the image carries the label, the
  same figure is a failed run; a fusion is judged as before."""
  pid = {'pid[labels]/chance': 0.5, 'pid[labels]/redundancy': 0.0,
         'pid[labels]/unique_image': 0.0, 'pid[labels]/unique_audio': 0.0,
         'pid[labels]/synergy': 1.0}
  image_only = {'tasks': {'label': {'num_classes': 10}}, 'model': {'encoders': {'image': {}}}}
  flags = aggregate.health_columns({'test/accuracy': 0.503, **pid}, image_only, False)
  assert (flags['uninformed'], flags['diverged'], flags['healthy']) == (1, 0, 1)
  assert aggregate.health_columns({'test/accuracy': 0.503, **pid}, image_only,
                                  True)['diverged'] == 1  # a non-finite loss still is
  informed = {**pid, 'pid[labels]/unique_image': 1.0, 'pid[labels]/synergy': 0.0}
  flags = aggregate.health_columns({'test/accuracy': 0.503, **informed}, image_only, False)
  assert (flags['uninformed'], flags['diverged']) == (0, 1)
  fusion = {**image_only, 'model': {'encoders': {'image': {}, 'audio': {}}}}
  flags = aggregate.health_columns({'test/accuracy': 0.503, **pid}, fusion, False)
  assert 'uninformed' not in flags and flags['diverged'] == 1
  rows = [{'run': 'blind', 'healthy': 1, 'uninformed': 1}, {'run': 'fused', 'healthy': 1}]
  note = aggregate.health_note(aggregate.Results(rows, [], []))
  assert ('1 run sees only a modality that carries no information about the label' in note and
          '`blind`' in note and '`fused`' not in note)


def test_a_run_of_no_steps_is_not_judged_by_its_accuracy():
  """Gradient blending's first checkpoint is a run of 0 steps: at chance, with its audio branch
  at chance too, it is what it should be; a non-finite loss still counts."""
  config = {'num_train_steps': 0, 'tasks': {'label': {'num_classes': 10}},
            'model': {'encoders': {'image': {}, 'audio': {}}}}
  at_chance = {'test/accuracy': 0.1, 'robustness[missing=image]/accuracy': 0.1}
  flags = aggregate.health_columns(at_chance, config, False)
  assert (flags['untrained'], flags['diverged'], flags['inert'], flags['healthy']) == (1, 0, '', 1)
  assert aggregate.health_columns(at_chance, config, True)['diverged'] == 1
  trained = aggregate.health_columns(at_chance, {**config, 'num_train_steps': 10}, False)
  assert 'untrained' not in trained and trained['diverged'] == 1
  rows = [{'run': 'init', 'healthy': 1, 'untrained': 1}, {'run': 'trained', 'healthy': 1}]
  note = aggregate.health_note(aggregate.Results(rows, [], []))
  assert '1 run evaluates its initialisation (0 steps) and is not judged: `init`' in note
  assert '`trained`' not in note


def test_an_inert_run_is_named_with_its_encoders_gradient_beside_the_healthy_runs():
  """The note says how far the inert branch's gradient fell early and where it ended, and the
  same figures of the healthy runs: a run that revives later (healthy) and one that never does."""
  def curves(audio):
    return {'grad_norm/image': [(s, 1.0) for s in (300, 600, 900, 1300)],
            'grad_norm/audio': list(zip((300, 600, 900, 1300), audio))}
  rows = [{'run': 'never', 'healthy': 0, 'inert': 'audio', 'diverged': 0},
          {'run': 'dead', 'healthy': 0, 'inert': 'audio', 'diverged': 0},
          {'run': 'revives', 'healthy': 1, 'inert': '', 'diverged': 0},
          {'run': 'unimodal', 'healthy': 1, 'inert': '', 'diverged': 0}]
  found = {'never': curves((0.01, 0.002, 0.001, 0.0005)),
           'dead': curves((0.01, 0.0, 0.0, 0.0)),
           'revives': curves((0.01, 0.003, 0.5, 0.9)),
           'unimodal': {'grad_norm/audio': [(300, 1.0)]}}
  assert aggregate.gradient_shares(found['never'], 'audio') == (0.002, 0.0005)
  assert aggregate.gradient_shares(found['unimodal'], 'audio') is None  # no other encoder
  note = aggregate.health_note(aggregate.Results(rows, [], [], curves=found))
  assert ("`never` (inert in audio; its audio encoder's gradient fell to 0.002 of the other "
          "encoder's within 600 steps and was 0.0005 of it at the end)") in note
  assert ("`dead` (inert in audio; its audio encoder's gradient was exactly 0 within 600 steps "
          '(a dead encoder) and stayed 0 to the end)') in note
  assert ("the 1 healthy run with curves: the audio encoder's gradient fell to 0.003-0.003 of "
          "the other's within 600 steps and was 0.9 of it or more at the end") in note
