"""Model selection (`select_best`): the final evaluators score the best state by one evaluator's
metric, and a resumed or eval-only run selects the same state as an uninterrupted one."""

import importlib
import json
import pathlib
import shutil

import pytest

from mmjax.training import selection
from mmjax.training import train
from mmjax.errors import UserError
from tests.conftest import REPO, tiny_config


def _config(**overrides):
  """At lr 0.3 the tiny model's validation loss bottoms out before the last step (at step 8)."""
  return tiny_config(**{'num_train_steps': 12, 'evals.validation.every_steps': 2,
                        'checkpoint_every_steps': 4, 'max_checkpoints_to_keep': None,
                        'select_best': 'validation/loss', 'optimizer.learning_rate': 0.3,
                        **overrides})


def _lines(workdir, split):
  text = (pathlib.Path(workdir) / 'metrics.jsonl').read_text().splitlines()
  return [l for l in map(json.loads, text) if l['split'] == split]


@pytest.fixture(scope='module')
def selected_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('select') / 'run'
  train.train_and_evaluate(_config(), str(workdir))
  return workdir


@pytest.mark.slow
def test_final_evaluators_score_the_best_validation_state(selected_run, tmp_path):
  validation = _lines(selected_run, 'validation')
  assert [l['step'] for l in validation] == [2, 4, 6, 8, 10, 12]
  best = min(validation, key=lambda l: l['loss'])
  assert best['step'] < 12, validation  # the last state is not the best here
  [test] = _lines(selected_run, 'test')
  assert test['step'] == 12 and test['selected_step'] == best['step']
  # The saved state of that step, evaluated on its own, scores exactly the same on test.
  source = tmp_path / 'source'
  shutil.copytree(selected_run, source)
  for step in (p for p in (source / 'checkpoints').iterdir() if int(p.name) != best['step']):
    shutil.rmtree(step)
  reference_run = tmp_path / 'reference'
  train.train_and_evaluate(_config(init_from=str(source), num_train_steps=0, select_best=''),
                           str(reference_run))
  [reference] = _lines(reference_run, 'test')
  assert test['loss'] == reference['loss'] and test['accuracy'] == reference['accuracy']
  assert 'selected_step' not in reference


@pytest.mark.slow
def test_resumed_and_eval_only_runs_select_the_same_state(selected_run, tmp_path):
  [test] = _lines(selected_run, 'test')
  cut = tmp_path / 'cut'
  shutil.copytree(selected_run, cut)
  for step in ('8', '12'):  # resume from step 4; the best state (step 8) is already on disk
    shutil.rmtree(cut / 'checkpoints' / step)
  train.train_and_evaluate(_config(), str(cut))
  [resumed] = _lines(cut, 'test')
  train.train_and_evaluate(_config(), str(selected_run))  # finished: evaluates only
  [again] = _lines(selected_run, 'test')
  for line in (resumed, again):
    assert (line['selected_step'], line['loss'], line['accuracy']) == (
        test['selected_step'], test['loss'], test['accuracy'])


