"""Learning paradigms on the one trainer: multi-task and task-level fusion, uncertainty weighting,
transfer with frozen parameters, training noise, the robustness evaluator, and eval-only runs."""

import importlib
import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import multitask
from mmjax import corrupt, parallel, writers
from mmjax.training import steps, train
from mmjax.data import input_pipeline
from mmjax.evaluators import robustness as robustness_lib
from mmjax.errors import UserError
from mmjax.models.model import build_model
from tests.conftest import override, run_python, tiny_config

TIMING = writers.TIMING_KEYS


def _lines(workdir, drop=TIMING):
  text = (pathlib.Path(workdir) / 'metrics.jsonl').read_text().splitlines()
  return [{k: v for k, v in json.loads(l).items() if k not in drop} for l in text]


def _checkpoint_params(workdir, step):
  from mmjax import checkpoint  # pylint: disable=import-outside-toplevel
  mngr = checkpoint.manager(pathlib.Path(workdir) / 'checkpoints', None, create=False)
  try:
    found, state = checkpoint.restore_arrays(
        mngr, ('params', 'objective_params', 'opt_state'),
        jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  finally:
    mngr.close()
  assert found == step
  return jax.device_get(state)


def _small_multitask(**overrides):
  """configs/multitask.py on the real AV-MNIST data, a few steps at a small batch, evaluated on
  the first 512 examples of each split."""
  config = multitask.get_config()
  config.batch_size = 32
  config.num_train_steps = 8
  config.log_every_steps = 4
  config.checkpoint_every_steps = 4
  config.evals.validation.every_steps = 8
  for cfg in config.evals.values():
    cfg.split = f'{cfg.split}[:512]'
  return override(config, **overrides)


# ------------------------------------------------------------------------------------------------
# Multi-task learning


@pytest.mark.slow
def test_two_tasks_train_resume_bitwise_and_log_per_task(tmp_path):
  config = _small_multitask(**{'tasks.speaker.weight': 0.5})  # unequal, so weights show
  full, cut = tmp_path / 'full', tmp_path / 'cut'
  results = train.train_and_evaluate(config, str(full))
  shutil.copytree(full, cut)
  shutil.rmtree(cut / 'checkpoints' / '8')
  train.train_and_evaluate(config, str(cut))
  assert _lines(full) == _lines(cut)
  jax.tree.map(np.testing.assert_array_equal, _checkpoint_params(full, 8),
               _checkpoint_params(cut, 8))
  per_task = {'loss', 'label/loss', 'label/accuracy', 'speaker/loss', 'speaker/accuracy'}
  for line in _lines(full):
    assert per_task <= set(line), line
  [test] = results['test']
  assert test['num_examples'] == 512
  # The loss is each task's, weighted as the config says (not one task's twice).
  weights = {t: float(c.weight) for t, c in config.tasks.items()}
  assert test['loss'] == pytest.approx(sum(w * test[f'{t}/loss'] for t, w in weights.items()),
                                       rel=1e-5)
  assert test['speaker/loss'] != pytest.approx(test['label/loss'], rel=1e-3)
  # Each task's accuracy is its own head's argmax against its own labels, on the examples and the
  # model the evaluator scored (the state selected by validation/loss, as the run evaluates it).
  from mmjax import checkpoint, workdir  # pylint: disable=import-outside-toplevel
  from mmjax.models.model import build_model  # pylint: disable=import-outside-toplevel
  mngr = checkpoint.manager(workdir.best_dir(full), None, create=False)
  try:
    _, variables = checkpoint.restore_model(mngr, jax.sharding.SingleDeviceSharding(
        jax.devices()[0]))
  finally:
    mngr.close()
  model = build_model(config)
  variables = {k: v for k, v in variables.items() if v}  # no batch_stats without BatchNorm
  examples = jax.tree.map(lambda *x: np.concatenate(x),
                         *input_pipeline.eval_data(config, config.evals.test.split))
  assert examples['mask'].all() and len(examples['mask']) == 512
  logits = jax.jit(model.apply, static_argnums=3)(variables, examples['inputs'],
                                                  examples['present'], False)  # op by op: 9 s
  correct = {t: int((np.argmax(logits[t], -1) == examples['labels'][t]).sum())
             for t in config.tasks}
  for t, n in correct.items():  # one example's slack: a near-tie another compilation may break
    assert test[f'{t}/accuracy'] == pytest.approx(n / 512, abs=1 / 512), (t, test, correct)


@pytest.mark.slow
def test_two_tasks_both_learn():
  """On one fixed batch both heads fit: the loss of each task falls."""
  config = _small_multitask()
  config.optimizer.name, config.optimizer.learning_rate = 'adamw', 3e-3
  config.optimizer.grad_clip_norm = 1.0
  mesh = parallel.make_mesh()
  batch = next(input_pipeline.train_iterator(config))
  trainer = steps.build_trainer(config, mesh)
  state = trainer.init_state(batch)
  step = trainer.train_step
  batch = parallel.global_batch(batch, mesh)
  first = None
  for _ in range(25):
    state, sums = step(state, batch)
    sums = jax.device_get(sums)
    first = first or sums
  for task in ('label', 'speaker'):
    assert sums[f'{task}/loss'] < 0.5 * first[f'{task}/loss'], task


@pytest.mark.slow
def test_uncertainty_weights_move_and_are_checkpointed(tmp_path):
  config = _small_multitask(**{'objective.task_weighting': 'uncertainty',
                               'optimizer.learning_rate': 0.5})
  train.train_and_evaluate(config, str(tmp_path / 'run'))
  saved = _checkpoint_params(tmp_path / 'run', 8)['objective_params']['log_var']
  assert set(saved) == {'label', 'speaker'}
  assert all(abs(float(v)) > 1e-3 for v in saved.values()), saved
  last_train = [l for l in _lines(tmp_path / 'run') if l['split'] == 'train'][-1]
  assert last_train['label/log_var'] != 0 and last_train['speaker/log_var'] != 0


def test_uncertainty_loss_is_kendalls():
  config = tiny_config(**{'objective.task_weighting': 'uncertainty'})
  from mmjax import objectives  # pylint: disable=import-outside-toplevel
  objective = objectives.build(config, model=build_model(config))
  logits = {'label': jnp.array([[2.0, 0.0], [0.0, 1.0]])}
  batch = {'labels': {'label': jnp.array([0, 0])}, 'mask': jnp.array([True, True])}
  s = 0.7
  loss, sums = objective({'log_var': {'label': jnp.float32(s)}}, logits, batch)
  xent = -jax.nn.log_softmax(logits['label'])[jnp.arange(2), 0].mean()
  np.testing.assert_allclose(loss, np.exp(-s) * xent + s / 2, rtol=1e-6)
  assert float(sums['accuracy']) == 1.0 and float(sums['count']) == 2.0
  assert 'label/accuracy' not in sums  # one task: its accuracy is logged once, as accuracy


# ------------------------------------------------------------------------------------------------
# Task-level fusion


@pytest.mark.slow
def test_task_level_heads_each_learn():
  """Per-modality heads beside the fused one; on the synthetic data every modality carries the
  label, so every head (and their combination) must beat chance (0.1) by far. The audio encoder
  gets BatchNorm: on the unnormalised log-mel its 4 ReLU channels often start dead, and its head
  then stays near chance (2 of 3 seeds at 120 steps without it)."""
  config = tiny_config(**{'model.unimodal_heads': {'hidden': (16,), 'dropout': 0.0},
                          'model.encoders.audio.batch_norm': True,
                          'num_train_steps': 300, 'optimizer.learning_rate': 3e-3})
  config.evals = {'validation': {'type': 'classification', 'split': 'validation',
                                 'every_steps': 0}}
  mesh = parallel.make_mesh()
  it = input_pipeline.train_iterator(config)
  trainer = steps.build_trainer(config, mesh)
  state = trainer.init_state(next(it))
  step = trainer.train_step
  for _ in range(config.num_train_steps):
    state, _ = step(state, parallel.global_batch(next(it), mesh))
  from mmjax import evaluators  # pylint: disable=import-outside-toplevel
  [metrics] = evaluators.build(config.evals, trainer.eval_fns)['validation'].run(state)
  # One task: its own head's accuracy is the run's `accuracy`.
  for name in ('accuracy', 'label/fused/accuracy', 'label/image/accuracy', 'label/audio/accuracy'):
    assert metrics[name] > 0.3, (name, metrics)


@pytest.mark.slow
def test_task_level_prediction_ignores_absent_modality_heads():
  config = tiny_config(**{'model.unimodal_heads': {'hidden': (8,)}})
  from mmjax.models.model import build_model  # pylint: disable=import-outside-toplevel
  model = build_model(config)
  batch = next(input_pipeline.train_iterator(config))
  variables = model.init(jax.random.key(0), batch['inputs'], batch['present'])
  present = {'image': np.ones(16, bool), 'audio': np.zeros(16, bool)}
  out = model.apply(variables, batch['inputs'], present)
  expected = (jax.nn.log_softmax(out['label/fused']) + jax.nn.log_softmax(out['label/image'])) / 2
  np.testing.assert_allclose(out['label'], expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Transfer learning: freezing


def test_frozen_parameters_stay_bit_identical_without_optimizer_state(tmp_path):
  config = tiny_config(freeze='encoders_image', num_train_steps=8)
  train.train_and_evaluate(config, str(tmp_path / 'run'))
  mesh = parallel.make_mesh()
  trainer = steps.build_trainer(config, mesh)
  fresh = trainer.init_state(next(input_pipeline.train_iterator(config)))
  final = _checkpoint_params(tmp_path / 'run', 8)
  fresh = jax.device_get(fresh.params)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32)),
               fresh['encoders_image'], final['params']['encoders_image'])
  assert not np.array_equal(fresh['encoders_audio']['Conv_0']['kernel'],
                            final['params']['encoders_audio']['Conv_0']['kernel'])
  # Adam's two moments exist for trained parameters only.
  trainer = steps.build_trainer(tiny_config(), mesh)
  unfrozen = trainer.init_state(next(input_pipeline.train_iterator(config)))
  size = lambda tree: sum(np.size(x) for x in jax.tree.leaves(tree))
  assert size(final['opt_state']) == size(unfrozen.opt_state) - 2 * size(fresh['encoders_image'])


