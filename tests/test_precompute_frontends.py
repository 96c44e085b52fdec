"""`precompute_frontends`: a fixed front end of a modality joined by id computed once per stored
recording, the same features as the model's own front end, and training alike."""

import json
import logging

import jax
import numpy as np
import pytest

from configs import late_fusion
from mmjax import parallel
from mmjax.data import input_pipeline
from mmjax.models.model import build_frontend
from mmjax.training import features, steps
from tests.conftest import REPO, needs_raw_data, small_config, tiny_config


def test_only_a_fixed_front_end_of_a_joined_modality_is_precomputed():
  """The main job's log-mel qualifies; training noise, SpecAugment, a teacher reading the inputs,
  or audio stored per example keep the waveform path, each with its reason."""
  config = late_fusion.get_config()
  assert features.reasons_to_keep_waveforms(config) == {}
  assert features.table_features(config) == {}  # off unless asked for
  config.precompute_frontends = True
  assert set(features.table_features(config)) == {'audio'}

  noisy = late_fusion.get_config()
  noisy.modality_noise = {'audio': {'p': 0.5, 'snr_db': (-6.0, 0.0)}}
  augmented = late_fusion.get_config()
  augmented.model.frontends.audio.time_masks = 2
  distilled = late_fusion.get_config()
  distilled.objective.name = 'distill'
  reasons = {name: features.reasons_to_keep_waveforms(c) for name, c in
             (('noise', noisy), ('specaugment', augmented), ('distill', distilled),
              ('per example', small_config()))}
  assert reasons['noise'] == {'audio': 'training adds noise to it (modality_noise)'}
  assert reasons['specaugment'] == {'audio': 'its front end augments in training'}
  assert 'another model' in reasons['distill']['audio']
  assert 'stored per example' in reasons['per example']['audio']
  for config in (noisy, augmented, distilled):
    config.precompute_frontends = True
    assert features.table_features(config) == {}


def test_the_model_takes_a_waveform_or_its_front_ends_output_and_nothing_else():
  """A model gives the same logits on waveforms and on their log-mels computed before; audio of
  another shape is one line naming what the front end takes."""
  from mmjax.errors import UserError  # pylint: disable=import-outside-toplevel
  from mmjax.models.model import build_model  # pylint: disable=import-outside-toplevel
  config = tiny_config()
  model = build_model(config)
  rng = np.random.default_rng(0)
  image = rng.random((2, 28, 28, 1), np.float32)
  wave = rng.standard_normal((2, 8000)).astype(np.float32) * 0.1
  present = {'image': np.ones(2, bool), 'audio': np.ones(2, bool)}
  variables = model.init(jax.random.key(0), {'image': image, 'audio': wave}, present)
  apply = jax.jit(lambda audio: model.apply(variables, {'image': image, 'audio': audio}, present))
  feats = jax.jit(lambda w: build_frontend(config.model, 'audio').apply({}, w))(wave)
  assert feats.shape == (2, 61, 8)
  np.testing.assert_allclose(apply(feats)['label'], apply(wave)['label'], rtol=1e-5, atol=1e-5)
  with pytest.raises(UserError, match=r'audio input of shape \(8000, 1\) per example: its front '
                     r'end \(LogMel\) takes a waveform \[samples\] or its own output'):
    model.apply(variables, {'image': image, 'audio': wave[..., None]}, present)


