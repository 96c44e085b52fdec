"""Objectives: what a run minimises, chosen by `config.objective.name`.

An objective turns the model's outputs on a batch into (loss, metric sums). It may own trainable
parameters (`init`), e.g. learned task weights: they live in `TrainState.objective_params`, are
optimised with the model's and checkpointed with them, so a resumed run stays bitwise exact.

Metric sums are sums over the batch's real examples plus `count`, so they add up exactly across
steps, devices and padded evaluation batches; `finalize` divides on the host. Every objective
reports `loss` (the total it minimises).

Adding one: a module in this package that subclasses `Objective` and registers it, imported in
the package's `__init__`; name it in the config. `Objective` declares everything the trainer calls.
"""

import jax

from mmjax.registry import Registry

OBJECTIVES = Registry('objective')


def apply(model, variables, *args, train: bool, rngs=None, method=None):
  """(outputs, updated batch_stats) of `model.apply(variables, *args, train, method=method)`:
  in training with `rngs` and the batch statistics updated, else (outputs, None)."""
  if not train:
    return model.apply(variables, *args, False, method=method), None
  outputs, updates = model.apply(variables, *args, True, method=method, rngs=rngs,
                                 mutable=['batch_stats'])
  return outputs, updates.get('batch_stats', {})


class Objective:
  """What the trainer calls: `init_from_example` (the objective's own parameters), `apply_model`
  (the forward pass, by default the model's logits), `__call__` (loss and metric sums) and
  `transform_gradients` (by default none); the retrieval evaluator also calls `embed`."""

  # The modalities `embed` maps into one space (contrastive learning); () for none.
  embedding_modalities: tuple[str, ...] = ()
  # Whether the batch's inputs also go through a model of the objective's own (distillation's
  # teacher), whose front ends need what the dataset stores: no features computed before.
  feeds_another_model: bool = False

  def __init__(self, config, model):
    self.config = config
    self.model = model

  def init(self, rng) -> dict:
    """The objective's own trainable parameters ({} for none)."""
    del rng
    return {}

  def init_from_example(self, rng, variables, batch) -> dict:
    """What the trainer initialises the objective's parameters with: for an objective that sizes
    them from the model's outputs (e.g. projection heads) on a batch; by default `init(rng)`."""
    del variables, batch
    return self.init(rng)

  def transform_gradients(self, grads, sums, step, key):
    """(grads, sums) between the backward pass and the optimizer, e.g. OGM-GE's per-encoder
    modulation (mmjax.objectives.ogm_ge); by default unchanged."""
    del step, key
    return grads, sums

  def apply_model(self, variables, batch, *, train: bool, rngs=None):
    """(outputs, updated batch_stats); batch_stats are only updated in training."""
    return apply(self.model, variables, batch['inputs'], batch['present'], train=train,
                 rngs=rngs)

  def __call__(self, params, outputs, batch):
    """(scalar loss, {metric: sum}) with `count`, the number of real examples."""
    raise NotImplementedError

  def embed(self, params, outputs) -> dict:
    """{modality: unit-norm embedding [B, d]} from `apply_model`'s outputs in inference, for each
    of `embedding_modalities`."""
    raise NotImplementedError(f'{type(self).__name__} embeds no modality')


def name_of(config) -> str:
  """The objective a config names (`objective.name`; classification when it names none)."""
  return (config.get('objective') or {}).get('name', 'classification')


def build(config, model) -> Objective:
  return OBJECTIVES.get(name_of(config), 'objective.name')(config, model)


def finalize(sums: dict) -> dict:
  """Metric sums → means; `count` becomes `num_examples`."""
  count = float(sums['count'])
  out = {k: float(v) / max(count, 1.0) for k, v in sums.items() if k != 'count'}
  out['num_examples'] = int(count)
  return out


def add_sums(a: dict, b: dict) -> dict:
  return jax.tree.map(lambda x, y: x + y, a, b)
