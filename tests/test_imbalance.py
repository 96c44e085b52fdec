"""Modality imbalance: OGM-GE's gradient modulation as its paper defines it, its logged
per-modality contribution, and the AV-MNIST configs at 0 dB and -6 dB audio SNR."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import late_fusion_ogm
from mmjax import objectives, parallel
from mmjax.training import steps, train
from mmjax.objectives import ogm_ge
from mmjax.data import avmnist, datasets, input_pipeline
from mmjax.errors import UserError
from mmjax.models.model import build_model
from tests.conftest import RAW_DATA_DIR, needs_raw_data, override


def test_coefficients_follow_eq_10():
  # Modality a dominates 3:1: k_a = 1 - tanh(alpha * 3), k_b = 1.
  k_a, k_b = jax.device_get(ogm_ge.coefficients(jnp.float32(30.0), jnp.float32(10.0), 0.5))
  assert k_a == pytest.approx(1 - math.tanh(1.5), rel=1e-6) and k_b == 1.0
  k_a, k_b = jax.device_get(ogm_ge.coefficients(jnp.float32(4.0), jnp.float32(5.0), 0.8))
  assert k_a == 1.0 and k_b == pytest.approx(1 - math.tanh(0.8 * 1.25), rel=1e-6)


def _config(**overrides):
  """late_fusion_ogm.py:synthetic with a linear head over two one-block CNNs."""
  config = late_fusion_ogm.get_config('synthetic')
  cnn = {'name': 'cnn', 'features': (32,), 'kernel_sizes': (3,), 'pool': (True,)}
  config.model.encoders = {'image': dict(cnn), 'audio': dict(cnn)}
  config.model.frontends.audio.n_mels = 8
  config.model.head = {'hidden': (), 'dropout': 0.0}
  return override(config, batch_size=32, **overrides)


def _setup(config):
  mesh = parallel.make_mesh()
  batch = next(input_pipeline.train_iterator(config))
  trainer = steps.build_trainer(config, mesh)
  model = trainer.model
  objective = trainer.objective
  state = trainer.init_state(batch)
  return model, objective, state, batch


def _grads(objective, state, batch):
  """(outputs, metric sums, gradients as the train step sees them) in inference mode."""
  return _grads_of(objective, state.params, batch)


def _grads_of(objective, params, batch):
  def loss_fn(params):
    outputs, _ = objective.apply_model({'params': params}, batch, train=False)
    loss, sums = objective({}, outputs, batch)
    return loss, (outputs, sums)
  # jitted: op by op, the model's convolutions and front end take seconds each
  (_, (outputs, sums)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
  return outputs, sums, {'model': grads, 'objective': {}}


def _softmax(x):
  e = np.exp(x - x.max(1, keepdims=True))
  return e / e.sum(1, keepdims=True)


@pytest.mark.slow
def test_branch_outputs_are_the_official_linear_split_and_gradients_scale_by_k():
  """A linear head over [audio; image] features: out_u = W_u·z_u + b/2 (the official code); the
  encoder kernels' gradients are multiplied by k_u of Eq. 10, everything else untouched."""
  config = _config(**{'objective.modulation': 'ogm', 'objective.alpha': 0.6})
  model, objective, state, batch = _setup(config)
  outputs, sums, grads = _grads(objective, state, batch)
  enc = model.apply(state.variables(), batch['inputs'], False, method='encode')
  z = {m: np.asarray(e.pooled, np.float64) for m, e in enc.items()}
  dense = state.params['heads']['label']['Dense_0']
  w, b = np.asarray(dense['kernel'], np.float64), np.asarray(dense['bias'], np.float64)
  d_audio = z['audio'].shape[1]  # late fusion concatenates in modality order: audio, image
  by_hand = {'audio': z['audio'] @ w[:d_audio] + b / 2, 'image': z['image'] @ w[d_audio:] + b / 2}
  labels = np.asarray(batch['labels']['label'])
  score = {}
  for m in ('audio', 'image'):
    np.testing.assert_allclose(outputs['branch'][m]['label'], by_hand[m], rtol=1e-4, atol=1e-5)
    score[m] = _softmax(by_hand[m])[np.arange(len(labels)), labels].sum()
    np.testing.assert_allclose(sums[f'ogm/{m}/score'], score[m], rtol=1e-4)
  ratio = score['audio'] / score['image']
  expected = {'audio': 1 - math.tanh(0.6 * ratio) if ratio > 1 else 1.0,
              'image': 1 - math.tanh(0.6 / ratio) if ratio < 1 else 1.0}
  assert min(expected.values()) < 0.9  # one modality is modulated

  new, new_sums = objective.transform_gradients(grads, sums, jnp.int32(0), jax.random.key(0))
  for m in ('audio', 'image'):
    np.testing.assert_allclose(new_sums[f'ogm/{m}/coeff'] / sums['count'], expected[m], rtol=1e-5)
    conv = f'encoders_{m}'
    np.testing.assert_allclose(new['model'][conv]['Conv_0']['kernel'],
                               expected[m] * grads['model'][conv]['Conv_0']['kernel'], rtol=1e-5)
    np.testing.assert_array_equal(new['model'][conv]['Conv_0']['bias'],
                                  grads['model'][conv]['Conv_0']['bias'])
  jax.tree.map(np.testing.assert_array_equal, new['model']['heads'], grads['model']['heads'])