@pytest.mark.parametrize('pattern, message', [
    ('no_such_module', "freeze='no_such_module' matches no parameter path"),
    ('.', "freeze='.' freezes every parameter"),
    ('(', "freeze='(' is not a regular expression"),
])
def test_bad_freeze_pattern_is_one_line(tmp_path, pattern, message):
  with pytest.raises(UserError) as e:
    train.train_and_evaluate(tiny_config(freeze=pattern), str(tmp_path / 'w'))
  assert message in str(e.value) and '\n' not in str(e.value)
  assert not (tmp_path / 'w').exists()


@pytest.mark.parametrize('name', ['sgd', 'adamw'])
def test_lr_multipliers_scale_each_matching_parameters_update(name):
  """optimizer.lr_multipliers: after two steps (AdamW's moments, SGD's momentum), each audio
  parameter's update is its first matching pattern's factor times what the same optimizer gives
  it without (weight decay included), in the order written, not sorted; every other parameter's
  is the same, and the optimizer state keeps its structure (a run resumes with new factors)."""
  from mmjax import optim  # pylint: disable=import-outside-toplevel
  params = {'encoders_audio': {'Conv_0': {'kernel': jnp.full((2, 2), 0.5),
                                          'bias': jnp.full((2,), 0.25)}},
            'encoders_image': {'Conv_0': {'kernel': jnp.full((2, 2), -0.5)}}}
  trainable = {'model': params, 'objective': {}}
  grads = jax.tree.map(lambda p: jnp.arange(p.size, dtype=jnp.float32).reshape(p.shape) + 1.0,
                       trainable)
  updates, states = {}, {}
  # Written order: bias first; sorted order would put '^encoders_audio/' ('^' < 'e') first.
  for multipliers in ((), (('encoders_audio/Conv_0/bias', 5.0), ('^encoders_audio/.*', 3.0))):
    config = tiny_config(**{'optimizer.name': name, 'optimizer.weight_decay': 0.1,
                            'optimizer.lr_multipliers': multipliers})
    tx = optim.make(config, optim.schedule(config, 10))
    state = tx.init(trainable)
    for _ in range(2):
      step, state = tx.update(grads, state, trainable)
    updates[bool(multipliers)], states[bool(multipliers)] = step['model'], state
  plain, scaled = updates[False], updates[True]
  for leaf, factor in (('kernel', 3.0), ('bias', 5.0)):
    np.testing.assert_allclose(scaled['encoders_audio']['Conv_0'][leaf],
                               factor * plain['encoders_audio']['Conv_0'][leaf], rtol=1e-6)
  np.testing.assert_array_equal(scaled['encoders_image']['Conv_0']['kernel'],
                                plain['encoders_image']['Conv_0']['kernel'])
  assert float(jnp.abs(plain['encoders_image']['Conv_0']['kernel']).min()) > 0
  assert jax.tree.structure(states[True]) == jax.tree.structure(states[False])


