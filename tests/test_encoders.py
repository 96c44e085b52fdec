"""Every registered encoder: shapes, jit, finiteness, parameters; padding invariance for text."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.models import encoders  # noqa: F401  (registers the encoders)
from mmjax.models.base import ENCODERS
from mmjax.training import steps
from tests.conftest import full_suite_only

B = 2
# 47 frames on purpose: patch and pooling sizes need not divide the input.
INPUTS = {
    'image': lambda rng: rng.normal(size=(B, 28, 28, 1)).astype(np.float32),
    'audio': lambda rng: rng.normal(-5.0, 3.0, size=(B, 47, 32)).astype(np.float32),  # log-mel
    'text': lambda rng: np.array([[5, 9, 2, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                                  list(range(1, 17))], np.int32),
}

# name → (input kinds it is tested on, constructor kwargs that keep the test fast).
# A newly registered encoder must be added here.
ENCODER_INPUTS = {
    'cnn': (('image', 'audio'), {'features': (8, 16, 16)}),
    'lenet': (('image', 'audio'), {'channels': 4, 'additional_layers': 2}),
    'resnet': (('image', 'audio'), {'stage_sizes': (1, 1), 'widths': (8, 16)}),
    'vit': (('image',), {'dim': 32, 'num_layers': 1, 'dropout': 0.1}),
    'conv1d': (('audio',), {'features': (16, 16), 'kernel_sizes': (3, 3), 'pool': (True, True)}),
    'ast': (('audio',), {'dim': 32, 'num_layers': 1}),
    'transformer': (('text', 'audio'), {'dim': 32, 'num_layers': 1}),
    'lstm': (('text', 'audio'), {'hidden': (16,), 'embed_dim': 16}),
    'bilstm': (('text',), {'hidden': (16,), 'embed_dim': 16}),
    'gru': (('text',), {'hidden': (16,), 'embed_dim': 16}),
}
TEXT_ENCODERS = ('transformer', 'lstm', 'bilstm', 'gru')


def _key(seed):
  # XLA:CPU compiles threefry-based initialisation several times slower than the model itself.
  return jax.random.key(seed, impl='rbg')


def _build(name, **overrides):
  _, kwargs = ENCODER_INPUTS[name]
  return ENCODERS.get(name)(**{**kwargs, **overrides})


def _check(enc):
  pooled, tokens, mask = enc.pooled, enc.tokens, enc.token_mask
  assert pooled.ndim == 2 and pooled.shape[0] == B
  assert np.isfinite(np.asarray(pooled)).all()
  if tokens is not None:
    assert tokens.ndim == 3 and mask.shape == tokens.shape[:2] and mask.dtype == jnp.bool_
    assert tokens.shape[0] == B and tokens.shape[1] > 0
    assert np.isfinite(np.asarray(tokens)).all()


@pytest.mark.parametrize('name', ENCODERS.names())
def test_encoder(name):
  if name not in ENCODER_INPUTS:
    pytest.fail(f'encoder {name!r} is registered but has no entry in ENCODER_INPUTS')
  kinds, _ = ENCODER_INPUTS[name]
  model = _build(name)
  rng = np.random.default_rng(0)
  for kind in kinds:
    x = INPUTS[kind](rng)
    shapes = jax.eval_shape(model.init, _key(0), x)
    mutable = ['batch_stats'] if 'batch_stats' in shapes else False

    # One compile for init, eval and train (the test is compile-bound), with init's cheaper
    # optimisation on the CPU: it checks shapes and finiteness, not the last bits.
    @functools.partial(jax.jit, compiler_options=steps.init_compiler_options())
    def run(x):
      variables = model.init(_key(0), x)
      train = model.apply(variables, x, train=True, mutable=mutable, rngs={'dropout': _key(1)})
      return variables, model.apply(variables, x), train

    variables, enc, train = run(x)
    assert sum(p.size for p in jax.tree.leaves(variables['params'])) > 0, (name, kind)
    _check(enc)
    if kind == 'text':
      np.testing.assert_array_equal(enc.token_mask, x != 0)
    if mutable:
      train, updates = train
      assert jax.tree.structure(updates) == jax.tree.structure(
          {'batch_stats': variables['batch_stats']})
    _check(train)


def _id(v):
  return v if isinstance(v, str) else ','.join(f'{k}={x}' for k, x in v.items()) or 'defaults'


@pytest.mark.parametrize('name, kwargs', [(n, {}) for n in TEXT_ENCODERS] + [
    full_suite_only('transformer', {'positions': 'sinusoidal'}, id='transformer-positions=sinusoidal'),
    full_suite_only('transformer', {'cls_token': True}, id='transformer-cls_token=True')], ids=_id)
def test_padding_does_not_change_text_encoding(name, kwargs):
  sentence = [12, 3, 41, 7, 19, 2, 33]
  n = len(sentence)
  short, long = (np.array([sentence + [0] * (length - n)], np.int32) for length in (16, 24))
  model = _build(name, **kwargs)

  @functools.partial(jax.jit, compiler_options=steps.init_compiler_options())
  def run(short, long):
    variables = model.init(_key(0), long)
    return model.apply(variables, short), model.apply(variables, long)

  short, long = run(short, long)
  np.testing.assert_allclose(short.pooled, long.pooled, atol=1e-5)
  np.testing.assert_allclose(short.tokens[:, :n], long.tokens[:, :n], atol=1e-5)
  assert short.token_mask.sum() == long.token_mask.sum() == n


# (input shape, kernel size, input channels → features): the LeNets' layers, an even kernel and
# a map smaller than the kernel.
# The quick loop keeps the audio LeNet's first layer, a map smaller than the kernel and an even
# kernel.
CONV_CASES = [((97, 64), 5, 1, 6), full_suite_only((28, 28), 5, 1, 6),
              full_suite_only((6, 4), 3, 48, 96), ((3, 2), 3, 96, 8),
              full_suite_only((1, 1), 3, 4, 8), full_suite_only((14, 14), 3, 6, 12),
              ((9, 7), 4, 3, 5), full_suite_only((5, 6), 2, 1, 3)]


@pytest.mark.parametrize('shape,k,cin,cout', CONV_CASES)
def test_every_conv_formulation_is_nn_conv(shape, k, cin, cout):
  """Conv2D computes nn.Conv's function with nn.Conv's parameters in each formulation: the same
  initial values, outputs and gradients (to float32 rounding)."""
  from mmjax.models.encoders.conv import Conv2D  # pylint: disable=import-outside-toplevel
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, *shape, cin)), jnp.float32)
  ref = nn.Conv(cout, (k, k), padding='SAME')
  params = ref.init(_key(0), x)
  impls = ['xla', 'auto'] + (['patches'] if k % 2 else []) + (['shift'] if cin == 1 else [])
  want = jax.value_and_grad(lambda p, x: (ref.apply(p, x) ** 2).sum(), (0, 1))(params, x)
  for impl in impls:
    conv = Conv2D(cout, (k, k), impl=impl)
    got_params = conv.init(_key(0), x)
    jax.tree.map(np.testing.assert_array_equal, got_params, params)
    got = jax.jit(jax.value_and_grad(lambda p, x, conv=conv: (conv.apply(p, x) ** 2).sum(),
                                     (0, 1)))(params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), got, want)


def test_auto_conv_picks_the_formulation_the_docs_state():
  from mmjax.models.encoders.conv import choose_conv_impl  # pylint: disable=import-outside-toplevel
  assert choose_conv_impl('auto', (128, 97, 64, 1), (5, 5, 1, 6), 'cpu') == 'shift'
  assert choose_conv_impl('auto', (128, 6, 4, 48), (3, 3, 48, 96), 'cpu') == 'patches'
  assert choose_conv_impl('auto', (128, 48, 32, 6), (3, 3, 6, 12), 'cpu') == 'xla'
  assert choose_conv_impl('auto', (128, 6, 4, 1), (2, 2, 1, 6), 'cpu') == 'xla'   # even kernel
  for backend in ('gpu', 'tpu'):
    assert choose_conv_impl('auto', (128, 97, 64, 1), (5, 5, 1, 6), backend) == 'xla'
  assert choose_conv_impl('patches', (128, 97, 64, 1), (5, 5, 1, 6), 'gpu') == 'patches'


def test_conv_impl_errors_name_the_fix():
  from mmjax.errors import UserError  # pylint: disable=import-outside-toplevel
  from mmjax.models.encoders.conv import Conv2D  # pylint: disable=import-outside-toplevel
  x = jnp.zeros((1, 8, 8, 2))
  with pytest.raises(UserError, match="conv_impl='gemm'; valid values: auto, xla, shift"):
    Conv2D(4, (3, 3), impl='gemm').init(_key(0), x)
  with pytest.raises(UserError, match="needs one input channel, not 2; use 'auto'"):
    Conv2D(4, (3, 3), impl='shift').init(_key(0), x)
