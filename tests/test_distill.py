"""Knowledge distillation: a frozen teacher loaded once from a finished run, kept out of the
student's trainable state and checkpoints, its soft predictions in the loss; bad teachers fail
before training."""

import json
import shutil

import jax
import numpy as np
import pytest

from configs import distill_audio
from mmjax import checkpoint, parallel
from mmjax.training import steps, train
from mmjax.objectives import classification, distill
from mmjax import workdir as workdirs
from mmjax.data import input_pipeline
from mmjax.errors import UserError
from tests.conftest import override, tiny_config, tree_digest

SMALL_CNN = {'name': 'cnn', 'features': (4,), 'kernel_sizes': (3,), 'pool': (True,)}


@pytest.fixture(scope='module')
def teacher(tmp_path_factory):
  """A finished image + audio late-fusion run on the synthetic data (tests/scripts/tiny_config),
  scored on the validation split at its end."""
  workdir = tmp_path_factory.mktemp('distill') / 'teacher'
  evals = {'validation': {'type': 'classification', 'split': 'validation'}}
  train.train_and_evaluate(tiny_config(num_train_steps=8, evals=evals), str(workdir))
  return workdir


def _student(teacher_dir, **overrides):
  """configs/distill_audio.py:synthetic with a small audio CNN, distilling from `teacher_dir`."""
  config = distill_audio.get_config('synthetic')
  config.model.encoders = {'audio': dict(SMALL_CNN)}
  config.model.frontends.audio.n_mels = 8
  config.distill.teacher = str(teacher_dir)
  config.evals = {'validation': {'type': 'classification', 'split': 'validation'}}
  return override(config, **{'batch_size': 16, 'num_train_steps': 4, 'log_every_steps': 2,
                             'checkpoint_every_steps': 2, 'optimizer.name': 'adamw',
                             'optimizer.learning_rate': 1e-2, **overrides})


@pytest.mark.slow
def test_teacher_is_frozen_and_absent_from_the_students_checkpoint(teacher, tmp_path):
  before = tree_digest(teacher)
  config = _student(teacher)
  mesh = parallel.make_mesh()
  batch = next(input_pipeline.train_iterator(config))
  trainer = steps.build_trainer(config, mesh)
  objective = trainer.objective
  state = trainer.init_state(batch)
  frozen = jax.device_get(objective.teacher.variables)
  step = trainer.train_step
  first = jax.device_get(state.params)
  for _ in range(3):
    state, sums = step(state, parallel.global_batch(batch, mesh))
  # The teacher's accuracy on the batch is its own model's, in inference mode, on these inputs.
  direct = jax.jit(lambda v, b: objective.teacher.model.apply(
      v, b['inputs'], b['present'], train=False))(objective.teacher.variables, batch)['label']
  correct = (np.argmax(np.asarray(direct), -1) == batch['labels']['label']).sum()
  assert float(sums['teacher/label/accuracy']) == correct and 'label/kd_loss' in sums
  # The student moved, the teacher did not.
  assert not np.allclose(jax.device_get(state.params['encoders_audio']['Conv_0']['kernel']),
                         first['encoders_audio']['Conv_0']['kernel'])
  jax.tree.map(np.testing.assert_array_equal, frozen, jax.device_get(objective.teacher.variables))
  # Nothing of the teacher is trainable: the state holds the audio-only student alone.
  assert set(state.params) == {'encoders_audio', 'heads'} and state.objective_params == {}

  workdir = tmp_path / 'student'
  results = train.train_and_evaluate(config, str(workdir))
  # On the whole split the teacher scores what its own run logged there: that run's model.
  lines = [json.loads(l) for l in (teacher / 'metrics.jsonl').read_text().splitlines()]
  [logged] = [l['accuracy'] for l in lines if l['split'] == 'validation']
  assert results['validation'][0]['teacher/label/accuracy'] == logged, logged
  mngr = checkpoint.manager(workdirs.checkpoint_dir(workdir), None, create=False)
  try:
    assert mngr.all_steps() == [2, 4]
    for s in mngr.all_steps():
      saved = checkpoint.saved_state_tree(mngr, s)
      assert set(saved['params']) == {'encoders_audio', 'heads'}
      assert not saved.get('objective_params')
      assert len(jax.tree.leaves(saved)) == len(jax.tree.leaves(state))
  finally:
    mngr.close()
  assert tree_digest(teacher) == before  # the teacher's workdir was only read