@needs_raw_data
@pytest.mark.slow  # two compiles of the main job's train step
def test_precomputed_features_are_the_front_ends_bit_for_bit_and_train_alike():
  """The main job's training batches with the log-mel computed once per recording: the audio is
  the front end's output on that batch's waveforms bit for bit, everything else the same, and
  three train steps give the waveform path's losses and parameters to float32 rounding (XLA fuses
  the in-step front end with the first convolution, so not bit for bit)."""
  config = late_fusion.get_config()
  config.batch_size = 32
  config.precompute_frontends = True
  waves = input_pipeline.train_iterator(config)
  feats = input_pipeline.train_iterator(config, features.table_features(config))
  wave_batches = [next(waves) for _ in range(3)]
  feature_batches = [next(feats) for _ in range(3)]
  frontend = jax.jit(lambda x: build_frontend(config.model, 'audio').apply({}, x))
  for w, f in zip(wave_batches, feature_batches):
    assert w['inputs']['audio'].shape == (32, 8000) and f['inputs']['audio'].shape == (32, 97, 64)
    np.testing.assert_array_equal(np.asarray(frontend(w['inputs']['audio'])), f['inputs']['audio'])
    rest = lambda b: jax.tree.leaves({**b, 'inputs': {'image': b['inputs']['image']}})
    for a, b in zip(rest(w), rest(f)):
      np.testing.assert_array_equal(a, b)

  trainer = steps.build_trainer(config, parallel.make_mesh())
  runs = {}
  for name, batches in (('waveforms', wave_batches), ('features', feature_batches)):
    state, losses = trainer.init_state(batches[0]), []
    for batch in batches:
      state, sums = trainer.train_step(state, batch)
      losses.append(float(sums['loss']))
    runs[name] = (losses, jax.device_get(state.params))
  np.testing.assert_allclose(runs['features'][0], runs['waveforms'][0], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(runs['features'][1]), jax.tree.leaves(runs['waveforms'][1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@needs_raw_data
@pytest.mark.slow
def test_a_run_with_precomputed_front_ends_evaluates_on_waveforms(tmp_path, caplog):
  """A short run of the main job trained on precomputed features, then the same state evaluated
  again with the flag off: the same robustness figures exactly, since evaluation reads waveforms
  either way (the noise is added to them; an evaluator fed features would differ under noise).
  Two trainings would not do: their float32 rounding differs, and a 30-step model's predictions
  sit near its decision boundaries. The run with the flag says what it computed."""
  from mmjax.training import train  # pylint: disable=import-outside-toplevel
  figures = {}
  for precompute in (True, False):  # the second resumes at the last step: evaluation only
    config = late_fusion.get_config()
    config.precompute_frontends = precompute
    config.num_train_steps, config.checkpoint_every_steps = 30, 30
    config.evals = {'robustness': {'type': 'robustness', 'split': 'test[:512]', 'every_steps': 0,
                                   'noise': {'audio': {'snr_db': (-6.0,)}}}}
    config.select_best = ''
    with caplog.at_level(logging.INFO):
      results = train.train_and_evaluate(config, str(tmp_path))
    figures[precompute] = {l['condition']: l['accuracy'] for l in results['robustness']}
    if precompute:
      assert any('audio front end computed once per stored row: 3000 rows' in r.getMessage()
                 for r in caplog.records)
  assert set(figures[True]) == {'all', 'missing=image', 'missing=audio', 'swapped=image',
                                'swapped=audio', 'noise=audio,snr_db=-6'}
  assert figures[True] == figures[False]
  assert any('resumed from step 30' in r.getMessage() for r in caplog.records)


def test_performance_docs_show_the_committed_measurement():
  """docs/performance.md's table and its percentages are docs/precompute_frontends.json's runs."""
  runs = json.loads((REPO / 'docs' / 'precompute_frontends.json').read_text())['runs']
  doc = (REPO / 'docs' / 'performance.md').read_text()
  block = doc.split('<!-- precompute_frontends table: begin -->')[1].split(
      '<!-- precompute_frontends table: end -->')[0]
  rows = [f"| {r['round']} | {'on' if r['precompute_frontends'] else 'off'} | "
          f"{r['cpu_s']['train_step_median'] * 1000:.0f} | {r['examples_per_sec']:,.0f} | "
          f"{r['loop_examples_per_sec']:,.0f} | {r['input_examples_per_sec']:,.0f} | "
          f"{r['flops_per_example'] / 1e6:.1f} |" for r in runs]
  assert block.strip().splitlines()[2:] == rows
  pairs = [(off, on) for off, on in zip(runs[::2], runs[1::2])]
  assert all(not off['precompute_frontends'] and on['precompute_frontends'] for off, on in pairs)
  gain = lambda key: sorted(round(100 * (on[key] / off[key] - 1)) for off, on in pairs)
  prose = ' '.join(doc.split('<!-- precompute_frontends table: end -->')[1].split('\n## ')[0]
                   .split())
  fewer = round(100 * (1 - pairs[0][1]['flops_per_example'] / pairs[0][0]['flops_per_example']))
  assert f'The step does {fewer}% fewer FLOPs' in prose
  for key, what in (('examples_per_sec', 'runs'), ('loop_examples_per_sec', 'loop gains'),
                    ('input_examples_per_sec', 'input pipeline')):
    low, high = gain(key)
    assert f'{low}-{high}%' in prose.split(what, 1)[1][:40], (key, low, high)