@pytest.mark.slow
def test_ge_adds_noise_with_the_unmodulated_gradients_std_and_only_while_active():
  """As the authors' code: `grad = grad * coeff + normal(0, grad.std())`, the std read before
  the assignment, so the dominant modality's noise is as large as its gradient was."""
  config = _config(**{'objective.alpha': 0.6, 'objective.start_step': 5,
                      'objective.end_step': 9})
  _, objective, state, batch = _setup(config)
  _, sums, grads = _grads(objective, state, batch)
  ogm_only = objectives.build(override(_config(**{'objective.alpha': 0.6,
                                                  'objective.modulation': 'ogm'})), objective.model)
  scaled, _ = ogm_only.transform_gradients(grads, sums, jnp.int32(6), jax.random.key(1))
  noisy, _ = objective.transform_gradients(grads, sums, jnp.int32(6), jax.random.key(1))
  modulated = 0
  for m in ('audio', 'image'):
    g = np.asarray(grads['model'][f'encoders_{m}']['Conv_0']['kernel'])  # 3x3x1x32
    k_g = np.asarray(scaled['model'][f'encoders_{m}']['Conv_0']['kernel'])
    noise = np.asarray(noisy['model'][f'encoders_{m}']['Conv_0']['kernel']) - k_g
    assert abs(noise.std() / g.std() - 1) < 0.2 and abs(noise.mean()) < 0.2 * g.std()
    modulated += k_g.std() < 0.7 * g.std()  # where the noise's scale tells the two apart
  assert modulated == 1
  # Outside [start_step, end_step): no modulation, no noise.
  for step in (4, 9):
    same, s = objective.transform_gradients(grads, sums, jnp.int32(step), jax.random.key(1))
    jax.tree.map(np.testing.assert_array_equal, same, grads)
    assert float(s['ogm/audio/coeff']) == float(s['ogm/image/coeff']) == float(sums['count'])


def test_training_logs_each_modalitys_contribution(tmp_path):
  config = _config(num_train_steps=4, log_every_steps=1, checkpoint_every_steps=4)
  config.evals = {'validation': {'type': 'classification', 'split': 'validation'}}
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  lines = [json.loads(l) for l in (tmp_path / 'run' / 'metrics.jsonl').read_text().splitlines()]
  train_lines = [l for l in lines if l['split'] == 'train']
  assert len(train_lines) == 4
  alpha = float(config.objective.alpha)
  for line in train_lines:  # one step each: its coefficients follow from its logged scores
    score = {m: line[f'ogm/{m}/score'] for m in ('audio', 'image')}
    strong, weak = sorted(score, key=score.get, reverse=True)
    assert line[f'ogm/{weak}/coeff'] == 1.0
    assert line[f'ogm/{strong}/coeff'] == pytest.approx(
        1 - np.tanh(alpha * score[strong] / score[weak]), rel=1e-4)
    assert {'ogm/audio/accuracy', 'ogm/image/accuracy'} <= set(line)
  [validation] = results['validation']
  assert {'ogm/audio/score', 'ogm/image/accuracy', 'accuracy'} <= set(validation)
  assert 'ogm/audio/coeff' not in validation  # a training quantity


@pytest.mark.parametrize('overrides, message', [
    ({'objective.modulation': 'grad_blending'}, "objective.modulation='grad_blending'"),
    ({'objective.alpha': -1.0}, 'must be >= 0'),
    ({'model.unimodal_heads': {'hidden': (8,)}}, 'set model.unimodal_heads={}'),
    ({'tasks': {'label': {'num_classes': 10}, 'again': {'num_classes': 10}}}, 'scores one task'),
])
def test_bad_ogm_config_is_one_line(overrides, message):
  config = override(_config(), **overrides)
  with pytest.raises(UserError) as e:
    objectives.build(config, build_model(config))
  assert message in str(e.value) and '\n' not in str(e.value)