@pytest.mark.parametrize('multipliers, message', [
    ((('no_such_module', 2.0),), "optimizer.lr_multipliers: 'no_such_module' gives its factor "
                                 'to no trained parameter'),
    ((('encoders', 2.0), ('encoders_audio', 3.0)), "'encoders_audio' gives its factor to no"),
    ((('(', 2.0),), "optimizer.lr_multipliers: '(' is not a regular expression"),
    ((('encoders_audio', 0.0),), "optimizer.lr_multipliers: ('encoders_audio', 0.0) must be a "
                                 '(regular expression, positive factor) pair'),
])
def test_bad_lr_multiplier_is_one_line(tmp_path, multipliers, message):
  with pytest.raises(UserError) as e:
    train.train_and_evaluate(tiny_config(**{'optimizer.lr_multipliers': multipliers}),
                             str(tmp_path / 'w'))
  assert message in str(e.value) and '\n' not in str(e.value)
  assert not (tmp_path / 'w').exists()


def test_lr_multipliers_on_frozen_parameters_is_one_line(tmp_path):
  """A pattern whose parameters are all frozen trains nothing faster: refused, as a typo is."""
  config = tiny_config(freeze='encoders_audio',
                       **{'optimizer.lr_multipliers': (('encoders_audio', 2.0),)})
  with pytest.raises(UserError, match="'encoders_audio' gives its factor to no trained"):
    train.train_and_evaluate(config, str(tmp_path / 'w'))


