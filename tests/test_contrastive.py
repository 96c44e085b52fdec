"""Cross-modal contrastive learning: the CLIP and SigLIP losses over the global batch, retrieval
and linear-probe evaluators, pretraining then fine-tuning from the pretrained encoders."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import contrastive as contrastive_config
from configs import contrastive_finetune
from mmjax import evaluators, objectives, parallel
from mmjax.training import steps, train
from mmjax.evaluators import linear_probe, retrieval
from mmjax.objectives import contrastive
from mmjax.training import transfer
from mmjax.data import input_pipeline
from mmjax.errors import UserError
from mmjax.models.model import build_model
from tests.conftest import override, run_python
from tests.scripts.contrastive_steps import small_config


def _log_softmax(x, axis):
  x = x - x.max(axis=axis, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def test_clip_loss_is_symmetric_infonce_over_valid_examples():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(5, 5)).astype(np.float32) * 3
  valid = np.array([True, True, False, True, True])
  total, c_ab, c_ba = jax.device_get(contrastive.clip_loss(jnp.asarray(logits),
                                                           jnp.asarray(valid)))
  sub = logits[valid][:, valid]
  n = len(sub)
  expected = 0.5 * (-np.trace(_log_softmax(sub, 1)) - np.trace(_log_softmax(sub, 0)))
  np.testing.assert_allclose(total, expected, rtol=1e-5)
  assert c_ab == (sub.argmax(1) == np.arange(n)).sum()
  assert c_ba == (sub.argmax(0) == np.arange(n)).sum()


def test_siglip_loss_is_the_pairwise_sigmoid_loss_over_valid_pairs():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(4, 4)).astype(np.float32) * 2
  valid = np.array([True, False, True, True])
  total, _, _ = jax.device_get(contrastive.siglip_loss(jnp.asarray(logits), jnp.asarray(valid)))
  sub = logits[valid][:, valid]
  z = 2 * np.eye(len(sub)) - 1
  expected = np.sum(np.log1p(np.exp(-z * sub)))  # -log σ(z·x)
  np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_examples_of_one_pair_are_positives_not_negatives():
  """Rows 0 and 2 belong to one pair (AV-MNIST: two images of one recording): each is a positive
  of the other, -log of the positives' total probability (multi-positive InfoNCE); SigLIP's
  target is +1 for that pair too. Distinct ids give the single-positive losses."""
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(4, 4)).astype(np.float32) * 2
  valid = np.ones(4, bool)
  ids = jnp.asarray([7, 1, 7, 2])
  positive = contrastive.positives({'pair_id': ids}, 4)
  assert np.array_equal(jax.device_get(positive), np.array(
      [[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]], bool))
  total, c_ab, c_ba = jax.device_get(contrastive.clip_loss(jnp.asarray(logits), jnp.asarray(valid),
                                                           positive))
  p = np.asarray(positive)
  prob_rows = np.exp(_log_softmax(logits, 1))
  prob_cols = np.exp(_log_softmax(logits, 0))
  expected = 0.5 * (-np.log((prob_rows * p).sum(1)) - np.log((prob_cols * p).sum(0))).sum()
  np.testing.assert_allclose(total, expected, rtol=1e-5)
  assert c_ab == p[np.arange(4), logits.argmax(1)].sum()
  assert c_ba == p[logits.argmax(0), np.arange(4)].sum()
  siglip, _, _ = jax.device_get(contrastive.siglip_loss(jnp.asarray(logits), jnp.asarray(valid),
                                                        positive))
  np.testing.assert_allclose(siglip, np.sum(np.log1p(np.exp(-(2 * p - 1) * logits))), rtol=1e-5)
  distinct = contrastive.positives({'pair_id': jnp.arange(4)}, 4)
  np.testing.assert_allclose(
      contrastive.clip_loss(jnp.asarray(logits), jnp.asarray(valid), distinct)[0],
      contrastive.clip_loss(jnp.asarray(logits), jnp.asarray(valid))[0], rtol=1e-6)


def _unit(rng, shape):
  x = rng.normal(size=shape).astype(np.float32)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize('loss', ['clip', 'siglip'])
@pytest.mark.parametrize('with_ids', [False, True])
def test_chunked_loss_and_gradients_equal_the_whole_matrixs(loss, with_ids):
  """10 examples in chunks of 3 (the last chunk padded) and of 10, against the loss of the whole
  logits matrix, with two invalid examples and (with ids) pairs of several examples."""
  rng = np.random.default_rng(5)
  a, b = _unit(rng, (10, 8)), _unit(rng, (10, 8))
  valid = jnp.asarray([1, 1, 0, 1, 1, 1, 1, 0, 1, 1], bool)
  ids = jnp.asarray([0, 1, 0, 2, 3, 1, 4, 5, 0, 6]) if with_ids else None
  logit_fn = lambda s: 7.0 * s - (2.0 if loss == 'siglip' else 0.0)
  reference = contrastive.clip_loss if loss == 'clip' else contrastive.siglip_loss
  positive = contrastive.positives({'pair_id': ids} if with_ids else {}, 10)
  whole = lambda a, b: reference(logit_fn(a @ b.T), valid, positive)
  expected = jax.device_get(whole(a, b))
  expected_grads = jax.grad(lambda a, b: whole(a, b)[0], argnums=(0, 1))(a, b)
  for chunk in (0, 3, 10):
    fn = lambda a, b, c=chunk: contrastive.embedding_loss(loss, a, b, valid, logit_fn, ids, c)
    got = jax.device_get(fn(a, b))
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-5)
    assert (got[1], got[2]) == (expected[1], expected[2]), chunk
    grads = jax.grad(lambda a, b: fn(a, b)[0], argnums=(0, 1))(a, b)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6), grads,
                 expected_grads)
  assert expected[1] > 0 and expected[0] > 0  # a loss and counts that the comparison can miss


def test_chunks_bound_the_similarity_matrixs_memory():
  """XLA's memory analysis of the loss and gradient at a global batch of 2,048: 256-row chunks
  need a fraction of the whole matrix's temporary memory, for the same value."""
  rng = np.random.default_rng(0)
  a, b = _unit(rng, (2048, 64)), _unit(rng, (2048, 64))
  valid, ids = jnp.ones(2048, bool), jnp.asarray(rng.integers(0, 100, 2048))
  temp, values = {}, {}
  for loss in ('clip', 'siglip'):
    for chunk in (0, 256):
      fn = jax.jit(jax.value_and_grad(lambda a, b, loss=loss, chunk=chunk: contrastive.embedding_loss(
          loss, a, b, valid, lambda s: 14.0 * s, ids, chunk)[0]))
      temp[loss, chunk] = fn.lower(a, b).compile().memory_analysis().temp_size_in_bytes
      values[loss, chunk] = float(fn(a, b)[0])
    print(f'{loss}: temp bytes whole {temp[loss, 0]:,}, 256-row chunks {temp[loss, 256]:,}')
    assert temp[loss, 256] < temp[loss, 0] / 4
    assert values[loss, 256] == pytest.approx(values[loss, 0], rel=1e-5)


