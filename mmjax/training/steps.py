"""The train state and the jitted data-parallel train and eval steps.

The steps are `jax.jit` over a 1-D device mesh: the batch is sharded on the `data` axis, the state
is replicated, and XLA inserts the gradient all-reduce. The same code runs on one CPU, several
(fake) CPU devices, a GPU, or many hosts. What is minimised and measured is the objective's
(`mmjax.objectives`); the step only differentiates, updates and guards against non-finite values.

Randomness comes from (seed, step) alone (mmjax.rng), so a run resumed from any checkpoint ends
bitwise equal to an uninterrupted one and the draws do not depend on the device count.
"""

import dataclasses
import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from mmjax import corrupt
from mmjax import evaluators
from mmjax import objectives
from mmjax import optim
from mmjax import parallel
from mmjax import rng
from mmjax.data import input_pipeline
from mmjax.models.model import build_model, compute_dtype


class TrainState(flax.struct.PyTreeNode):
  """Everything a resumed run needs from the model side; checkpointed whole."""
  step: jax.Array
  params: Any            # the model's
  objective_params: Any  # the objective's own (e.g. learned task weights); {} for most
  batch_stats: Any
  opt_state: Any         # over {'model': params, 'objective': objective_params}
  nonfinite_steps: jax.Array  # steps whose update was skipped for a non-finite loss/gradient
  ema_params: Any = flax.struct.field(default_factory=dict)  # {} unless config.ema_decay > 0

  def trainable(self):
    return {'model': self.params, 'objective': self.objective_params}

  def variables(self):
    return {'params': self.params, **({'batch_stats': self.batch_stats} if self.batch_stats else {})}

  def eval_variables(self):
    """The model as evaluators see it: the parameters' moving average when the run keeps one
    (config.ema_decay), else the parameters. Distillation and init_from make the same choice
    from a checkpoint (checkpoint.restore_model)."""
    return {**self.variables(), 'params': self.ema_params or self.params}


def ema_decay(config, step) -> jax.Array:
  """The moving average's decay at `step` (counted from 0): `config.ema_decay`, lower early on,
  min(decay, (1 + step) / (10 + step)) as tf.train.ExponentialMovingAverage's num_updates, so
  the average soon forgets the initialisation."""
  decay = float(config.get('ema_decay', 0.0))
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def _rngs(step_key):
  """The model's streams of one step: its key split into dropout and augmentation."""
  dropout, augment = jax.random.split(step_key)
  return {'dropout': dropout, 'augment': augment}


def init_state(config, model, objective, tx, example_batch, mesh) -> TrainState:
  """Initialises on the mesh (replicated, or split with `config.fsdp`: parallel.state_sharding);
  every process computes the same values from the seed."""
  def init(batch):
    # The default threefry generator: its draws do not depend on how the computation is
    # partitioned, so 1 and N devices initialise identically ('rbg' compiled faster but gave
    # other parameters on 4 devices than on 1).
    # The model's key is the seed's own (as before objectives existed); the objective's is
    # derived from it.
    model_key = rng.model_key(config)
    objective_key = jax.random.fold_in(model_key, 1)
    variables = model.init(model_key, batch['inputs'], batch['present'])
    params = variables['params']
    objective_params = objective.init_from_example(objective_key, variables, batch)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      objective_params=objective_params,
                      batch_stats=variables.get('batch_stats', {}),
                      opt_state=tx.init({'model': params, 'objective': objective_params}),
                      nonfinite_steps=jnp.zeros((), jnp.int32),
                      ema_params=params if config.get('ema_decay', 0.0) else {})
  example = jax.tree.map(lambda x: x[:1], example_batch)
  # Traced (under jax.eval_shape, say) init is a nested jit, which takes no compiler options
  # and compiles nothing anyway.
  traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(example))
  shardings = parallel.state_sharding(jax.eval_shape(init, example), mesh,
                                      config.get('fsdp', False))
  return jax.jit(init, out_shardings=shardings,
                 compiler_options=None if traced else init_compiler_options())(example)


def init_compiler_options() -> dict:
  """`init` runs once, so on the CPU LLVM optimises it at level 1, not XLA's default: the main
  job's init compiled in 2.8 s instead of 17.7 s, mult's (synthetic) in 13.8 s instead of 22.6 s,
  to the same parameters bit for bit (level 0 changes the last bit of some head biases;
  tests/test_train.py). Other backends keep their defaults (not measured there)."""
  return {'xla_backend_optimization_level': 1} if jax.default_backend() == 'cpu' else {}


@dataclasses.dataclass(frozen=True)
class Trainer:
  """A run's model, objective, optimizer and compiled functions, built once from its config by
  `build_trainer`: the training loop, its evaluators and the benchmark all start from it."""
  config: Any
  mesh: Any
  model: Any
  objective: objectives.Objective
  tx: optax.GradientTransformation
  num_steps: int                   # the run's length, optim.run_length
  train_step: Callable             # (state, global batch) -> (state, metric sums)
  eval_fns: evaluators.Functions   # what evaluators call; eval_fns.metrics is the eval step

  def init_state(self, example_batch) -> TrainState:
    return init_state(self.config, self.model, self.objective, self.tx, example_batch, self.mesh)