@pytest.mark.slow
def test_init_from_pattern_copies_only_matching_parameters(robust_run, caplog):
  config, source, _ = robust_run
  from mmjax.training import transfer  # pylint: disable=import-outside-toplevel
  config = override(config.copy_and_resolve_references(), seed=7, init_from=str(source),
                    init_from_pattern='^encoders_image/')
  mesh = parallel.make_mesh()
  trainer = steps.build_trainer(config, mesh)
  fresh = trainer.init_state(next(input_pipeline.train_iterator(config)))
  with caplog.at_level('INFO'):
    state = transfer.init_from_checkpoint(config, fresh, mesh)
  saved = _checkpoint_params(source, 40)['params']
  got, fresh = jax.device_get(state.params), jax.device_get(fresh.params)
  jax.tree.map(np.testing.assert_array_equal, got['encoders_image'], saved['encoders_image'])
  jax.tree.map(np.testing.assert_array_equal, got['encoders_audio'], fresh['encoders_audio'])
  assert 'init_from: copied 2 of ' in caplog.text and '(encoders_image)' in caplog.text


def test_resuming_with_another_objective_or_freeze_is_one_line(robust_run, tmp_path):
  config, source, _ = robust_run
  for key, value in (('objective.task_weighting', 'uncertainty'), ('freeze', 'encoders_audio')):
    workdir = tmp_path / key
    shutil.copytree(source, workdir)
    changed = override(config.copy_and_resolve_references(), **{key: value})
    with pytest.raises(UserError) as e:
      train.train_and_evaluate(changed, str(workdir))
    assert f'holds a run with a different {key.split(".")[0]} config' in str(e.value)


