"""Every experiment config in configs/ builds, and a few train steps lower the loss on the
synthetic data (its `:synthetic` variant) — the same code path the CLI runs."""

import ast
import contextlib
import importlib
import traceback
import warnings

import jax
import jax.numpy as jnp
import optax
import pytest

from mmjax import parallel
from mmjax.training import steps
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


def test_each_config_states_its_recipe_in_at_most_15_lines():
  """A config says what it trains and how in a few lines; measured rationale belongs in the
  generated results (README, docs), not in a docstring of single runs."""
  long = {}
  for path in sorted((REPO / 'configs').glob('*.py')):
    doc = ast.get_docstring(ast.parse(path.read_text(encoding='utf-8'))) or ''
    if len(doc.splitlines()) > 15:
      long[path.name] = len(doc.splitlines())
  assert not long, f'docstrings over 15 lines: {long}'


@pytest.mark.parametrize('name', ['early_fusion', 'mult', 'bottleneck_fusion'])
def test_fusions_that_average_layernormed_tokens_keep_their_head_undropped(name):
  """Each ends in a mean of LayerNorm'd tokens, whose spread across examples is small beside
  its constant part: the seed head's dropout (0.5 on the synthetic variant) then drowns it, and
  such a run stays at chance (each config's comment gives its measurement)."""
  module = importlib.import_module(f'configs.{name}')
  for variant in ('avmnist', 'synthetic', 'modality_dropout'):
    assert module.get_config(variant).model.head.dropout == 0.0, variant
  # The variants inherit the dropout they would otherwise keep.
  assert importlib.import_module('configs.late_fusion').get_config(
      'synthetic').model.head.dropout == 0.5


def test_each_fusion_trains_on_avmnist_at_the_rate_its_search_chose():
  """Running a fusion's config as shipped reproduces the recipe of its row in README's fusion
  comparison: the optimizer and learning rate that the committed search chose on validation."""
  from experiments import catalog  # pylint: disable=import-outside-toplevel
  chosen = catalog.chosen_settings()
  assert set(chosen) == set(catalog.LR_SEARCH)
  for name, overrides in chosen.items():
    module = importlib.import_module(f'configs.{name}')
    for variant in ('avmnist', 'modality_dropout'):
      optimizer = module.get_config(variant).optimizer
      assert {'optimizer.name': optimizer.name,
              'optimizer.learning_rate': optimizer.learning_rate} == overrides, (name, variant)


def test_each_fusions_docstring_names_the_remedy_its_comparison_row_trains_with():
  """A config whose README fusion row adds a remedy (experiments.catalog.chosen_remedies, read
  from the committed remedy results) says so in its docstring: the remedy's experiment and the
  config fields it sets; a config whose row adds none names no remedy experiment."""
  from experiments import catalog  # pylint: disable=import-outside-toplevel
  remedied = catalog.chosen_remedies()
  assert remedied, 'no committed remedy has made every seed of a fusion healthy'
  for name in catalog.AVMNIST_METHODS:
    doc = importlib.import_module(f'configs.{name}').__doc__
    named = {r for r in catalog.REMEDIES if f'--experiment={r}`' in doc}
    assert named == ({remedied[name]} if name in remedied else set()), name
    if name in remedied:
      for key, value in catalog.REMEDIES[remedied[name]].extra.items():
        assert (f'`--config.{key}={value}`' if not isinstance(value, dict)
                else f'`{key}`') in doc, (name, key)


DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


@contextlib.contextmanager
def deprecations_through_mmjax():
  """Yields a list that collects every deprecation warned while mmjax's code is on the stack,
  whichever module the library attributes it to (optax attributes its own to optax, where
  pytest.ini's `error::DeprecationWarning:mmjax` does not see it)."""
  found, warn = [], warnings.warn

  def recording(message, category=None, stacklevel=1, source=None, **kwargs):
    if isinstance(category, type) and issubclass(category, DEPRECATIONS):
      callers = [f for f in traceback.extract_stack()[:-1] if '/mmjax/' in f.filename]
      if callers:
        found.append(f'{category.__name__}: {message} (from {callers[-1].filename}:'
                     f'{callers[-1].lineno})')
    return warn(message, category, stacklevel + 1, source, **kwargs)

  with warnings.catch_warnings():
    warnings.simplefilter('ignore', DeprecationWarning)
    warnings.warn = recording
    try:
      yield found
    finally:
      warnings.warn = warn


def test_the_deprecation_check_sees_a_library_call_from_mmjax():
  """optax.global_norm, called from code in an mmjax file, is found though optax attributes the
  warning to itself; called from elsewhere, it is not mmjax's."""
  call = compile('optax.global_norm({"a": jnp.ones(2)})', str(REPO / 'mmjax' / 'steps.py'), 'eval')
  with deprecations_through_mmjax() as found:
    eval(call, {'optax': optax, 'jnp': jnp})  # pylint: disable=eval-used
  assert len(found) == 1 and 'optax.tree.norm' in found[0], found
  with deprecations_through_mmjax() as found:
    optax.global_norm({'a': jnp.ones(2)})
  assert found == []


@pytest.mark.parametrize('name', CONFIGS)
@pytest.mark.slow
def test_config_trains_on_synthetic_data(name):
  """A few steps lower the loss, and nothing on the way calls a deprecated API."""
  if name in NEEDS_A_RUN:
    pytest.skip(NEEDS_A_RUN[name])
  module = importlib.import_module(f'configs.{name}')
  config = module.get_config('synthetic')
  config.batch_size = 16
  config.num_train_steps = 100
  config.optimizer.name, config.optimizer.learning_rate = 'adamw', 1e-3
  mesh = parallel.make_mesh()
  with deprecations_through_mmjax() as deprecated:
    batch = next(input_pipeline.train_iterator(config))
    trainer = steps.build_trainer(config, mesh)
    state = trainer.init_state(batch)
    step = trainer.train_step
    batch = parallel.global_batch(batch, mesh)
    losses = []
    for _ in range(6):  # one fixed batch: the loss must fall if gradients flow end to end
      state, sums = step(state, batch)
      losses.append(float(jax.device_get(sums['loss'] / sums['count'])))
  assert losses[-1] < losses[0], losses
  assert deprecated == []


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
    built = evaluators.build(config.evals,
                             steps.build_trainer(config, parallel.make_mesh()).eval_fns)
    assert set(built) == set(config.evals)