@pytest.mark.slow  # builds AV-MNIST from the raw files
def test_avmnist_batches_carry_the_recording_as_pair_id():
  """configs/contrastive.py names audio_id as the pair; the recording joined in is that one, so
  examples with one pair_id have identical audio."""
  from mmjax.data import input_pipeline  # pylint: disable=import-outside-toplevel
  config = contrastive_config.get_config('avmnist')
  assert config.dataset.pair_id == 'audio_id'
  examples = input_pipeline.Examples(config, 'train')
  batch = examples.batch(np.random.default_rng(0).choice(len(examples), 1024, replace=False))
  ids, audio = batch['pair_id'], batch['inputs']['audio']
  repeated = [i for i in set(ids.tolist()) if (ids == i).sum() > 1]
  assert repeated  # ~20 times fewer recordings than images: 1,024 of them repeat some
  for i in repeated[:5]:
    rows = audio[ids == i]
    assert all(np.array_equal(rows[0], r) for r in rows[1:])


@pytest.mark.parametrize('loss', ['clip', 'siglip'])
def test_padding_is_neither_anchor_nor_negative(loss):
  config = small_config('synthetic' if loss == 'clip' else 'synthetic_siglip')
  objective = objectives.build(config, build_model(config))
  rng = np.random.default_rng(2)
  pooled = {m: jnp.asarray(rng.normal(size=(6, 8)), jnp.float32) for m in ('audio', 'image')}
  keys = jax.random.split(jax.random.key(0), 2)
  params = {'projection': {m: objective.projections[m].init(k, pooled[m])['params']
                           for k, m in zip(keys, objective.embedding_modalities)},
            'log_scale': jnp.float32(2.0), 'bias': jnp.float32(-3.0)}
  mask = np.array([True, True, True, True, False, False])
  present = {m: jnp.ones(6, bool) for m in pooled}
  loss_padded, sums = objective(params, pooled, {'mask': jnp.asarray(mask), 'present': present})
  real = {m: v[:4] for m, v in pooled.items()}
  loss_real, _ = objective(params, real, {'mask': jnp.ones(4, bool),
                                          'present': {m: jnp.ones(4, bool) for m in pooled}})
  np.testing.assert_allclose(loss_padded, loss_real, rtol=1e-6)
  assert float(sums['count']) == 4


