"""Every registered fusion on random encodings of 2 and 3 modalities: shape, jit, finiteness, and
that an absent modality's content (or any padding) cannot change the output; TFN/LMF known
answers; every fusion config builds the full model."""

import functools
import importlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mmjax.training import steps
from mmjax.data import synthetic
from mmjax.models.base import FUSIONS, Encoding
from mmjax.models.model import MultimodalModel  # also registers every fusion
from tests.conftest import full_suite_only

TASKS = {'label': 10}
BATCH = 6
# modality → (pooled dim, token dim, length); text has no tokens, as an encoder may give none.
SHAPES = {'audio': (12, 10, 7), 'image': (20, 16, 5), 'text': (8, None, None)}
MODALITY_SETS = {2: ('audio', 'image'), 3: ('audio', 'image', 'text')}
# Every registered fusion with its defaults, plus the options that change how it masks.
_CASES = [(name, ()) for name in FUSIONS.names()] + [
    ('decision_fusion', (('combine', 'learned'),)),
    ('gated_fusion', (('gate', 'sigmoid'),)),
    ('bottleneck_fusion', (('pool', 'bottleneck'),)),
]
FUSION_CASES = [pytest.param(name, options, id='-'.join([name] + [f'{k}={v}' for k, v in options]))
                for name, options in _CASES]
CONFIGS = ('early_fusion', 'decision_fusion', 'tensor_fusion', 'lowrank_fusion', 'gated_fusion',
           'mult', 'bottleneck_fusion')


def random_encodings(names, seed=0, batch=BATCH):
  rng = np.random.default_rng(seed)
  out = {}
  for m in names:
    pooled_dim, token_dim, length = SHAPES[m]
    pooled = jnp.asarray(rng.normal(size=(batch, pooled_dim)), jnp.float32)
    if token_dim is None:
      out[m] = Encoding(pooled)
      continue
    lengths = rng.integers(1, length + 1, size=batch)
    lengths[0] = length - 2  # at least one row with padding
    mask = np.arange(length)[None, :] < lengths[:, None]
    tokens = rng.normal(size=(batch, length, token_dim)) * mask[..., None]
    out[m] = Encoding(pooled, jnp.asarray(tokens, jnp.float32), jnp.asarray(mask))
  return out


def presence(n, i):
  """[BATCH, n] with modality i absent in rows 1, 3 and 4, mixed with others present or not."""
  p = np.ones((BATCH, n), bool)
  p[1, i] = False                      # only i absent
  p[2] = False
  p[2, i] = True                       # only i present
  p[3] = False                         # nothing present
  p[4, [i, (i + 1) % n]] = False       # i and one other absent
  return jnp.asarray(p)


def build(name, options=()):
  cls = FUSIONS.get(name)
  kwargs = dict(options, tasks=TASKS) if getattr(cls, 'outputs_logits', False) else dict(options)
  return cls(**kwargs)


def with_absent_changed(encs, m, present_m):
  """encs with modality m's pooled and tokens replaced by unrelated, large values where absent."""
  other = random_encodings(list(encs), seed=7)[m]

  def swap(old, new):
    return jnp.where(~present_m.reshape((-1,) + (1,) * (old.ndim - 1)), 100.0 * new + 3.0, old)

  enc = encs[m]
  tokens = None if enc.tokens is None else swap(enc.tokens, other.tokens)
  return {**encs, m: enc.replace(pooled=swap(enc.pooled, other.pooled), tokens=tokens)}


def with_padding_changed(encs):
  return {m: e if e.tokens is None else e.replace(
      tokens=jnp.where(e.token_mask[..., None], e.tokens, 50.0)) for m, e in encs.items()}


@functools.lru_cache(maxsize=None)
def outputs(name, options, n):
  """{case: output} of fusion `name(**options)` on `n` modalities. Rows are independent, so all
  cases are stacked along the batch and run through one jitted init_with_output (one compile)."""
  names = MODALITY_SETS[n]
  base = random_encodings(names)
  cases = {'padding': (base, presence(n, 0)),
           'padding changed': (with_padding_changed(base), presence(n, 0))}
  for i, m in enumerate(names):
    cases[m] = (base, presence(n, i))
    cases[f'{m} changed'] = (with_absent_changed(base, m, presence(n, i)[:, i]), presence(n, i))
  encs, present = jax.tree.map(lambda *xs: jnp.concatenate(xs), *cases.values())
  # Run once, like a run's init: compiled with the init's cheaper LLVM optimisation on the CPU
  # (mult on 3 modalities: 18.6 CPU s instead of 21.7, bottleneck_fusion 14.2 instead of 20.2).
  init = jax.jit(build(name, options).init_with_output,
                 compiler_options=steps.init_compiler_options())
  out, _ = init(jax.random.key(0), encs, present)
  return {case: jax.tree.map(lambda x, k=k: np.asarray(x[k * BATCH:(k + 1) * BATCH]), out)
          for k, case in enumerate(cases)}


def assert_same(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=0, atol=1e-5), a, b)


# Each fusion case on each modality set. The quick loop compiles each fusion once; the attention
# fusions' other cases (the slowest compiles of the file) run in the whole suite.
CASES = [
    full_suite_only(*case.values, n, id=f'{case.id}-{n}')
    if case.values[0] in ('mult', 'bottleneck_fusion') and (n == 3 or case.values[1]) else
    pytest.param(*case.values, n, id=f'{case.id}-{n}')
    for case in FUSION_CASES for n in sorted(MODALITY_SETS)]