def test_ogm_needs_exactly_two_modalities():
  config = late_fusion_ogm.get_config('synthetic')
  config.model.encoders.text = {'name': 'lstm', 'vocab_size': 64, 'hidden': (8,)}
  config.dataset.modalities.text = {'feature': 'text', 'max_length': 16}
  with pytest.raises(UserError, match='balances two modalities'):
    objectives.build(config, build_model(config))


def test_config_variants_read_the_snr_datasets():
  for variant in ('snr0db', 'snr-6db', 'standard'):
    config = late_fusion_ogm.get_config(variant)
    assert config.dataset.name == 'avmnist/standard'
    assert config.dataset.joins.audio.dataset == f'fsdd/{variant}'
    assert config.objective.name == 'ogm_ge'


def test_avmnist_has_no_config_that_stores_standards_examples_again():
  assert [c.name for c in avmnist.Avmnist.BUILDER_CONFIGS] == ['standard', 'clean']
  assert [c.name for c in avmnist.Fsdd.BUILDER_CONFIGS] == ['standard', 'clean', 'snr0db',
                                                            'snr-6db']


# ------------------------------------------------------------------------------------------------
# AV-MNIST at 0 dB and -6 dB

def _read(name, split, keys=None):
  """(builder, {feature: stacked array}) of `split` of mmjax dataset `name`, built if need be."""
  builder = datasets.prepare(name, os.environ['TFDS_DATA_DIR'], RAW_DATA_DIR)
  source = builder.as_data_source()[split]
  examples = source.__getitems__(range(len(source)))
  keys = keys or list(examples[0])
  return builder, {k: np.stack([np.asarray(e[k]) for e in examples]) for k in keys}


@needs_raw_data
@pytest.mark.parametrize('config, snr', [('snr0db', 0.0), ('snr-6db', -6.0)])
@pytest.mark.slow
def test_fsdd_snr_configs_have_their_snr_and_standards_noise_draw(config, snr):
  builder, noisy = _read(f'fsdd/{config}', 'test')
  assert str(builder.version) == '1.1.0'
  clean_builder, clean = _read('fsdd/clean', 'test')
  assert str(clean_builder.version) == '1.0.0' and str(avmnist.VERSION) == '1.1.0'
  std_builder, std = _read('fsdd/standard', 'test')
  assert str(std_builder.version) == '1.0.0'  # unchanged, so existing builds stay valid
  for key in ('recording_id', 'length', 'label', 'speaker', 'take'):
    np.testing.assert_array_equal(noisy[key], clean[key])
  snrs = []
  for i, n in enumerate(clean['length']):
    x = clean['audio'][i].astype(np.float64)
    e, e_std = noisy['audio'][i] - x, std['audio'][i] - x
    if (np.abs(noisy['audio'][i].astype(np.int32)) < 32767).all() and (
        np.abs(std['audio'][i].astype(np.int32)) < 32767).all():
      snrs.append(10 * np.log10(np.mean(x[:n]**2) / np.mean(e[:n]**2)))
      assert np.corrcoef(e, e_std)[0, 1] > 0.99  # the same draw, scaled
  assert len(snrs) > 150 and abs(np.median(snrs) - snr) < 0.3


@needs_raw_data
@pytest.mark.slow
def test_snr_configs_read_standards_examples_with_the_noisier_recordings():
  """AV-MNIST at 0 dB and -6 dB: avmnist/standard's images, labels and pairing, each example's
  audio the same recording from fsdd/snr0db or fsdd/snr-6db."""
  rows = list(range(0, 10000, 250))
  standard = input_pipeline.Examples(late_fusion_ogm.get_config('standard'), 'test')
  audio_ids = [int(standard.source[i]['audio_id']) for i in rows]
  expected = standard.batch(rows)
  for variant in ('snr0db', 'snr-6db'):
    batch = input_pipeline.Examples(late_fusion_ogm.get_config(variant), 'test').batch(rows)
    np.testing.assert_array_equal(batch['inputs']['image'], expected['inputs']['image'])
    np.testing.assert_array_equal(batch['labels']['label'], expected['labels']['label'])
    _, recordings = _read(f'fsdd/{variant}', 'test', ['recording_id', 'audio'])
    by_id = dict(zip(recordings['recording_id'].tolist(), recordings['audio']))
    np.testing.assert_array_equal(batch['inputs']['audio'],
                                  np.stack([by_id[i] for i in audio_ids]) / np.float32(32768))
    assert not np.array_equal(batch['inputs']['audio'], expected['inputs']['audio'])


