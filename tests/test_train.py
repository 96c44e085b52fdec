"""The trainer: device-count invariance, checkpoints, resume, the CLI, and bad input."""

import json
import os
import re
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mmjax.training import train
from mmjax import writers
from mmjax.errors import UserError
from tests.conftest import run_python, small_config, tiny_config


# What train_steps.py records beside the losses and parameters that the tests compare: the
# device count, XLA's per-device memory account, rematerialised regions and split state arrays.
FIGURES = ('devices', 'temp_bytes', 'argument_bytes', 'barriers', 'split_arrays',
           'residual_bytes')


def _train_steps(tmp_path, devices, variant=''):
  tmp_path.mkdir(exist_ok=True)
  out = tmp_path / f'steps_{devices}.npz'
  proc = run_python(['tests/scripts/train_steps.py', str(out), variant],
              {'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}',
               'JAX_PLATFORMS': 'cpu'})
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = dict(np.load(out))
  figures = {k: int(results.pop(k)) for k in FIGURES}
  return results, figures



@pytest.mark.parametrize('variant', ['', 'paradigms'])
@pytest.mark.slow
def test_one_and_four_devices_agree(tmp_path, variant):
  """The plain objective, and (`paradigms`) two tasks with uncertainty weights, task-level heads,
  freezing, modality dropout, training noise and the robustness evaluator."""
  (one, one_figures), (four, four_figures) = (_train_steps(tmp_path, 1, variant),
                                              _train_steps(tmp_path, 4, variant))
  assert one_figures['devices'] == 1 and four_figures['devices'] == 4
  assert one['losses'][-1] < one['losses'][0]  # it trains
  assert set(one) == set(four)
  for name in one:
    np.testing.assert_allclose(one[name], four[name], rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_gradient_accumulation_gives_the_large_batch_update_on_four_devices(tmp_path):
  """batch 64 on 4 devices as 4 micro-batches of 16 (4 examples per device each): the same
  losses and parameters after 4 steps as the whole batch at once."""
  whole, whole_figures = _train_steps(tmp_path / 'whole', 4, 'accumulate=1')
  micro, micro_figures = _train_steps(tmp_path / 'micro', 4, 'accumulate=4')
  # A quarter of the batch's activations alive at once.
  memory = {'whole': whole_figures['temp_bytes'], 'micro': micro_figures['temp_bytes']}
  assert memory['micro'] < 0.6 * memory['whole'], memory
  assert set(whole) == set(micro) and whole['losses'][-1] < whole['losses'][0]
  for name in whole:
    np.testing.assert_allclose(whole[name], micro[name], rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize('config,blocks', [('late_fusion', 6), ('mult', 10)])
@pytest.mark.slow
def test_remat_recomputes_each_block_and_gives_the_same_losses_on_four_devices(tmp_path, config,
                                                                               blocks):
  """`remat` on the encoders' blocks (3 conv blocks in each of the image and audio CNNs) and on
  the fusion's (MulT: 2 cross-attention blocks and 2 self-attention ones, with the CNNs' 6): one
  rematerialised region per block, the backward pass keeping a fraction of the activations
  (measured here: late fusion 84.3 MB to 9.6 MB, MulT 98.5 MB to 9.5 MB at batch 64), and
  the same losses and parameters as without it. XLA:CPU drops the regions' barriers when it
  compiles, so its temporary memory stays the same here (docs/performance.md)."""
  plain, plain_figures = _train_steps(tmp_path / 'plain', 4, f'remat={config},0')
  remat, remat_figures = _train_steps(tmp_path / 'remat', 4, f'remat={config},1')
  assert plain_figures['barriers'] == 0 and remat_figures['barriers'] == blocks
  kept = {'plain': plain_figures['residual_bytes'], 'remat': remat_figures['residual_bytes']}
  assert kept['remat'] < 0.3 * kept['plain'], kept
  assert set(plain) == set(remat) and plain['losses'][-1] < plain['losses'][0]
  for name in plain:
    np.testing.assert_allclose(plain[name], remat[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_a_longer_budget_changes_a_cosine_schedule_and_a_capped_warmup():
  """What README says of a resume that trains longer: the learning rate at a step depends on
  num_train_steps under a cosine decay or a warm-up capped at the budget, not under a constant
  schedule without warm-up."""
  from mmjax import optim  # pylint: disable=import-outside-toplevel
  rates = lambda config: [float(optim.schedule(config, config.num_train_steps)(s)) for s in range(8)]
  short, long = small_config(num_train_steps=8), small_config(num_train_steps=12)
  assert short.optimizer.schedule == 'cosine' and short.optimizer.warmup_steps > 8
  assert rates(short)[3] != rates(long)[3]
  for config in (short, long):
    config.optimizer.warmup_steps = 0
  assert rates(short)[3] != rates(long)[3]  # the cosine alone
  for config in (short, long):
    config.optimizer.schedule = 'constant'
  assert rates(short) == rates(long)


@pytest.mark.slow
def test_fsdp_splits_the_state_and_gives_the_same_updates_on_four_devices(tmp_path):
  """config.fsdp on 4 devices: the state's large arrays split over the devices, the step's
  arguments take a fraction of the replicated state's memory on each device, and the losses and
  parameters (SGD with momentum, a moving average) are the replicated run's."""
  replicated, replicated_figures = _train_steps(tmp_path / 'replicated', 4, 'fsdp=0')
  split, split_figures = _train_steps(tmp_path / 'split', 4, 'fsdp=1')
  assert replicated_figures['split_arrays'] == 0 and split_figures['split_arrays'] > 20
  memory = {'replicated': replicated_figures['argument_bytes'],
            'split': split_figures['argument_bytes']}
  assert memory['split'] < 0.4 * memory['replicated'], memory
  assert set(replicated) == set(split) and replicated['losses'][-1] < replicated['losses'][0]
  for name in replicated:
    np.testing.assert_allclose(replicated[name], split[name], rtol=1e-5, atol=1e-6,
                               err_msg=name)


@pytest.mark.slow
def test_fsdp_run_resumes_and_evaluates_like_a_replicated_one(tmp_path):
  """The CLI with --config.fsdp=True on 4 devices, stopped at step 8, resumed to 12, then resumed
  to 16 with fsdp off: its checkpoints save the split state and restore it split or replicated,
  and its training and evaluation figures are those of an uninterrupted replicated run."""
  def run(workdir, steps, *extra):
    proc = run_python(['-m', 'mmjax.main', '--config=configs/late_fusion.py:synthetic',
                       f'--workdir={workdir}', f'--config.num_train_steps={steps}',
                       '--config.batch_size=16', '--config.log_every_steps=4',
                       '--config.evals.validation.every_steps=4',
                       '--config.checkpoint_every_steps=4', '--config.model.head.dropout=0.0',
                       # SGD: Adam's g/sqrt(v) turns the reduction order's float rounding in a
                       # near-zero gradient into a visible step
                       '--config.optimizer.name=sgd', '--config.optimizer.learning_rate=0.05',
                       # constant, no warm-up: a cosine decay, and a warm-up capped at
                       # num_train_steps - 1, would change with each resume's longer budget
                       '--config.optimizer.schedule=constant', '--config.optimizer.warmup_steps=0',
                       *extra], {'XLA_FLAGS': '--xla_force_host_platform_device_count=4',
                                 'JAX_PLATFORMS': 'cpu'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [{k: v for k, v in json.loads(l).items() if k not in writers.TIMING_KEYS}
            for l in (workdir / 'metrics.jsonl').read_text().splitlines()]

  reference = run(tmp_path / 'replicated', 16)
  run(tmp_path / 'fsdp', 8, '--config.fsdp=True')
  run(tmp_path / 'fsdp', 12, '--config.fsdp=True')
  lines = run(tmp_path / 'fsdp', 16, '--config.fsdp=False')
  # The stopped runs' final test lines (steps 8 and 12) are the only extra ones.
  assert sorted((l['split'], l['step']) for l in lines) == sorted(
      [(l['split'], l['step']) for l in reference] + [('test', 8), ('test', 12)])
  resumed = [l for l in lines if l['split'] != 'test' or l['step'] == 16]
  for ours, theirs in zip(resumed, reference):
    assert (ours['split'], ours['step']) == (theirs['split'], theirs['step'])
    for key, value in theirs.items():
      if isinstance(value, float):  # the reduction order's rounding grows over 16 SGD steps,
        rel = 1e-3 if key.startswith('grad_norm') else 1e-4  # most in the gradient norms
        assert ours[key] == pytest.approx(value, rel=rel, abs=1e-5), (ours['split'], key)


def _final_state(workdir, step):
  mngr = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'), item_names=('state', 'data'))
  out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return jax.device_get(out.state)


@pytest.mark.slow
def test_checkpoint_round_trip(tmp_path):
  from mmjax import checkpoint, parallel
  from mmjax.training import steps  # pylint: disable=import-outside-toplevel
  from mmjax.data import input_pipeline  # pylint: disable=import-outside-toplevel
  config = small_config()
  mesh = parallel.make_mesh()
  it = input_pipeline.train_iterator(config)
  batch = next(it)
  trainer = steps.build_trainer(config, mesh)
  state = trainer.init_state(batch)
  step = trainer.train_step
  state, _ = step(state, parallel.global_batch(batch, mesh))
  mngr = checkpoint.manager(tmp_path / 'ckpt', 2)
  saver = checkpoint.Saver(mngr)
  saver.save(1, state, it.get_state())
  saver.wait()
  step, restored, data_state = checkpoint.restore_latest(mngr, checkpoint.abstract(state))
  assert step == 1 and data_state == it.get_state()
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state), jax.device_get(restored))


@pytest.mark.slow
def test_evaluators_see_the_moving_average_of_the_parameters():
  from mmjax import parallel
  from mmjax.training import steps  # pylint: disable=import-outside-toplevel
  from mmjax.data import input_pipeline  # pylint: disable=import-outside-toplevel
  mesh = parallel.make_mesh()
  config = small_config(ema_decay=0.9)
  raw = next(input_pipeline.train_iterator(config))
  batch = parallel.global_batch(raw, mesh)
  trainer = steps.build_trainer(config, mesh)
  state = trainer.init_state(raw)
  expected = jax.device_get(state.params)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.ema_params), expected)
  train_step = trainer.train_step
  for t in range(3):
    state, _ = train_step(state, batch)
    decay = min(0.9, (1 + t) / (10 + t))
    expected = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, expected,
                            jax.device_get(state.params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               jax.device_get(state.ema_params), expected)
  eval_step = trainer.eval_fns.metrics
  loss = lambda s: float(jax.device_get(eval_step(s, batch))['loss'])
  averaged = state.replace(params=state.ema_params, ema_params={})
  assert loss(state) == loss(averaged) != loss(state.replace(ema_params={}))
  # Without a moving average the state holds none, and checkpoints nothing extra.
  assert steps.build_trainer(small_config(), mesh).init_state(raw).ema_params == {}


@pytest.mark.slow
def test_interrupted_run_resumes_to_identical_result(tmp_path):
  # With a moving average of the parameters: it too is in the checkpoint and resumes exactly.
  config = small_config(num_train_steps=8, checkpoint_every_steps=4, ema_decay=0.9)
  full, cut = str(tmp_path / 'full'), str(tmp_path / 'cut')
  train.train_and_evaluate(config, full)
  # An interruption anywhere in steps 5-8 leaves exactly the step-4 checkpoint and older metrics.
  shutil.copytree(full, cut)
  shutil.rmtree(os.path.join(cut, 'checkpoints', '8'))
  results = train.train_and_evaluate(config, cut)
  jax.tree.map(np.testing.assert_array_equal, _final_state(full, 8), _final_state(cut, 8))
  lines = lambda w: [json.loads(l) for l in open(os.path.join(w, 'metrics.jsonl'))]
  strip = lambda e: {k: v for k, v in e.items() if k not in writers.TIMING_KEYS}
  assert [strip(e) for e in lines(full)] == [strip(e) for e in lines(cut)]
  assert [e for e in lines(cut) if e['split'] == 'test'] == [
      {'step': 8, 'split': 'test', **results['test'][0]}]


def test_a_budget_in_epochs_sets_the_steps(tmp_path):
  from mmjax.data import input_pipeline  # pylint: disable=import-outside-toplevel
  config = tiny_config(num_train_epochs=0.1, num_train_steps=1000, batch_size=16)
  batch, examples = input_pipeline.epoch_size(config)
  assert batch == 16
  train.train_and_evaluate(config, str(tmp_path))
  steps = -(-examples // 10 // 16)  # 0.1 epoch of 3,000 examples at batch 16: 19 steps
  assert json.loads((tmp_path / 'config.json').read_text())['num_train_steps'] == steps == 19
  lines = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert max(l['step'] for l in lines) == steps
  assert [l['epoch'] for l in lines if l['split'] == 'train'][-1] == pytest.approx(
      steps * 16 / examples)


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
  workdir = tmp_path / 'run'
  proc = run_python(['-m', 'mmjax.main', '--config=configs/late_fusion.py:synthetic',
               f'--workdir={workdir}', '--config.num_train_steps=24', '--config.batch_size=16',
               '--config.log_every_steps=8', '--config.evals.validation.every_steps=12',
               '--config.checkpoint_every_steps=12', '--config.optimizer.learning_rate=0.002'])
  assert proc.returncode == 0, proc.stderr[-3000:]
  config = json.loads((workdir / 'config.json').read_text())
  assert config['optimizer']['learning_rate'] == 0.002 and config['num_train_steps'] == 24
  assert list(json.loads((workdir / 'datasets.json').read_text())) == ['synthetic/redundant']
  entries = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert {e['split'] for e in entries} == {'train', 'validation', 'test'}
  train_entries = [e for e in entries if e['split'] == 'train']
  assert all({'loss', 'accuracy', 'learning_rate', 'examples_per_sec'} <= set(e)
             for e in train_entries)
  # Each encoder's gradient norm, which with the others' makes up the global one.
  for e in train_entries:
    parts = [e[f'grad_norm/{m}'] for m in ('image', 'audio', 'text')]
    assert all(p > 0 for p in parts) and sum(p * p for p in parts) < e['grad_norm'] ** 2 * 1.0001
  [test] = [e for e in entries if e['split'] == 'test']
  assert test['num_examples'] == 1000 and test['step'] == 24
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['12', '24']
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(workdir))
  assert 'test: loss' in proc.stderr
  assert (workdir / 'curves.png').stat().st_size > 10_000  # drawn at the end of every run
  # Progress in examples and epochs (synthetic/redundant trains on 3,000 examples), and time.
  assert [(e['examples_seen'], e['epoch']) for e in train_entries] == [
      (128, 128 / 3000), (256, 256 / 3000), (384, 384 / 3000)]
  walls = [e['wall_s'] for e in train_entries]
  assert walls == sorted(walls) and walls[0] >= 0
  # Console lines name their caller, not the logging helper; notices that do not apply to
  # mmjax's runs (TFDS's OpenCV advice, JAX's TPU probe) are not printed.
  assert re.search(r'train\.py:\d+\] step 8/24 ', proc.stderr), proc.stderr[-3000:]
  assert 'writers.py' not in proc.stderr
  assert 'OpenCV' not in proc.stderr and "backend 'tpu'" not in proc.stderr


@pytest.mark.parametrize('overrides, message', [
    ({'model.fusion.name': 'nope'}, "unknown fusion 'nope'"),
    ({'model.encoders.image.name': 'nope'}, "unknown encoder 'nope'"),
    ({'batch_size': 6}, 'batch_size=6 must be a positive multiple of the device count'),
    ({'num_train_steps': -1}, 'num_train_steps=-1 must be >= 0'),
    ({'optimizer.learning_rate': -1.0}, 'optimizer.learning_rate=-1.0 must be positive'),
    ({'optimizer.name': 'adagrad'}, "unknown optimizer 'adagrad'"),
    ({'optimizer.schedule': 'step'}, "unknown schedule 'step'"),
    ({'ema_decay': 1.0}, 'ema_decay=1.0 must be in [0, 1)'),
    ({'dataset.name': 'no_such_dataset'}, "dataset 'no_such_dataset' not found"),
])
def test_bad_config_gives_one_line_error(tmp_path, overrides, message, monkeypatch):
  if overrides.get('batch_size') == 6 and jax.device_count() == 1:
    monkeypatch.setattr(jax, 'local_device_count', lambda: 4)
    monkeypatch.setattr(jax, 'device_count', lambda: 4)
  config = small_config(**overrides)
  with pytest.raises(UserError) as e:
    train.train_and_evaluate(config, str(tmp_path / 'w'))
  assert message in str(e.value) and '\n' not in str(e.value)


@pytest.mark.slow
def test_cli_missing_workdir_and_bad_fusion_print_one_line(tmp_path):
  proc = run_python(['-m', 'mmjax.main', '--config=configs/late_fusion.py:synthetic'])
  assert proc.returncode != 0 and "Flag --workdir must have a value other than None" in proc.stderr
  proc = run_python(['-m', 'mmjax.main', '--config=configs/late_fusion.py:synthetic',
               f'--workdir={tmp_path}/w', '--config.model.fusion.name=nope'])
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("mmjax: error: unknown fusion 'nope' (model.fusion.name); valid names:")


def test_init_compiled_for_speed_gives_the_default_compilers_parameters(monkeypatch):
  """`init` is compiled with cheaper LLVM optimisation on the CPU (steps.init_compiler_options);
  the parameters must not change by a bit, or a run would not reproduce one started before."""
  from mmjax import parallel
  from mmjax.training import steps  # pylint: disable=import-outside-toplevel
  from mmjax.data import input_pipeline  # pylint: disable=import-outside-toplevel
  from tests.conftest import tiny_config  # pylint: disable=import-outside-toplevel
  config = tiny_config(**{'model.head': {'hidden': (16,), 'dropout': 0.0, 'param_init': 'torch'}})
  mesh = parallel.make_mesh()
  batch = next(input_pipeline.train_iterator(config))
  assert steps.init_compiler_options() == {'xla_backend_optimization_level': 1}
  fast = jax.device_get(steps.build_trainer(config, mesh).init_state(batch))
  monkeypatch.setattr(steps, 'init_compiler_options', dict)  # XLA's defaults
  default = jax.device_get(steps.build_trainer(config, mesh).init_state(batch))
  flat = lambda tree: dict(jax.tree_util.tree_leaves_with_path(tree))
  assert flat(fast).keys() == flat(default).keys()
  for path, value in flat(default).items():
    np.testing.assert_array_equal(flat(fast)[path], value, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize('on, biases_decay', [('kernels', False), ('all', True)])
def test_weight_decay_reaches_the_biases_only_when_asked(on, biases_decay):
  """optimizer.weight_decay_on: 'kernels' decays the 2+-D parameters alone; 'all' every one, as a
  PyTorch optimizer's weight_decay (MultiBench's). With a zero gradient only the decay moves."""
  from mmjax import optim  # pylint: disable=import-outside-toplevel
  for name in ('sgd', 'adamw'):
    config = small_config(**{'optimizer.name': name, 'optimizer.weight_decay': 0.1,
                             'optimizer.weight_decay_on': on, 'optimizer.grad_clip_norm': 0.0})
    params = {'kernel': np.ones((2, 2), np.float32), 'bias': np.ones((2,), np.float32)}
    tx = optim.make(config, lambda _: 0.5)
    updates, _ = tx.update(jax.tree.map(np.zeros_like, params), tx.init(params), params)
    assert np.all(np.asarray(updates['kernel']) < 0), name
    assert np.any(np.asarray(updates['bias']) != 0) == biases_decay, name
  config.optimizer.weight_decay_on = 'biases'
  with pytest.raises(UserError, match=r"weight_decay_on='biases'; valid values: kernels, all"):
    optim.make(config, lambda _: 0.5)