def build_trainer(config, mesh) -> Trainer:
  model = build_model(config)
  objective = objectives.build(config, model)
  num_steps = optim.run_length(config)
  schedule = optim.schedule(config, num_steps)
  tx = optim.make(config, schedule)
  return Trainer(config, mesh, model, objective, tx, num_steps,
                 make_train_step(config, objective, tx, schedule, mesh),
                 eval_functions(config, objective, mesh))


def _in_compute_dtype(config, variables: dict) -> dict:
  """The model's variables as it computes with them: parameters cast to `config.dtype` (their
  float32 values stay in the state, so gradients and updates are float32); batch statistics stay
  float32."""
  dtype = compute_dtype(config)
  if dtype == jnp.float32:
    return variables
  cast = lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
  return {**variables, 'params': jax.tree.map(cast, variables['params'])}


def finite_step(loss, grad_norm, new_values) -> jax.Array:
  """Whether a step may be kept: its loss, gradient norm and new values (parameters, batch
  statistics) all finite. The new values too: a finite gradient times a huge learning rate can
  overflow them. Their norm is finite iff every value is (or its square overflows float32, when
  training has diverged anyway).

  Not a chain of per-leaf `isfinite(x).all()`: XLA copies such a cheap chain into each per-leaf
  `where` that consumes it, leaves² operations (mult.py's train step compiled for minutes); it
  does not copy the norm's square root.
  """
  return (jnp.isfinite(loss) & jnp.isfinite(grad_norm) &
          jnp.isfinite(optax.tree.norm(new_values)))


def encoder_grad_norms(grads: dict) -> dict:
  """{modality: norm of its encoder's gradient}: a branch whose gradient stays near zero while
  the other's grows is one the fused model is not learning from."""
  return {key.removeprefix('encoders_'): optax.tree.norm(g) for key, g in grads.items()
          if key.startswith('encoders_')}


def accumulated_gradients(grad_fn, k: int, mesh):
  """`grad_fn` (trainable, state, batch, rngs) → ((loss, (sums, batch_stats)), grads) over the
  batch as k micro-batches in a `lax.scan`: gradients and losses averaged, metric sums added,
  BatchNorm statistics carried from one micro-batch to the next. For a loss that is a mean over
  examples this is the whole batch's gradient (to float rounding) with the activations of 1/k
  of it alive at once; BatchNorm normalises each micro-batch by its own statistics.

  Micro-batch j takes every k-th example (j, j+k, ...), so each device keeps its own share of
  every micro-batch and nothing moves between devices."""
  along_data = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, parallel.DATA_AXIS))

  def split(x):
    x = x.reshape(x.shape[0] // k, k, *x.shape[1:])
    return jax.lax.with_sharding_constraint(jnp.swapaxes(x, 0, 1), along_data)

  def accumulated(trainable, state, batch, rngs):
    micro = jax.tree.map(split, batch)
    first = jax.tree.map(lambda x: x[0], micro)
    shapes = jax.eval_shape(grad_fn, trainable, state, first, rngs)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    (zero_loss, (zero_sums, _)), zero_grads = zeros

    def body(carry, xs):
      loss_total, sums_total, grads_total, batch_stats = carry
      micro_batch, index = xs
      micro_rngs = {name: jax.random.fold_in(key, index) for name, key in rngs.items()}
      (loss, (sums, batch_stats)), grads = grad_fn(
          trainable, state.replace(batch_stats=batch_stats), micro_batch, micro_rngs)
      add = lambda a, b: jax.tree.map(jnp.add, a, b)
      return (loss_total + loss, add(sums_total, sums), add(grads_total, grads),
              batch_stats), None

    init = (zero_loss, zero_sums, zero_grads, state.batch_stats)
    (loss, sums, grads, batch_stats), _ = jax.lax.scan(body, init, (micro, jnp.arange(k)))
    return (loss / k, (sums, batch_stats)), jax.tree.map(lambda g: g / k, grads)

  return accumulated


def make_train_step(config, objective, tx, schedule, mesh):
  """The jitted train step; `schedule` is `tx`'s learning rate, logged per step."""

  def loss_fn(trainable, state, batch, rngs):
    variables = _in_compute_dtype(config, state.replace(params=trainable['model']).variables())
    outputs, batch_stats = objective.apply_model(variables, batch, train=True, rngs=rngs)
    loss, sums = objective(trainable['objective'], outputs, batch)
    return loss, (sums, batch_stats)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  if config.get('grad_accum_steps', 1) > 1:
    grad_fn = accumulated_gradients(grad_fn, config.grad_accum_steps, mesh)

  pixel_scale = input_pipeline.pixel_scale(config)

  def train_step(state, batch):
    key = rng.step_key(config, state.step)  # split by _rngs; folded with 2, 3 and 4 below
    present = corrupt.drop_modalities(config, objective.model.modalities, batch['present'],
                                      jax.random.fold_in(key, 2))
    inputs = corrupt.inject_noise(config, batch['inputs'], jax.random.fold_in(key, 3),
                                  pixel_scale)
    batch = {**batch, 'present': present, 'inputs': inputs}
    trainable = state.trainable()
    (loss, (sums, batch_stats)), grads = grad_fn(trainable, state, batch, _rngs(key))
    grads, sums = objective.transform_gradients(
        grads, sums, state.step, jax.random.fold_in(key, 4))
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, trainable)
    new = optax.apply_updates(trainable, updates)
    ok = finite_step(loss, grad_norm, (new, batch_stats))
    # A non-finite step leaves the parameters, batch statistics and optimizer state as they were
    # (the step counter and moving average still advance), so nothing non-finite is ever saved.
    keep = lambda a, b: jax.tree.map(lambda x, y: jnp.where(ok, x, y), a, b)
    params = keep(new['model'], state.params)
    decay = ema_decay(config, state.step)
    new_state = TrainState(
        step=state.step + 1,
        params=params,
        ema_params=jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params,
                                params) if state.ema_params else {},
        objective_params=keep(new['objective'], state.objective_params),
        batch_stats=keep(batch_stats, state.batch_stats),
        opt_state=keep(opt_state, state.opt_state),
        nonfinite_steps=state.nonfinite_steps + (~ok).astype(jnp.int32))
    sums = {**sums, 'grad_norm': grad_norm * sums['count'],
            **{f'grad_norm/{m}': norm * sums['count']
               for m, norm in encoder_grad_norms(grads['model']).items()},
            'learning_rate': schedule(state.step) * sums['count']}
    # Skipped steps stay out of the logged means; the flag says which step it was.
    sums = jax.tree.map(lambda v: jnp.where(ok, v, 0.0), sums)
    sums['nonfinite'] = (~ok).astype(jnp.float32)
    # The state keeps its layout (each array's from its shape), the sums are replicated.
    layout = parallel.state_sharding(new_state, mesh, config.get('fsdp', False))
    return (jax.lax.with_sharding_constraint(new_state, layout),
            jax.lax.with_sharding_constraint(sums, parallel.replicated(mesh)))

  # The inputs keep the shardings they arrive with: the state's and the batch's (global_batch).
  return jax.jit(train_step, donate_argnums=0)


