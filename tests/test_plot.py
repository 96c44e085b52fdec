"""mmjax.plot: training curves of one run or several, read back from what was drawn."""

import json

import pytest

from mmjax import plot
from mmjax.errors import UserError
from tests.conftest import run_python


def _workdir(path, lines):
  path.mkdir()
  (path / 'metrics.jsonl').write_text(''.join(json.dumps(l) + '\n' for l in lines))
  return path


LINES = [
    {'step': 10, 'split': 'train', 'loss': 2.0, 'accuracy': 0.2, 'learning_rate': 0.1,
     'examples_per_sec': 500.0},
    {'step': 20, 'split': 'train', 'loss': float('nan'), 'accuracy': 0.5, 'learning_rate': 0.05,
     'examples_per_sec': 520.0},
    {'step': 20, 'split': 'validation', 'loss': 1.0, 'accuracy': 0.6, 'num_examples': 500},
    {'step': 20, 'split': 'robustness', 'condition': 'all', 'accuracy': 0.61},
    {'step': 20, 'split': 'robustness', 'condition': 'missing=audio', 'accuracy': 0.3},
]


def test_one_run_draws_each_split_and_leaves_out_conditions_and_nan(tmp_path):
  workdir = _workdir(tmp_path / 'run', LINES)
  curves = plot.write([workdir])
  assert curves.path == workdir / 'curves.png' and curves.path.stat().length > 10_000
  assert curves.series['accuracy'] == {('run', 'train'): [(10, 20.0), (20, 50.0)],
                                       ('run', 'validation'): [(20, 60.0)],
                                       ('run', 'robustness'): [(20, 61.0)]}
  assert curves.series['loss'][('run', 'train')] == [(10, 2.0)]  # the NaN is left out
  assert curves.series['learning_rate'] == {('run', 'train'): [(10, 0.1), (20, 0.05)]}
  assert set(curves.series['examples_per_sec']) == {('run', 'train')}


def test_several_runs_in_one_figure(tmp_path):
  a = _workdir(tmp_path / 'a', LINES)
  b = _workdir(tmp_path / 'b', [dict(l, accuracy=0.9) for l in LINES[:2]])
  curves = plot.write([a, b], tmp_path / 'both.png')
  assert curves.path.exists()
  assert curves.series['accuracy'][('b', 'train')] == [(10, 90.0), (20, 90.0)]
  assert ('a', 'validation') in curves.series['accuracy']


def test_a_folder_without_metrics_is_one_line(tmp_path):
  with pytest.raises(UserError, match='no metrics.jsonl there; give the workdir of a run'):
    plot.write([tmp_path])
  proc = run_python(['-m', 'mmjax.plot', f'--workdir={tmp_path}'], timeout=120)
  assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
      f'mmjax.plot: error: --workdir={tmp_path}: no metrics.jsonl there; give the workdir of a '
      'run'), proc.stderr[-2000:]