@pytest.mark.parametrize('spec', ['test', 'nope/accuracy', '/accuracy'])
def test_bad_select_best_is_one_line_before_training(spec, tmp_path):
  with pytest.raises(UserError, match=r'select_best=.* must be "EVALUATOR/METRIC"'):
    train.train_and_evaluate(_config(select_best=spec), str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


CONFIGS = sorted(p.stem for p in (REPO / 'configs').glob('*.py')
                 if p.stem not in ('__init__', 'default'))


@pytest.mark.parametrize('name', CONFIGS)
def test_every_configs_selection_names_a_metric_its_evaluator_reports(name):
  """`accuracy` exists for single-task classification objectives (and those built on it), `loss`
  for every objective; anything else would fail at the first evaluation, after training began."""
  config = importlib.import_module(f'configs.{name}').get_config()
  spec = selection.parse(config, config.evals)
  if spec is None:
    return
  evaluator, metric = spec
  assert config.evals[evaluator].type == 'classification'
  assert metric == 'loss' or (
      metric == 'accuracy' and len(config.tasks) == 1
      and config.objective.name in ('classification', 'distill', 'ogm_ge')), (name, spec)


@pytest.mark.slow
def test_early_stopping_ends_training_at_its_patience_and_scores_the_best_state(selected_run,
                                                                                tmp_path):
  """With early_stopping_patience=1 the run trains as the uninterrupted one until the validation
  loss has not improved in an evaluation, stops there (its train metrics say so), and scores the
  best state so far; rerunning it only evaluates."""
  full = _lines(selected_run, 'validation')
  best, stop = None, None
  for line in full:  # where the criterion first holds, from the uninterrupted run's figures
    if best is None or line['loss'] < best['loss']:
      best = line
    elif line['step'] - best['step'] >= 1 * 2:  # patience x every_steps
      stop = line['step']
      break
  assert stop is not None and stop < 12, full  # else this config cannot show early stopping
  workdir = tmp_path / 'run'
  train.train_and_evaluate(_config(early_stopping_patience=1), str(workdir))
  validation = _lines(workdir, 'validation')
  assert validation == [l for l in full if l['step'] <= stop]  # each scored once, same figures
  train_lines = _lines(workdir, 'train')
  assert train_lines[-1] == {'step': stop, 'split': 'train', 'stopped_early': True}
  assert max(l['step'] for l in train_lines) == stop
  [test] = _lines(workdir, 'test')
  assert (test['step'], test['selected_step']) == (stop, best['step'])
  train.train_and_evaluate(_config(early_stopping_patience=1), str(workdir))
  assert _lines(workdir, 'train') == train_lines
  [again] = _lines(workdir, 'test')
  assert (again['loss'], again['accuracy']) == (test['loss'], test['accuracy'])


@pytest.mark.slow
def test_early_stopping_target_ends_training_at_the_first_evaluation_reaching_it(selected_run,
                                                                                 tmp_path):
  """With early_stopping_target=v (a loss here: at most v) the run stops at the first validation
  whose loss reaches v, scores that state, and marks the step; a target never reached trains to
  the end."""
  full = _lines(selected_run, 'validation')
  losses = [l['loss'] for l in full]
  # A target the run reaches before its best state: the lowest loss before the best one.
  best_at = losses.index(min(losses))
  assert best_at >= 1, full  # else this config cannot show a stop before the best state
  target = min(losses[:best_at])
  stop = full[losses.index(target)]['step']
  workdir = tmp_path / 'run'
  train.train_and_evaluate(_config(early_stopping_target=target), str(workdir))
  assert _lines(workdir, 'validation') == [l for l in full if l['step'] <= stop]
  assert _lines(workdir, 'train')[-1] == {'step': stop, 'split': 'train', 'stopped_early': True}
  [test] = _lines(workdir, 'test')
  assert (test['step'], test['selected_step']) == (stop, stop)
  never = tmp_path / 'never'
  train.train_and_evaluate(_config(early_stopping_target=min(losses) / 2), str(never))
  assert [l['step'] for l in _lines(never, 'validation')] == [l['step'] for l in full]
  assert not any(l.get('stopped_early') for l in _lines(never, 'train'))


@pytest.mark.parametrize('overrides, message', [
    ({'early_stopping_patience': 2, 'select_best': ''},
     'early_stopping_patience needs a metric to watch: set select_best'),
    ({'early_stopping_patience': 2, 'evals.validation.every_steps': 0},
     "evaluator 'validation' never runs during training; set evals.validation.every_steps > 0"),
    ({'early_stopping_patience': -1}, 'early_stopping_patience=-1 must be a whole number >= 0'),
    ({'early_stopping_target': 0.9, 'select_best': ''},
     'early_stopping_target needs a metric to watch: set select_best'),
    ({'early_stopping_target': 0.9, 'evals.validation.every_steps': 0},
     "early_stopping_target: evaluator 'validation' never runs during training"),
    ({'early_stopping_target': -1.0}, 'early_stopping_target=-1.0 must be a number >= 0'),
    ({'early_stopping_patience': True},
     'early_stopping_patience=True must be a whole number >= 0'),
])
def test_bad_early_stopping_is_one_line_before_training(overrides, message, tmp_path):
  with pytest.raises(UserError, match=message.replace('(', r'\(')):
    train.train_and_evaluate(_config(**overrides), str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()
