"""Every experiment config in configs/ builds, and a few train steps lower the loss on the
synthetic data (its `:synthetic` variant) — the same code path the CLI runs."""

import importlib

import jax
import pytest

from mmjax import parallel, steps
from mmjax.data import input_pipeline
from tests.conftest import REPO

CONFIGS = sorted(p.stem for p in (REPO / 'configs').glob('*.py')
                 if p.stem not in ('__init__', 'default'))
# Configs that train only from another run's workdir, with the test that trains them from one.
NEEDS_A_RUN = {'distill_audio': 'needs a teacher run (distill.teacher); trained from one in '
                                'tests/test_distill.py'}


def test_the_issue_configs_exist():
  assert {'seed', 'late_fusion', 'early_fusion', 'decision_fusion', 'tensor_fusion',
          'lowrank_fusion', 'gated_fusion', 'mult', 'bottleneck_fusion', 'unimodal_image',
          'unimodal_audio'} <= set(CONFIGS)


@pytest.mark.parametrize('name', CONFIGS)
@pytest.mark.slow
def test_config_trains_on_synthetic_data(name):
  if name in NEEDS_A_RUN:
    pytest.skip(NEEDS_A_RUN[name])
  module = importlib.import_module(f'configs.{name}')
  config = module.get_config('synthetic')
  config.batch_size = 16
  config.num_train_steps = 100
  config.optimizer.name, config.optimizer.learning_rate = 'adamw', 1e-3
  mesh = parallel.make_mesh()
  batch = next(input_pipeline.train_iterator(config))
  model, objective, tx, state = steps.create(config, batch, mesh)
  step = steps.make_train_step(config, model, objective, tx, mesh)
  batch = parallel.global_batch(batch, mesh)
  losses = []
  for _ in range(6):  # one fixed batch: the loss must fall if gradients flow end to end
    state, sums = step(state, batch)
    losses.append(float(jax.device_get(sums['loss'] / sums['count'])))
  assert losses[-1] < losses[0], losses


@pytest.mark.parametrize('name', CONFIGS)
def test_config_evaluators_fit_its_model(name, monkeypatch):
  """Every evaluator of every shipped config (its default and synthetic variants) accepts the
  config, as the trainer builds them before the first step: a unimodal baseline, for one, must
  not inherit a robustness condition on a modality it dropped. The data is not read."""
  from mmjax import evaluators  # pylint: disable=import-outside-toplevel
  if name in NEEDS_A_RUN:
    pytest.skip(NEEDS_A_RUN[name])
  monkeypatch.setattr(input_pipeline, 'eval_data', lambda config, split: None)
  module = importlib.import_module(f'configs.{name}')
  for config in (module.get_config(), module.get_config('synthetic')):
    built = evaluators.build(config, None, parallel.make_mesh())
    assert set(built) == set(config.evals)