def test_loss_is_the_label_loss_plus_the_weighted_teacher_term(teacher):
  config = _student(teacher, **{'distill.kd_weight': 0.7, 'distill.label_weight': 0.4,
                                'distill.temperature': 2.5})
  mesh = parallel.make_mesh()
  batch = next(input_pipeline.train_iterator(config))
  trainer = steps.build_trainer(config, mesh)
  objective = trainer.objective
  state = trainer.init_state(batch)
  # jitted: op by op, the two models' convolutions and front ends take seconds each
  outputs, _ = jax.jit(lambda v, b: objective.apply_model(v, b, train=False))(state.variables(),
                                                                              batch)
  loss, sums = objective(state.objective_params, outputs, batch)
  label_loss, _ = classification.Classification.__call__(objective, {}, outputs['student'], batch)
  s = np.asarray(outputs['student']['label'], np.float64) / 2.5
  t = np.asarray(outputs['teacher']['label'], np.float64) / 2.5
  log_p = lambda x: x - x.max(1, keepdims=True) - np.log(
      np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True))
  kl = (np.exp(log_p(t)) * (log_p(t) - log_p(s))).sum(1).mean()
  assert kl > 1e-4
  np.testing.assert_allclose(loss, 0.4 * label_loss + 0.7 * 2.5**2 * kl, rtol=1e-4)
  np.testing.assert_allclose(sums['label/kd_loss'] / sums['count'], 2.5**2 * kl, rtol=1e-4)
  # The teacher's logits are the finished run's model on the same inputs.
  direct = jax.jit(lambda v, b: objective.teacher.model.apply(
      v, b['inputs'], b['present'], train=False))(objective.teacher.variables, batch)
  np.testing.assert_allclose(outputs['teacher']['label'], direct['label'], rtol=1e-5, atol=1e-6)


def test_kd_term_is_t_squared_kl_from_the_teacher_to_the_student():
  """T² · KL(p_teacher ‖ p_student) at temperature T, per example: zero only where the student
  matches the teacher; not the reverse KL, not without the T² or the softening."""
  student, teacher = np.random.default_rng(0).normal(size=(2, 3, 5)).astype(np.float32) * 3
  t = 3.0
  log_p = lambda x: x - x.max(1, keepdims=True) - np.log(
      np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True))
  log_t, log_s = log_p(teacher.astype(np.float64) / t), log_p(student.astype(np.float64) / t)
  expected = t * t * (np.exp(log_t) * (log_t - log_s)).sum(1)
  reverse = t * t * (np.exp(log_s) * (log_s - log_t)).sum(1)
  assert (expected > 1e-2).all() and not np.allclose(expected, reverse, rtol=1e-2)
  np.testing.assert_allclose(distill.kd_term(student, teacher, t), expected, rtol=1e-5)
  np.testing.assert_allclose(distill.kd_term(teacher, teacher, t), 0.0, atol=1e-6)


def test_a_teacher_that_selected_a_best_state_is_distilled_from_that_state(teacher, tmp_path):
  """A teacher run with `select_best` reported its test figures from `<workdir>/best`, so that
  is the state distilled from; without selection, its latest checkpoint."""
  selected = tmp_path / 'selected'
  shutil.copytree(teacher, selected)
  config = json.loads((selected / 'config.json').read_text())
  config['select_best'] = 'validation/accuracy'
  (selected / 'config.json').write_text(json.dumps(config))
  # The best state was step 4 of 8 (model selection keeps one checkpoint there).
  shutil.copytree(workdirs.checkpoint_dir(selected) / '4', workdirs.best_dir(selected) / '4')
  student = _student(selected)
  tasks = {t: s.num_classes for t, s in student.tasks.items()}
  best, last = (distill.Teacher(str(d), student, tasks) for d in (selected, teacher))
  assert (best.step, last.step) == (4, 8)
  differs = lambda a, b: not np.allclose(np.asarray(a), np.asarray(b))
  assert any(jax.tree.leaves(jax.tree.map(differs, best.variables, last.variables)))
  mngr = checkpoint.manager(workdirs.checkpoint_dir(teacher), None, create=False)
  try:
    step, saved = checkpoint.restore_arrays(mngr, ('params',), parallel.replicated(
        parallel.make_mesh()))
    assert step == 8
  finally:
    mngr.close()
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(last.variables['params']),
               jax.device_get(saved['params']))