# ------------------------------------------------------------------------------------------------
# Noise: training augmentation and the robustness evaluator


def test_audio_noise_has_the_requested_snr_and_image_noise_the_std():
  config = tiny_config()
  x = jnp.asarray(np.random.default_rng(0).normal(size=(64, 8000)) * 0.1, jnp.float32)
  keys = corrupt.example_keys(jax.random.key(0), jnp.arange(64))
  scale = input_pipeline.pixel_scale(config)
  noisy = corrupt.add_noise(x, 'audio', jnp.full(64, -6.0), keys, scale)
  snr = 10 * np.log10(np.mean(np.square(x), 1) / np.mean(np.square(noisy - x), 1))
  assert abs(np.mean(snr) + 6.0) < 0.1
  image = jnp.zeros((64, 28, 28, 1))
  noisy = corrupt.add_noise(image, 'image', jnp.full(64, 0.25), keys, scale)
  # dataset std 0.5: 0.25 in pixel units is 0.5 in the normalised input.
  assert abs(float(jnp.std(noisy)) - 0.5) < 0.01
  # Per example: the same index gives the same noise whatever else is in the batch.
  again = corrupt.add_noise(image[:8], 'image', jnp.full(8, 0.25), keys[:8], scale)
  np.testing.assert_array_equal(noisy[:8], again)


def test_training_noise_is_applied_with_probability_p():
  config = tiny_config(modality_noise={'audio': {'p': 0.5, 'snr_db': (0.0, 0.0)}})
  x = jnp.ones((2000, 100))
  noise = jax.jit(lambda inputs, key: corrupt.inject_noise(config, inputs, key, 2.0))
  out = jax.device_get(noise({'audio': x}, jax.random.key(3)))
  changed = (out['audio'] != 1).any(axis=1)
  assert abs(changed.mean() - 0.5) < 0.05
  np.testing.assert_allclose(np.mean(np.square(out['audio'][changed] - 1)), 1.0, rtol=0.05)
  config = tiny_config(modality_noise={'audio': {'p': 0.0, 'snr_db': (0.0, 0.0)}})
  np.testing.assert_array_equal(
      corrupt.inject_noise(config, {'audio': x}, jax.random.key(3), 2.0)['audio'], x)



def test_modality_dropout_variant_is_the_main_job_with_dropout():
  from configs import late_fusion  # pylint: disable=import-outside-toplevel
  main, variant = late_fusion.get_config(), late_fusion.get_config('modality_dropout')
  assert dict(variant.modality_dropout) == {'image': 0.3, 'audio': 0.3}
  assert not main.modality_dropout
  variant.modality_dropout = {}
  assert variant.to_dict() == main.to_dict()

ROBUSTNESS = {'type': 'robustness', 'split': 'validation', 'every_steps': 0,
              'noise': {'audio': {'snr_db': (0.0, -12.0)}, 'image': {'std': (0.5,)}}}


@pytest.fixture(scope='module')
def robust_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('robust') / 'run'
  config = tiny_config(num_train_steps=40, **{'optimizer.learning_rate': 3e-3})
  config.evals.robustness = ROBUSTNESS
  results = train.train_and_evaluate(config, str(workdir))
  return config, workdir, results