# Gradient blending (configs/gradient_blending.py): the fused head predicts, each modality's head
# is trained beside it, and the loss weighs the three heads by the estimated weights.

def _blending_config(weights):
  """A two-modality synthetic model with MLP heads on each encoding beside the fused one."""
  config = _config()
  config.objective = {'name': 'classification', 'head_weights': weights}
  config.model.unimodal_heads = {'hidden': (8,), 'dropout': 0.0, 'prediction': 'fused'}
  return config


def test_blending_predicts_with_the_fused_head_and_weighs_each_heads_loss():
  weights = {'fused': 0.7, 'image': 0.0, 'audio': 0.3}
  config = _blending_config(weights)
  batch = next(input_pipeline.train_iterator(config))
  model = build_model(config)
  objective = objectives.build(config, model)
  params = jax.jit(lambda b: model.init(jax.random.key(0), b['inputs'], b['present']))(
      batch)['params']
  outputs, sums, grads = _grads_of(objective, params, batch)
  assert set(outputs) == {'label', 'label/image', 'label/audio'}
  # `label` is the fused head alone: the model's fused_logits on the same encodings.
  present = batch['present']
  mask = jnp.stack([present[m] for m in ('audio', 'image')], axis=1)
  fused = jax.jit(lambda p, x, k: model.apply(
      {'params': p}, x, k, method=lambda mdl, x, k: mdl.fused_logits(mdl.encode(x), k)))(
          params, batch['inputs'], mask)
  np.testing.assert_allclose(outputs['label'], fused['label'], rtol=1e-5, atol=1e-6)
  count = float(sums['count'])
  expected = sum(w * float(sums[f'label{"" if h == "fused" else "/" + h}/loss']) / count
                 for h, w in weights.items())
  loss, _ = objective({}, outputs, batch)
  assert float(loss) == pytest.approx(expected, rel=1e-5)
  # A head weighted 0 is not trained at all; the others are.
  assert all(float(jnp.abs(leaf).max()) == 0.0
             for leaf in jax.tree.leaves(grads['model']['unimodal_head_image']))
  assert max(float(jnp.abs(leaf).max())
             for leaf in jax.tree.leaves(grads['model']['unimodal_head_audio'])) > 0


def test_the_averaged_prediction_keeps_its_fused_head_apart():
  config = _blending_config({'image': 0.5})
  config.model.unimodal_heads.prediction = 'average'
  _, objective, state, batch = _setup(config)
  outputs, sums, _ = _grads(objective, state, batch)
  assert set(outputs) == {'label', 'label/fused', 'label/image', 'label/audio'}
  count = float(sums['count'])
  expected = (float(sums['label/loss']) + float(sums['label/fused/loss'])
              + 0.5 * float(sums['label/image/loss']) + float(sums['label/audio/loss'])) / count
  assert float(objective({}, outputs, batch)[0]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize('field, value, message', [
    ('objective.head_weights', {'text': 1.0}, 'weights >= 0 of heads among fused, audio, image'),
    ('objective.head_weights', {'audio': -1.0}, 'weights >= 0 of heads among'),
    ('model.unimodal_heads.prediction', 'mean', "prediction='mean'; valid values: average, fused"),
])
def test_bad_blending_config_is_one_line(field, value, message):
  config = override(_blending_config({'fused': 1.0}), **{field: value})
  with pytest.raises(UserError) as e:
    model = build_model(config)
    objectives.build(config, model)
    model.init(jax.random.key(0), *_example_inputs(config))
  assert message in str(e.value) and '\n' not in str(e.value)


def _example_inputs(config):
  batch = next(input_pipeline.train_iterator(config))
  return batch['inputs'], batch['present']


def test_gradient_blending_config_reads_each_snr():
  from configs import gradient_blending  # pylint: disable=import-outside-toplevel
  for variant in ('standard', 'snr-6db', 'snr0db'):
    config = gradient_blending.get_config(variant)
    assert config.dataset.joins.audio.dataset == f'fsdd/{variant}'
    assert config.model.unimodal_heads.prediction == 'fused'
    assert sorted(config.model.encoders) == ['audio', 'image']
  assert gradient_blending.get_config('synthetic').dataset.name == 'synthetic/redundant'
  with pytest.raises(ValueError, match='valid: standard, snr-6db, snr0db, synthetic'):
    gradient_blending.get_config('snr3db')