@pytest.mark.slow
def test_one_and_four_devices_give_the_same_loss(tmp_path):
  """The negatives are the global batch: 4 devices must see the same 16x16 similarities (and
  the retrieval evaluator the same embeddings)."""
  out = {}
  for devices in (1, 4):
    path = tmp_path / f'{devices}.npz'
    proc = run_python(['tests/scripts/contrastive_steps.py', str(path)],
                      {'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}',
                       'JAX_PLATFORMS': 'cpu'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out[devices] = dict(np.load(path))
  assert int(out[1].pop('devices')) == 1 and int(out[4].pop('devices')) == 4
  for name in out[1]:
    np.testing.assert_allclose(out[1][name], out[4][name], rtol=1e-5, atol=1e-6, err_msg=name)
  for loss in ('clip', 'siglip'):
    assert out[1][f'{loss}/train_losses'][-1] < out[1][f'{loss}/eval_loss'], loss


def test_recall_at_k_on_a_hand_made_case():
  # Query 0's pair ranks first; query 1's pair second (gallery 0 is closer); query 2 has a
  # same-class item first and its pair last.
  gallery = np.array([[1, 0], [0.6, 0.8], [0, 1]], np.float32)
  queries = np.array([[1, 0], [0.9, 0.436], [-0.1, -1]], np.float32)
  labels_q = np.array([0, 1, 0])
  labels_g = np.array([0, 1, 0])
  r = retrieval.recall_at_k(queries, gallery, labels_q, labels_g, (1, 2))
  assert r['pair/R@1'] == pytest.approx(1 / 3) and r['pair/R@2'] == pytest.approx(2 / 3)
  # class: q0 → g0 (class 0) hit; q1 → g0 (class 0) miss at 1, g1 at 2; q2 → g0 (class 0) hit.
  assert r['class/R@1'] == pytest.approx(2 / 3) and r['class/R@2'] == pytest.approx(1.0)


def test_ties_with_identical_gallery_items_count_for_the_query():
  gallery = np.array([[1, 0], [1, 0], [0, 1]], np.float32)  # items 0 and 1 identical
  queries = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
  r = retrieval.recall_at_k(queries, gallery, np.arange(3), np.arange(3), (1,))
  assert r['pair/R@1'] == 1.0


def test_copies_of_one_gallery_item_count_once():
  # Five copies of a class-0 item A, nearer the class-1 query than its own pair B: without
  # de-duplication the copies would fill the top 2 and push B to rank 6.
  gallery = np.array([[1, 0]] * 5 + [[0.6, 0.8]], np.float32)
  queries = np.array([[1, 0]] * 5 + [[0.9, 0.436]], np.float32)
  labels = np.array([0] * 5 + [1])
  r = retrieval.recall_at_k(queries, gallery, labels, labels, (1, 2))
  assert r['class/R@1'] == pytest.approx(5 / 6) and r['class/R@2'] == 1.0
  assert r['pair/R@1'] == pytest.approx(5 / 6) and r['pair/R@2'] == 1.0


def _pretrain_config(**overrides):
  config = small_config('synthetic')
  config.evals.validation.every_steps = 0
  config.evals.probe.update(steps=30, max_fit_examples=512)
  return override(config, **{'batch_size': 32, 'num_train_steps': 30, 'log_every_steps': 10,
                             'checkpoint_every_steps': 30, 'optimizer.learning_rate': 1e-3,
                             'optimizer.warmup_steps': 10, **overrides})


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('contrastive') / 'run'
  results = train.train_and_evaluate(_pretrain_config(), str(workdir))
  lines = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  return workdir, results, lines


@pytest.fixture(scope='module')
def untrained(tmp_path_factory):
  """The control: the same evaluators on the randomly initialised encoders."""
  workdir = tmp_path_factory.mktemp('contrastive') / 'untrained'
  return train.train_and_evaluate(_pretrain_config(num_train_steps=0), str(workdir))


@pytest.mark.slow
def test_pretraining_loss_falls_and_retrieval_beats_random_encoders(pretrained, untrained):
  _, results, lines = pretrained
  losses = [l['loss'] for l in lines if l['split'] == 'train']
  assert len(losses) == 3 and losses[-1] < losses[0], losses
  [retrieval] = results['retrieval']
  assert retrieval['num_examples'] == 1000
  for direction in ('audio_to_image', 'image_to_audio'):
    for k in (1, 5, 10):
      for kind in ('class', 'pair'):
        assert f'{direction}/{kind}/R@{k}' in retrieval
    # 10 balanced classes: chance of a same-class item at rank 1 is 0.1; random encoders
    # scored 0.11 and 0.04 here, 30 steps of pretraining 0.44 and 0.48.
    control = untrained['retrieval'][0][f'{direction}/class/R@1']
    assert retrieval[f'{direction}/class/R@1'] > control + 0.2, (retrieval, control)
  # On this data a probe on random encoders already reads the label (image features 100%,
  # audio 88%): it cannot show what pretraining adds here. Its scoring is checked on known
  # features (test_probe_scores_the_held_out_split_with_the_logistic_regression_optimum).
  probe = {l['condition']: l for l in results['probe']}
  assert set(probe) == {'features=audio', 'features=image', 'features=all'}
  assert all(l['fit_examples'] == 512 and l['num_examples'] == 1000 for l in probe.values())


class _Rows:
  """A split of hand-made feature rows in padded, masked batches, as the evaluators read one."""

  def __init__(self, rows: dict, batch: int = 64):
    self.rows, self.batch = rows, batch
    self.num_examples = len(rows['labels/label'])

  def __iter__(self):
    n = self.num_examples
    for start in range(0, n, self.batch):
      i = np.arange(start, start + self.batch)
      yield {'mask': i < n, **{k: v[np.minimum(i, n - 1)] for k, v in self.rows.items()}}


def _reference_probe(x_fit, y_fit, x_eval, y_eval, num_classes, l2):
  """(loss, accuracy) on the eval rows of the minimiser of mean cross-entropy + l2/2 ||W||² on
  the fit rows, both standardised by the fit rows' statistics: scipy's L-BFGS in float64."""
  from scipy import optimize  # pylint: disable=import-outside-toplevel
  mean, std = x_fit.mean(0), x_fit.std(0)
  x_fit, x_eval = (x_fit - mean) / std, (x_eval - mean) / std
  d, onehot = x_fit.shape[1], np.eye(num_classes)[y_fit]

  def f(theta):
    w, b = theta[:-num_classes].reshape(d, num_classes), theta[-num_classes:]
    logits = x_fit @ w + b
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    dz = (np.exp(logp) - onehot) / len(y_fit)
    value = -(logp * onehot).sum(1).mean() + 0.5 * l2 * (w ** 2).sum()
    return value, np.concatenate([(x_fit.T @ dz + l2 * w).ravel(), dz.sum(0)])

  theta = optimize.minimize(f, np.zeros((d + 1) * num_classes), jac=True, method='L-BFGS-B',
                            options={'gtol': 1e-10, 'ftol': 1e-14, 'maxiter': 10000}).x
  logits = x_eval @ theta[:-num_classes].reshape(d, num_classes) + theta[-num_classes:]
  logp = logits - logits.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  return -logp[np.arange(len(y_eval)), y_eval].mean(), (logits.argmax(1) == y_eval).mean()


def test_probe_scores_the_held_out_split_with_the_logistic_regression_optimum():
  """The linear_probe evaluator on hand-made features: the image carries both bits of a 4-class
  label, the audio one of them, each in noise. Each line's held-out accuracy and loss are those
  of an independent fit of the same regression on the same rows (the first max_fit_examples of
  the fit split): a probe scored on its fit rows, fitted on more rows than asked, whose solver
  stops short, or whose `all` leaves a modality out, gives other figures."""
  rng = np.random.default_rng(0)

  def rows(n):
    y = rng.integers(0, 4, size=n)
    image = rng.normal(size=(n, 8)).astype(np.float32)
    image[:, 0] += 1.5 * (y % 2)
    image[:, 1] += 1.5 * (y // 2)
    audio = rng.normal(size=(n, 8)).astype(np.float32)
    audio[:, 0] += 1.5 * (y // 2)
    return {'audio': audio, 'image': image, 'labels/label': y}

  splits = {'train': _Rows(rows(400)), 'validation': _Rows(rows(300))}
  fns = evaluators.Functions(
      mesh=parallel.make_mesh(), metrics=None, data=splits.get, modalities=('audio', 'image'),
      features=lambda state, batch: ({'count': batch['mask'].sum()}, dict(batch)),
      num_classes={'label': 4}, add_noise=None, objective_name='classification')
  cfg = {'type': 'linear_probe', 'split': 'validation', 'fit_split': 'train', 'steps': 100,
         'l2': 1e-2, 'max_fit_examples': 250}
  lines = {l['condition']: l for l in linear_probe.LinearProbe('probe', cfg, fns).run(None)}
  fit = {k: v[:250] for k, v in splits['train'].rows.items()}
  held = splits['validation'].rows
  for key in ('audio', 'image', 'all'):
    cols = ('audio', 'image') if key == 'all' else (key,)
    x_fit, x_held = (np.concatenate([r[m] for m in cols], 1).astype(np.float64)
                     for r in (fit, held))
    loss, accuracy = _reference_probe(x_fit, fit['labels/label'], x_held, held['labels/label'],
                                      4, 1e-2)
    line = lines[f'features={key}']
    assert (line['fit_examples'], line['num_examples']) == (250, 300), line
    # One example's slack: a near-tie the float32 fit may decide the other way.
    assert line['accuracy'] == pytest.approx(accuracy, abs=1 / 300), (key, line, accuracy)
    assert line['loss'] == pytest.approx(loss, rel=1e-5), (key, line, loss)
  accuracy = {k: lines[f'features={k}']['accuracy'] for k in ('audio', 'image', 'all')}
  assert accuracy['audio'] < accuracy['image'] < accuracy['all'], accuracy  # lines not swapped


def test_labels_do_not_enter_the_pretraining_loss():
  config = small_config('synthetic')
  mesh = parallel.make_mesh()
  batch = next(input_pipeline.train_iterator(config))
  trainer = steps.build_trainer(config, mesh)
  state = trainer.init_state(batch)
  eval_step = trainer.eval_fns.metrics
  shuffled = {**batch, 'labels': {'label': np.roll(batch['labels']['label'], 3)}}
  a = jax.device_get(eval_step(state, parallel.global_batch(batch, mesh)))
  b = jax.device_get(eval_step(state, parallel.global_batch(shuffled, mesh)))
  assert a == b


@pytest.mark.slow
def test_finetune_starts_from_the_pretrained_encoders(pretrained):
  workdir, _, _ = pretrained
  config = contrastive_finetune.get_config('synthetic')
  small = {'name': 'cnn', 'features': (8,), 'kernel_sizes': (3,), 'pool': (True,)}
  config.model.encoders = {'image': dict(small), 'audio': dict(small)}
  config.model.frontends.audio.n_mels = 16
  config.init_from = str(workdir)
  mesh = parallel.make_mesh()
  batch = next(input_pipeline.train_iterator(config))
  trainer = steps.build_trainer(config, mesh)
  fresh = trainer.init_state(batch)
  state = transfer.init_from_checkpoint(config, fresh, mesh)
  from mmjax import checkpoint  # pylint: disable=import-outside-toplevel
  mngr = checkpoint.manager(pathlib.Path(workdir) / 'checkpoints', None, create=False)
  try:
    _, saved = checkpoint.restore_arrays(mngr, ('params',), parallel.replicated(mesh))
  finally:
    mngr.close()
  for m in ('audio', 'image'):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params[f'encoders_{m}']),
                 jax.device_get(saved['params'][f'encoders_{m}']))
  # The classifier head is not the pretraining run's (it never trained): fresh initialisation.
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params['heads']),
               jax.device_get(fresh.params['heads']))