def test_robustness_reports_one_line_per_condition(robust_run):
  _, workdir, results = robust_run
  lines = [l for l in _lines(workdir) if l['split'] == 'robustness']
  assert [l['condition'] for l in lines] == [
      'all', 'missing=audio', 'missing=image', 'swapped=audio', 'swapped=image',
      'noise=audio,snr_db=0', 'noise=audio,snr_db=-12', 'noise=image,std=0.5']
  assert all(l['step'] == 40 and l['num_examples'] == 500 for l in lines)
  assert [l['condition'] for l in results['robustness']] == [l['condition'] for l in lines]
  by = {l['condition']: l['accuracy'] for l in lines}
  validation = [l for l in _lines(workdir) if l['split'] == 'validation'][-1]
  assert by['all'] == validation['accuracy']
  assert by['noise=audio,snr_db=-12'] != by['all']  # the noise reaches the model


def test_swap_with_next_moves_one_modality_among_the_real_examples():
  batch = {'inputs': {'audio': np.arange(5) * 10, 'image': np.arange(5)},
           'present': {'audio': np.array([1, 0, 1, 1, 0], bool), 'image': np.ones(5, bool)},
           'mask': np.array([1, 1, 1, 0, 0], bool), 'labels': {'label': np.arange(5)}}
  out = robustness_lib.swap_with_next(batch, 'audio')
  np.testing.assert_array_equal(out['inputs']['audio'], [10, 20, 0, 30, 40])  # padding stays
  np.testing.assert_array_equal(out['present']['audio'], [0, 1, 1, 1, 0])
  assert out['inputs']['image'] is batch['inputs']['image'] and out['labels'] is batch['labels']
  none_real = {**batch, 'mask': np.zeros(5, bool)}
  np.testing.assert_array_equal(robustness_lib.swap_with_next(none_real, 'audio')['inputs'][
      'audio'], batch['inputs']['audio'])


def test_robustness_missing_equals_a_direct_masked_evaluation(robust_run):
  config, workdir, _ = robust_run
  from mmjax import checkpoint, evaluators, objectives  # pylint: disable=import-outside-toplevel
  mesh = parallel.make_mesh()
  trainer = steps.build_trainer(config, mesh)
  state = trainer.init_state(next(input_pipeline.train_iterator(config)))
  mngr = checkpoint.manager(pathlib.Path(workdir) / 'checkpoints', None, create=False)
  try:
    _, state, _ = checkpoint.restore_latest(mngr, checkpoint.abstract(state))
  finally:
    mngr.close()
  eval_step = trainer.eval_fns.metrics
  data = input_pipeline.eval_data(config, 'validation')
  total = None
  for batch in data:
    batch['present']['audio'] = np.zeros_like(batch['present']['audio'])
    sums = jax.device_get(eval_step(state, parallel.global_batch(batch, mesh)))
    total = sums if total is None else jax.tree.map(np.add, total, sums)
  direct = objectives.finalize(total)['accuracy']
  lines = {l['condition']: l for l in _lines(workdir) if l['split'] == 'robustness'}
  assert lines['missing=audio']['accuracy'] == direct
  # swapped=image: each real example scored with the next one's image, by hand.
  total = None
  for batch in data:
    real = int(batch['mask'].sum())
    batch['inputs']['image'][:real] = np.roll(batch['inputs']['image'][:real], -1, axis=0)
    sums = jax.device_get(eval_step(state, parallel.global_batch(batch, mesh)))
    total = sums if total is None else jax.tree.map(np.add, total, sums)
  assert lines['swapped=image']['accuracy'] == objectives.finalize(total)['accuracy']
  assert lines['swapped=image']['accuracy'] != lines['all']['accuracy']
  # A rerun of the evaluator gives the same figures, noise included.
  again = evaluators.build(config.evals, trainer.eval_fns)['robustness'].run(state)
  assert [{k: v for k, v in l.items()} for l in again] == [
      {k: v for k, v in lines[l['condition']].items() if k not in ('step', 'split')}
      for l in again]


# ------------------------------------------------------------------------------------------------
# Eval-only runs


