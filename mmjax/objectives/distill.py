"""Knowledge distillation from a finished run: `config.objective.name = 'distill'`.

The teacher is a finished run's workdir, `config.distill.teacher`: its model is built from its
`config.json` and its parameters and batch statistics read once, when the objective is built
(before the student's workdir is touched), from the state its own final evaluators scored: the
best state of a run that selected one (`select_best`, kept in `<workdir>/best`), else its latest
checkpoint. It runs in inference mode on every batch; its variables are constants of the compiled
steps, so they are never differentiated, optimised, or written into the student's checkpoints.

The student minimises, per task t (Hinton, Vinyals & Dean, 2015):

  label_weight · L_label + kd_weight · Σ_t T² · KL(softmax(teacher_t / T) ‖ softmax(student_t / T))

where L_label is the `classification` objective's loss (its task weights and `aux_weight`
included) and T = `temperature`; the T² keeps the soft term's gradient scale independent of T.

The teacher may see other modalities than the student (cross-modal distillation): the dataset
config must provide every modality of the teacher, preprocessed exactly as the teacher's run did,
while `model.encoders` names the student's. The teacher must have every task of the student, with
the same number of classes.

config.distill: teacher (workdir), temperature, kd_weight, label_weight.
Metrics: the classification objective's, plus `label_loss`, `<task>/kd_loss` (the KL term before
weighting, times T²) and `teacher/<task>/accuracy`.
"""

import json

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections

from mmjax import checkpoint
from mmjax import optim
from mmjax import parallel
from mmjax import workdir as workdirs
from mmjax import writers
from mmjax.data import input_pipeline
from mmjax.errors import UserError
from mmjax.models.model import build_model
from mmjax.objectives.base import OBJECTIVES
from mmjax.objectives.classification import Classification


class Teacher:
  """A finished run's model and variables, loaded once; `__call__` gives its logits."""

  def __init__(self, workdir: str, student_config, student_tasks: dict):
    where = f'distill.teacher={workdir}'
    if not workdir:
      raise UserError('distill.teacher is empty; set it to the workdir of a finished run')
    config_path = workdirs.config_path(workdir)
    ckpt_dir = workdirs.checkpoint_dir(workdir)
    if not workdirs.resolve(workdir).is_dir():
      raise UserError(f'{where} does not exist; set it to the workdir of a finished run')
    if not config_path.exists():
      raise UserError(f'{where} has no config.json; set it to the workdir of a finished run')
    saved_steps = checkpoint.steps_on_disk(ckpt_dir)
    if not saved_steps:
      raise UserError(f'{where} holds no checkpoint; train the teacher first (or point '
                      'distill.teacher at a finished run)')
    self.config = ml_collections.ConfigDict(json.loads(config_path.read_text(encoding='utf-8')))
    self.model = build_model(self.config)
    _check_compatible(self.config, self.model, student_config, student_tasks, where)
    self.modalities = self.model.modalities
    latest, planned = max(saved_steps), optim.run_length(self.config)
    if latest < planned:
      logging.warning('%s: its latest checkpoint is step %d of %d; distilling from that', where,
                      latest, planned)
    # The state the teacher's reported test figures came from: its best one if it selected one
    # (only a run with select_best keeps <workdir>/best).
    best_dir = workdirs.best_dir(workdir)
    selected = bool(checkpoint.steps_on_disk(best_dir))
    mngr = checkpoint.manager(best_dir if selected else ckpt_dir, None, create=False)
    try:
      self.step, saved = checkpoint.restore_model(
          mngr, parallel.replicated(parallel.make_mesh()))
    finally:
      mngr.close()
    self.variables = {'params': saved['params']}
    if saved['batch_stats']:
      self.variables['batch_stats'] = saved['batch_stats']
    writers.log('distill: teacher %s step %d, %s (%s)', workdir, self.step,
                'its best (model selection)' if selected else 'its latest',
                ', '.join(self.modalities))

  def __call__(self, batch) -> dict:
    """{head: logits} of the teacher on the batch, in inference mode, without gradient."""
    inputs = {m: batch['inputs'][m] for m in self.modalities}
    present = {m: batch['present'][m] for m in self.modalities}
    out = self.model.apply(self.variables, inputs, present, train=False)
    return jax.tree.map(jax.lax.stop_gradient, out)


def _check_compatible(teacher, teacher_model, student, student_tasks: dict,
                      where: str) -> None:
  """The teacher's model (its tasks) and config (its preprocessing) against the student's."""
  for task, classes in student_tasks.items():
    if task not in teacher_model.tasks:
      raise UserError(f'{where} has tasks {sorted(teacher_model.tasks)}, not the student\'s '
                      f'{task!r}; distil from a run trained on the same tasks')
    if teacher_model.tasks[task] != classes:
      raise UserError(f'{where}: task {task!r} has {teacher_model.tasks[task]} classes there, '
                      f'{classes} here; distil from a run of the same task')
  for m in teacher_model.modalities:
    mine = input_pipeline.preprocessing(student, m)
    theirs = input_pipeline.preprocessing(teacher, m)
    if mine is None:
      raise UserError(f'{where} reads modality {m!r}, which dataset.modalities lacks; add it '
                      f'there as the teacher had it: {theirs}')
    if mine != theirs:
      raise UserError(f'{where} preprocessed {m!r} as {theirs}, this run as {mine}; set '
                      f'dataset.modalities.{m} to the teacher\'s')


def kd_term(student_logits, teacher_logits, temperature: float):
  """T² · KL(softmax(teacher / T) ‖ softmax(student / T)) per example [B]."""
  t = temperature
  log_p_teacher = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / t)
  log_p_student = jax.nn.log_softmax(student_logits.astype(jnp.float32) / t)
  kl = jnp.sum(jnp.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1)
  return t * t * kl


@OBJECTIVES.register('distill')
class Distill(Classification):
  """See the module docstring."""
  feeds_another_model = True  # the teacher

  def __init__(self, config, model):
    super().__init__(config, model)
    cfg = config.get('distill') or {}
    self.temperature = float(cfg.get('temperature', 4.0))
    self.kd_weight = float(cfg.get('kd_weight', 1.0))
    self.label_weight = float(cfg.get('label_weight', 1.0))
    if not self.temperature > 0 or self.kd_weight < 0 or self.label_weight < 0:
      raise UserError(f'distill: temperature={self.temperature} must be > 0 and kd_weight='
                      f'{self.kd_weight}, label_weight={self.label_weight} >= 0')
    self.teacher = Teacher(cfg.get('teacher', ''), config, model.tasks)

  def apply_model(self, variables, batch, *, train: bool, rngs=None):
    outputs, batch_stats = super().apply_model(variables, batch, train=train, rngs=rngs)
    return {'student': outputs, 'teacher': self.teacher(batch)}, batch_stats

  def __call__(self, params, outputs, batch):
    label_loss, sums = super().__call__(params, outputs['student'], batch)
    mask = batch['mask'].astype(jnp.float32)
    count = sums['count']
    kd = 0.0
    for task in self.tasks:
      teacher = outputs['teacher'][task]
      term = kd_term(outputs['student'][task], teacher, self.temperature)
      sums[f'{task}/kd_loss'] = (term * mask).sum()
      correct = jnp.argmax(teacher, -1) == batch['labels'][task]
      sums[f'teacher/{task}/accuracy'] = (correct * mask).sum()
      kd += sums[f'{task}/kd_loss'] / jnp.maximum(count, 1.0)
    loss = self.label_weight * label_loss + self.kd_weight * kd
    sums['label_loss'] = label_loss * count
    sums['loss'] = loss * count
    return loss, sums