def _no_checkpoint(teacher, tmp_path):
  path = tmp_path / 'no_ckpt'
  path.mkdir()
  shutil.copy(teacher / 'config.json', path / 'config.json')
  return path


@pytest.mark.parametrize('case, message', [
    ('missing', 'does not exist; set it to the workdir of a finished run'),
    ('no_checkpoint', 'holds no checkpoint; train the teacher first'),
    ('empty', 'distill.teacher is empty'),
    ('other_task', "not the student's 'digit'"),
    ('other_classes', "task 'label' has 10 classes there, 5 here"),
    ('no_image', "reads modality 'image', which dataset.modalities lacks"),
    ('other_preprocessing', "preprocessed 'image' as"),
])
def test_bad_teacher_is_one_line_before_training(teacher, tmp_path, case, message):
  config = _student(teacher)
  if case == 'missing':
    config.distill.teacher = str(tmp_path / 'nowhere')
  elif case == 'no_checkpoint':
    config.distill.teacher = str(_no_checkpoint(teacher, tmp_path))
  elif case == 'empty':
    config.distill.teacher = ''
  elif case == 'other_task':
    config.tasks = {'digit': {'num_classes': 10, 'weight': 1.0}}
    config.dataset.labels = {'digit': 'label'}
  elif case == 'other_classes':
    config.tasks.label.num_classes = 5
  elif case == 'no_image':
    del config.dataset.modalities['image']
  elif case == 'other_preprocessing':
    config.dataset.modalities.image.std = 0.25
  workdir = tmp_path / 'student'
  with pytest.raises(UserError) as e:
    train.train_and_evaluate(config, str(workdir))
  assert message in str(e.value) and '\n' not in str(e.value)
  assert not workdir.exists()


def test_config_defaults():
  config = distill_audio.get_config()
  assert config.objective.name == 'distill' and config.distill.teacher == 'runs/late_fusion'
  assert set(config.model.encoders) == {'audio'}
  assert set(config.dataset.modalities) == {'image', 'audio'}
  # The student is unimodal_audio.py's model and recipe.
  from configs import unimodal_audio  # pylint: disable=import-outside-toplevel
  ref = unimodal_audio.get_config()
  for key in ('model', 'optimizer', 'batch_size', 'num_train_steps', 'tasks', 'evals'):
    assert json.dumps(config[key].to_dict() if hasattr(config[key], 'to_dict') else config[key],
                      sort_keys=True) == json.dumps(
        ref[key].to_dict() if hasattr(ref[key], 'to_dict') else ref[key], sort_keys=True), key


def test_shipped_weights_give_the_cross_entropy_gradient_toward_label_and_teacher_mixed():
  """configs/distill_audio.py: 0.5·CE + 0.5·T²·KL at T = 1 has the logit gradient
  p − (y + p_teacher)/2, which its docstring gives as the reason its SGD recipe carries over."""
  cfg = distill_audio.get_config().distill
  assert (cfg.temperature, cfg.label_weight, cfg.kd_weight) == (1.0, 0.5, 0.5)
  student, teacher = jax.random.normal(jax.random.key(0), (2, 4, 10)) * 3
  labels = jax.numpy.array([0, 3, 7, 9])

  def loss(z):
    label = -jax.numpy.take_along_axis(jax.nn.log_softmax(z), labels[:, None], 1)[:, 0]
    return (cfg.label_weight * label +
            cfg.kd_weight * distill.kd_term(z, teacher, cfg.temperature)).sum()
  expected = jax.nn.softmax(student) - (jax.nn.one_hot(labels, 10) + jax.nn.softmax(teacher)) / 2
  np.testing.assert_allclose(jax.grad(loss)(student), expected, atol=1e-6)