def test_rerun_of_a_finished_workdir_only_evaluates(robust_run, tmp_path):
  config, source, _ = robust_run
  workdir = tmp_path / 'run'
  shutil.copytree(source, workdir)
  before = _lines(workdir)
  config = config.copy_and_resolve_references()
  config.evals.robustness.noise = {'audio': {'snr_db': (-18.0,)}}
  results = train.train_and_evaluate(config, str(workdir))
  after = _lines(workdir)
  # Nothing trained: the old train and validation lines stay, the evaluators' lines are replaced.
  keep = lambda ls: [l for l in ls if l['split'] in ('train',)]
  assert keep(after) == keep(before)
  conditions = [l['condition'] for l in after if l['split'] == 'robustness']
  assert conditions == ['all', 'missing=audio', 'missing=image', 'swapped=audio', 'swapped=image',
                        'noise=audio,snr_db=-18']
  assert sorted(p.name for p in (workdir / 'checkpoints').iterdir()) == sorted(
      p.name for p in (source / 'checkpoints').iterdir())
  assert set(results) == {'robustness', 'test', 'validation'}


def test_init_from_with_zero_steps_evaluates_the_source_model(robust_run, tmp_path):
  config, source, _ = robust_run
  config = config.copy_and_resolve_references()
  config.init_from, config.num_train_steps = str(source), 0
  del config.evals['robustness']
  results = train.train_and_evaluate(config, str(tmp_path / 'eval'))
  lines = _lines(tmp_path / 'eval')
  assert {l['split'] for l in lines} == {'validation', 'test'}
  source_validation = [l for l in _lines(source) if l['split'] == 'validation'][-1]
  assert results['validation'][0]['accuracy'] == source_validation['accuracy']
  # A run that keeps a moving average evaluates it: it starts from the copied weights as well,
  # in buffers of its own (the train step donates the state: one buffer cannot be donated twice).
  config.ema_decay = 0.99
  results = train.train_and_evaluate(config, str(tmp_path / 'eval_ema'))
  assert results['validation'][0]['accuracy'] == source_validation['accuracy']
  config.num_train_steps = 2
  train.train_and_evaluate(config, str(tmp_path / 'train_ema'))
  assert [l['step'] for l in _lines(tmp_path / 'train_ema') if l['split'] == 'test'] == [2]


# ------------------------------------------------------------------------------------------------
# The main job and the multi-task job from the command line, on the real data


@pytest.mark.parametrize('config_file, tasks', [('configs/late_fusion.py', ('label',)),
                                                ('configs/multitask.py', ('label', 'speaker'))])
@pytest.mark.slow
def test_cli_trains_on_avmnist(tmp_path, config_file, tasks):
  """20 steps of the config as shipped; every evaluator scores the first 512 rows of its split."""
  workdir = tmp_path / 'run'
  module = importlib.import_module(config_file[:-len('.py')].replace('/', '.'))
  slices = [f'--config.evals.{name}.split={cfg.split}[:512]'
            for name, cfg in module.get_config().evals.items()]
  proc = run_python(['-m', 'mmjax.main', f'--config={config_file}', f'--workdir={workdir}',
                     '--config.num_train_steps=20', '--config.log_every_steps=10',
                     '--config.checkpoint_every_steps=20', '--config.evals.validation.every_steps=20',
                     *slices], {'JAX_PLATFORMS': 'cpu'}, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = _lines(workdir)
  assert all(l['num_examples'] == 512 for l in lines if l['split'] != 'train'), lines
  splits = {l['split'] for l in lines}
  assert {'train', 'validation', 'test'} <= splits
  names = [f'{t}/accuracy' for t in tasks] if len(tasks) > 1 else ['accuracy']  # one task: once
  for line in lines:
    assert all(n in line for n in names), line
  if config_file.endswith('late_fusion.py'):  # the main job runs its robustness evaluator
    conditions = [l['condition'] for l in lines if l['split'] == 'robustness']
    assert conditions[:5] == ['all', 'missing=audio', 'missing=image', 'swapped=audio',
                              'swapped=image']
    assert 'noise=audio,snr_db=-18' in conditions