def _sharded_jit(fn, mesh):
  """`fn(state, global batch)` compiled for the shardings its arguments arrive with (the state's
  layout, the batch split over the data axis), its result replicated."""
  return jax.jit(fn, out_shardings=parallel.replicated(mesh))


def make_eval_step(config, objective, mesh):
  """(state, batch) → the objective's metric sums on the batch, the model in inference mode."""

  def eval_step(state, batch):
    outputs, _ = objective.apply_model(_in_compute_dtype(config, state.eval_variables()), batch,
                                       train=False)
    return objective(state.objective_params, outputs, batch)[1]

  return _sharded_jit(eval_step, mesh)


def eval_functions(config, objective, mesh) -> evaluators.Functions:
  """The functions evaluators call (see evaluators.Functions), each compiled on first use."""
  variables = lambda state: _in_compute_dtype(config, state.eval_variables())
  pixel_scale = input_pipeline.pixel_scale(config)
  with_labels = lambda rows, batch: {**rows, 'mask': batch['mask'], **{
      f'labels/{task}': labels for task, labels in batch['labels'].items()}}

  def features(state, batch):
    encodings = objective.model.apply(variables(state), batch['inputs'], False, method='encode')
    pooled = {m: e.pooled.astype(jnp.float32) for m, e in encodings.items()}
    return {'count': batch['mask'].astype(jnp.float32).sum()}, with_labels(pooled, batch)

  def embed(state, batch):
    outputs, _ = objective.apply_model(variables(state), batch, train=False)
    _, sums = objective(state.objective_params, outputs, batch)
    return sums, with_labels(objective.embed(state.objective_params, outputs), batch)

  def predict(state, batch):
    outputs, _ = objective.apply_model(variables(state), batch, train=False)
    rows = {f'predictions/{head}': jnp.argmax(logits, -1).astype(jnp.int32)
            for head, logits in outputs.items()}
    return {'count': batch['mask'].astype(jnp.float32).sum()}, with_labels(rows, batch)

  embeds = bool(objective.embedding_modalities)
  return evaluators.Functions(
      mesh=mesh, metrics=make_eval_step(config, objective, mesh),
      features=_sharded_jit(features, mesh),
      # Only a classification objective's outputs are each head's logits.
      predict=(_sharded_jit(predict, mesh) if objectives.name_of(config) == 'classification'
               else None),
      data=functools.partial(input_pipeline.eval_data, config),
      modalities=objective.model.modalities,
      num_classes={t: int(n) for t, n in objective.model.tasks.items()},
      add_noise=lambda x, m, levels, keys: corrupt.add_noise(x, m, levels, keys, pixel_scale),
      objective_name=objectives.name_of(config),
      embed=_sharded_jit(embed, mesh) if embeds else None,
      embedding_modalities=objective.embedding_modalities)