@pytest.mark.parametrize('overrides, message', [
    ({'objective.loss': 'triplet'}, "objective.loss='triplet'; valid values: clip, siglip"),
    ({'objective.modalities': ('audio', 'audio')}, 'must name two different modalities'),
    ({'objective.modalities': ('audio', 'text')}, 'must name two different modalities'),
    ({'objective.chunk_size': -1}, 'objective.chunk_size=-1 must be an integer >= 0'),
    # A third encoder used to pass here and fail inside the step (its input never given).
    ({'model.encoders.text': {'name': 'lstm', 'vocab_size': 64, 'hidden': (8,)}},
     "objective.modalities=('audio', 'image'): the model also encodes text, which contrastive "
     'pre-training would never train'),
])
def test_bad_contrastive_config_is_one_line(overrides, message):
  config = override(small_config('synthetic'), **overrides)
  with pytest.raises(UserError) as e:
    objectives.build(config, build_model(config))
  assert message in str(e.value) and '\n' not in str(e.value)


def test_retrieval_needs_the_contrastive_objective(tmp_path):
  config = small_config('synthetic')
  config.objective = {'name': 'classification'}
  with pytest.raises(UserError, match=r'type retrieval needs an objective that embeds two '
                                      r'modalities \(objective.name=contrastive\)'):
    train.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not (tmp_path / 'w').exists()


def test_configs_name_the_evaluators_and_pretraining_path():
  config = contrastive_config.get_config()
  assert config.objective.name == 'contrastive' and config.dataset.name == 'avmnist/standard'
  assert {config.evals[e].type for e in config.evals} == {'classification', 'retrieval',
                                                         'linear_probe'}
  assert contrastive_config.get_config('siglip').objective.loss == 'siglip'
  finetune = contrastive_finetune.get_config()
  assert finetune.init_from == 'runs/contrastive' and finetune.init_from_pattern == 'encoders_'
  assert finetune.model.encoders.to_dict() == config.model.encoders.to_dict()
  assert evaluators.EVALUATORS.get('retrieval') is retrieval.Retrieval


def test_gradient_accumulation_is_refused_for_the_batch_wide_loss():
  """Micro-batches would give each example fewer negatives: not the large batch's loss."""
  from mmjax.training import config_checks  # pylint: disable=import-outside-toplevel
  from mmjax.errors import UserError  # pylint: disable=import-outside-toplevel
  config = small_config('synthetic')
  config.grad_accum_steps = 2
  with pytest.raises(UserError, match='grad_accum_steps>1 with objective contrastive: its loss '
                                      'compares the examples of a batch with each other'):
    config_checks.validate(config)