@pytest.mark.parametrize('name,options,n', CASES)
def test_shape_and_finite(name, options, n):
  for out in outputs(name, options, n).values():
    if getattr(FUSIONS.get(name), 'outputs_logits', False):
      assert set(out) == set(TASKS)
      for task, classes in TASKS.items():
        assert out[task].shape == (BATCH, classes)
    else:
      assert out.ndim == 2 and out.shape[0] == BATCH and out.shape[1] > 0
    for x in jax.tree.leaves(out):
      assert np.isfinite(x).all()


@pytest.mark.parametrize('name,options,n', CASES)
def test_absent_modality_cannot_change_output(name, options, n):
  out = outputs(name, options, n)
  for m in MODALITY_SETS[n]:
    assert_same(out[f'{m} changed'], out[m])


@pytest.mark.parametrize('name,options,n', CASES)
def test_padding_cannot_change_output(name, options, n):
  out = outputs(name, options, n)
  assert_same(out['padding changed'], out['padding'])


def test_tensor_fusion_holds_unimodal_terms():
  names, dim = MODALITY_SETS[3], 4
  encs, present = random_encodings(names), presence(3, 0)
  module = FUSIONS.get('tensor_fusion')(dim=dim)
  variables = module.init(jax.random.key(0), encs, present)
  out, state = module.apply(variables, encs, present, capture_intermediates=True)
  cube = out.reshape((BATCH,) + (dim + 1,) * len(names))
  z = [state['intermediates'][f'{m}_proj']['__call__'][0] * present[:, i, None]
       for i, m in enumerate(names)]
  np.testing.assert_allclose(cube[:, -1, -1, -1], 1.0)
  for i in range(len(names)):
    index = [slice(None)] + [-1] * len(names)
    index[1 + i] = slice(dim)
    np.testing.assert_allclose(cube[tuple(index)], z[i], atol=1e-6)
  np.testing.assert_allclose(cube[:, :dim, :dim, -1], jnp.einsum('bi,bj->bij', z[0], z[1]),
                             atol=1e-6)


class _Readout(nn.Module):
  """A fusion followed by a linear layer: what a linear head can read from it."""
  fusion: nn.Module
  out: int

  @nn.compact
  def __call__(self, encodings, present):
    return nn.Dense(self.out)(self.fusion(encodings, present))


def _fit(model, encs, present, y, steps=300):
  params = model.init(jax.random.key(1), encs, present)
  opt = optax.adam(3e-2)

  def loss_fn(p):
    return jnp.mean((model.apply(p, encs, present) - y) ** 2)

  def step(carry, _):
    p, state = carry
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, state = opt.update(grads, state, p)
    return (optax.apply_updates(p, updates), state), loss

  (params, _), _ = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), None, steps))(params)
  return float(loss_fn(params))


@pytest.mark.slow
def test_lowrank_fits_what_tensor_fusion_fits():
  """Target: a random linear map of vec([x_a; 1] ⊗ [x_b; 1]), some modalities absent (x = 0).
  With rank ≥ d + 1 per output LMF can represent it exactly, as can TFN + linear; rank 1 cannot."""
  n, dim, out = 256, 3, 2
  rng = np.random.default_rng(0)
  names = ('audio', 'image')
  present = jnp.asarray(rng.random((n, 2)) < 0.8)
  xs = [rng.normal(size=(n, dim)) * np.asarray(present[:, i, None]) for i in range(2)]
  encs = {m: Encoding(jnp.asarray(x, jnp.float32)) for m, x in zip(names, xs)}
  aug = [np.concatenate([x, np.ones((n, 1))], axis=1) for x in xs]
  features = np.einsum('bi,bj->bij', *aug).reshape(n, -1)
  y = jnp.asarray(features @ rng.normal(size=(features.shape[1], out)) / 4, jnp.float32)
  scale = float(jnp.var(y))
  tfn = _fit(_Readout(FUSIONS.get('tensor_fusion')(dim=dim), out), encs, present, y)
  lmf = _fit(FUSIONS.get('lowrank_fusion')(dim=out, rank=dim + 1), encs, present, y)
  rank1 = _fit(FUSIONS.get('lowrank_fusion')(dim=out, rank=1), encs, present, y)
  assert tfn < 1e-2 * scale, (tfn, scale)
  assert lmf < 1e-2 * scale, (lmf, scale)
  assert rank1 > 10 * max(lmf, tfn), (rank1, lmf, tfn)


def fake_batch(modalities, seed=0, batch=4):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(4, synthetic.TEXT_LENGTH + 1, size=batch)
  text = rng.integers(4, synthetic.VOCAB_SIZE, size=(batch, synthetic.TEXT_LENGTH))
  make = {
      'image': lambda: rng.normal(size=(batch, synthetic.IMAGE_SIZE, synthetic.IMAGE_SIZE, 1)),
      'audio': lambda: rng.uniform(-1, 1, size=(batch, synthetic.AUDIO_SAMPLES)),
      'text': lambda: text * (np.arange(synthetic.TEXT_LENGTH)[None] < lengths[:, None]),
  }
  inputs = {m: jnp.asarray(make[m](), jnp.int32 if m == 'text' else jnp.float32)
            for m in modalities}
  present = {m: jnp.asarray(rng.random(batch) < 0.7) for m in modalities}
  return inputs, present


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_model(name):
  """Shapes only (traced, not compiled): the fusions' numerics are checked above."""
  module = importlib.import_module(f'configs.{name}')
  assert module.get_config('avmnist').model.fusion.name == name
  config = module.get_config('synthetic')
  assert config.model.fusion.name == name
  model = MultimodalModel(config.model, TASKS)
  inputs, present = fake_batch(sorted(config.dataset.modalities))
  variables = jax.eval_shape(model.init, jax.random.key(0), inputs, present)
  logits = jax.eval_shape(model.apply, variables, inputs, present)
  assert {task: x.shape for task, x in logits.items()} == {'label': (4, TASKS['label'])}
