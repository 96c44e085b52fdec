"""Performance plumbing: the benchmark harness and its docs table, one compile per step, the
persistent compilation cache, bfloat16 compute, and the GPU benchmark script (shrunk to a CPU
check). No test asserts a wall-clock time."""

import json
import logging
import math
import os
import re
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from experiments import benchmark
from mmjax import compilation
from mmjax import parallel
from mmjax.training import steps
from mmjax.training import train
from mmjax.data import input_pipeline
from mmjax.errors import UserError
from mmjax.models.encoders import conv
from mmjax.models.model import build_model
from tests.conftest import REPO, full_suite_only, run_python, tiny_config


def test_harness_reports_every_figure():
  result = benchmark.measure(tiny_config(), num_steps=3, warmup=1, eval_steps=2, input_batches=3)
  positive = [result['init_s'], result['first_step_s'], result['examples_per_sec'],
              result['eval_examples_per_sec'], result['input_examples_per_sec'],
              result['loop_examples_per_sec'], result['peak_rss_mib'],
              result['flops_per_example'], result['flops_per_sec']]
  positive += list(result['compile_s'].values()) + list(result['lower_s'].values())
  positive += [result['step_s'][k] for k in ('median', 'p10', 'p90', 'min', 'max')]
  assert all(x > 0 and math.isfinite(x) for x in positive), result
  assert set(result['compile_s']) == {'train', 'eval'}
  s = result['step_s']
  assert s['min'] <= s['p10'] <= s['median'] <= s['p90'] <= s['max'] and s['n'] == 3
  assert result['examples_per_sec'] == pytest.approx(16 / s['median'])
  assert result['input_to_step_ratio'] == pytest.approx(
      result['input_examples_per_sec'] / result['examples_per_sec'])
  assert result['first_step_s'] > result['compile_s']['train'] + result['init_s']
  assert result['compiles'] == {'init': 1, 'train_step': 1, 'eval_step': 1}
  assert result['mfu'] is None and result['platform'] == 'cpu'  # no peak for a CPU
  assert result['param_dtype'] == 'float32' and result['batch_size'] == 16
  assert result['device_memory']['step_temporaries_mib'] >= 0
  # Forward, backward and update: at least three times the forward's FLOPs of the two convs.
  assert result['flops_per_example'] > 3 * 2 * 28 * 28 * 9 * 4
  json.dumps(result)  # the CLI writes it as JSON


@pytest.mark.parametrize('kind, dtype, name, peak', [
    ('NVIDIA H100 80GB HBM3', 'bfloat16', 'NVIDIA H100 SXM', 989e12),
    ('NVIDIA H100 PCIe', 'bfloat16', 'NVIDIA H100 PCIe', 756e12),
    ('NVIDIA H200', 'float32', 'NVIDIA H200', 495e12),
    ('NVIDIA A100-SXM4-80GB', 'bfloat16', 'NVIDIA A100', 312e12),
    ('TPU v4', 'bfloat16', 'TPU v4', 275e12),
    ('TPU v5 lite', 'bfloat16', 'TPU v5e', 197e12),
    ('TPU v5p', 'float32', 'TPU v5p', 459e12),
    ('cpu', 'float32', None, None),
])
def test_peak_table(kind, dtype, name, peak):
  assert benchmark.peak_flops(kind, dtype) == (name, peak)


def _config_with_evals(**overrides):
  return tiny_config(**{'evals.validation.every_steps': 4, 'log_every_steps': 4, **overrides})


@pytest.mark.parametrize('load_before, says', [
    (0.5, 'the load after counts the benchmark itself'),
    (2.2, 'the machine was shared with other jobs'),
])
def test_table_says_whether_other_jobs_shared_the_machine(load_before, says):
  """Only the load before the run tells: the one after counts the benchmark's own processes."""
  meta = {'date': '2026-12-02', 'machine': 'a CPU', 'jax_version': jax.__version__,
          'device_count': 1, 'device_kind': 'cpu', 'steps': 20, 'load_before': load_before,
          'load_after': 3.5}
  context = benchmark.render_context(meta)
  assert says in context and f'load average {load_before:.1f} before and 3.5 after' in context


@pytest.mark.slow
def test_one_compile_each_for_train_and_eval_steps(tmp_path, caplog):
  """Evaluations during training, at the end, and a resumed run: one compile per step each run."""
  for total in (8, 12):  # the second run resumes the first from its step-8 checkpoint
    log = compilation.CompileLog()
    with caplog.at_level(logging.INFO):
      results = train.train_and_evaluate(_config_with_evals(num_train_steps=total),
                                         str(tmp_path / 'run'))
    assert set(results) == {'validation', 'test'}
    counts = log.counts()
    assert counts['train_step'] == 1 and counts['eval_step'] == 1, counts
    line = [r.getMessage() for r in caplog.records if 'XLA compiles:' in r.getMessage()][-1]
    assert re.search(r'train_step 1x \(.*eval_step 1x', line), line
    assert 'more than once' not in caplog.text


def test_a_step_compiled_twice_is_a_warning(caplog):
  def train_step(x):
    return x + 1

  log = compilation.CompileLog()
  step = jax.jit(train_step)
  step(jnp.ones(2))
  step(jnp.ones(2))  # the same shapes: no compile
  assert log.counts()['train_step'] == 1
  step(jnp.ones(3))
  with caplog.at_level(logging.INFO):
    train._log_compiles(log)
  assert "compiled {'train_step': 2} more than once" in caplog.text


@pytest.mark.slow
def test_persistent_cache_makes_a_rerun_load_instead_of_compile(tmp_path):
  """The harness (cold, cache off by default) then a training run of the same config with the
  cache in a new directory, then again: the last loads its steps from the cache."""
  cache = tmp_path / 'cache'
  out = tmp_path / 'bench.json'
  bench = run_python(['-m', 'experiments.benchmark', '--config=tests/scripts/tiny_config.py',
                      '--steps=2', '--warmup=0', '--eval_steps=1', '--input_batches=2',
                      f'--out={out}'], timeout=600)
  assert bench.returncode == 0, bench.stderr[-2000:]
  cold = json.loads(out.read_text())
  assert cold['compilation_cache'] is None and cold['persistent_cache_hits'] == 0
  args = ['-m', 'mmjax.main', '--config=tests/scripts/tiny_config.py',
          f'--config.compilation_cache={cache}', '--config.num_train_steps=4']
  loaded = []
  for i in range(2):
    run = run_python([*args, f'--workdir={tmp_path / f"run{i}"}'], timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    line = re.search(r'XLA compiles: .*; (\d+) loaded from the persistent compilation cache',
                     run.stderr)
    assert line, run.stderr[-2000:]
    loaded.append(int(line.group(1)))
  assert loaded[0] == 0 and loaded[1] >= 3, loaded  # init, train step, eval step at least
  assert any(cache.iterdir())


def test_compilation_cache_setting(monkeypatch, tmp_path):
  monkeypatch.setenv(compilation.ENV, str(tmp_path / 'env'))
  assert compilation.cache_dir('auto') == str(tmp_path / 'env')
  assert compilation.cache_dir(str(tmp_path / 'cfg')) == str(tmp_path / 'cfg')
  assert compilation.cache_dir('off') is None
  monkeypatch.setenv(compilation.ENV, 'off')
  assert compilation.cache_dir('auto') is None
  monkeypatch.delenv(compilation.ENV)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert compilation.cache_dir('auto') == str(tmp_path / 'xdg' / 'mmjax' / 'jax')


def _dot_and_conv_dtypes(lowered_text: str) -> list[tuple[str, str]]:
  """(operand types, op) of every matmul and convolution of a lowered program."""
  found = re.findall(r'stablehlo\.(dot_general|convolution)\b[^\n]*:\s*\((tensor<[^>]*>), '
                     r'(tensor<[^>]*>)\)', lowered_text)
  return [(f'{a} {b}', op) for op, a, b in found]


@pytest.mark.parametrize('spec', ['late_fusion:synthetic',
                                  full_suite_only('bottleneck_fusion:synthetic'),
                                  full_suite_only('mult:synthetic')])
def test_bfloat16_computes_every_layer_in_bfloat16(spec):
  """CNNs, the LSTM and the transformers: every matmul and convolution of the train step (its
  backward pass included) takes bfloat16 operands, except the log-mel front end's float32 mel
  filterbank (129 FFT bins)."""
  module, arg = spec.split(':')
  config = __import__(f'configs.{module}', fromlist=['get_config']).get_config(arg)
  config.dtype = 'bfloat16'
  config.batch_size = 8
  mesh = parallel.make_mesh()
  it = input_pipeline.train_iterator(config)
  batch = next(it)
  it.close()
  trainer = steps.build_trainer(config, mesh)
  state = jax.eval_shape(trainer.init_state, batch)
  train_step = trainer.train_step
  ops = _dot_and_conv_dtypes(train_step.lower(state, parallel.global_batch(batch, mesh)).as_text())
  assert len(ops) > 10
  float32 = [types for types, _ in ops if 'f32' in types]
  assert all(re.search(r'x129xf32', t) for t in float32), float32
  assert len(float32) <= 1, float32


@pytest.mark.slow
def test_bfloat16_trains_with_float32_parameters_optimizer_state_and_metrics():
  config = tiny_config(dtype='bfloat16', **{'optimizer.learning_rate': 3e-3})
  mesh = parallel.make_mesh()
  it = input_pipeline.train_iterator(config)
  batch = next(it)
  it.close()
  trainer = steps.build_trainer(config, mesh)
  state = trainer.init_state(batch)
  train_step = trainer.train_step
  eval_step = trainer.eval_fns.metrics
  batch = parallel.global_batch(batch, mesh)
  losses = []
  for _ in range(6):  # one fixed batch: the loss must fall
    state, sums = train_step(state, batch)
    losses.append(float(sums['loss'] / sums['count']))
  assert losses[-1] < losses[0], losses
  floats = [x for x in jax.tree.leaves((state.params, state.opt_state, state.batch_stats))
            if jnp.issubdtype(x.dtype, jnp.floating)]
  assert floats and all(x.dtype == jnp.float32 for x in floats)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(sums))
  metrics = eval_step(state, batch)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(metrics))
  assert int(state.nonfinite_steps) == 0


@pytest.mark.parametrize('shape', [(2, 8, 6, 3), full_suite_only((2, 7, 5, 1)),
                                   full_suite_only((1, 1, 5, 2)), (3, 3, 1, 4)])
def test_max_pool_by_reshape_matches_flax_max_pool_and_its_gradient(shape):
  x = jax.random.normal(jax.random.key(0), shape)  # no ties
  window = tuple(2 if side > 1 else 1 for side in shape[1:3])
  reference = lambda x: nn.max_pool(x, window, strides=window, padding='VALID')
  assert jnp.array_equal(conv._max_pool_2x2(x), reference(x))
  w = jax.random.normal(jax.random.key(1), reference(x).shape)
  grad = lambda f: jax.grad(lambda x: (f(x) * w).sum())(x)
  assert jnp.array_equal(grad(conv._max_pool_2x2), grad(reference))


def test_unknown_dtype_is_a_user_error():
  with pytest.raises(UserError, match=r"dtype='float16'; valid values: float32, bfloat16"):
    build_model(tiny_config(dtype='float16'))


@pytest.mark.slow
def test_gpu_benchmark_script_runs_shrunk_on_a_cpu(tmp_path):
  env = {**os.environ, 'PYTHONPATH': str(REPO), 'MMJAX_BENCH_TINY': '1',
         'OUT_DIR': str(tmp_path), 'PYTHON': sys.executable}
  run = subprocess.run(['timeout', '-k', '10', '900', 'bash', 'experiments/gpu_benchmark.sh'],
                       cwd=REPO, env=env, capture_output=True, text=True, check=False)
  assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
  rows = {line.split()[0]: line for line in run.stdout.splitlines()
          if line.split() and line.split()[0] in ('main_job', 'mbt_vitb')}
  assert set(rows) == {'main_job', 'mbt_vitb'}, run.stdout
  assert 'bfloat16' in rows['mbt_vitb'] and 'n/a (cpu)' in rows['mbt_vitb']
  for job in ('main_job', 'mbt_vitb'):
    result = json.loads((tmp_path / f'{job}.json').read_text())
    assert result['data'] == 'random' and result['examples_per_sec'] > 0


def _compiled_size_of_a_guarded_update(leaves: int, finite_step) -> int:
  """Lines of XLA's optimised program for a step that keeps `leaves` new arrays only when
  `finite_step` says so, as the train step does."""
  def update(old):
    new = [1.5 * x for x in old]
    ok = finite_step(jnp.float32(0.0), jnp.float32(1.0), new)
    return [jnp.where(ok, a, b) for a, b in zip(new, old)]
  old = [jnp.ones((8, 3 + i % 5)) for i in range(leaves)]
  return jax.jit(update).lower(old).compile().as_text().count('\n')


def test_the_nonfinite_guard_compiles_to_a_program_linear_in_the_parameter_count():
  """A per-leaf chain of isfinite().all() is copied into every guarded update (leaves² ops: the
  train step of configs/mult.py compiled for minutes); `steps.finite_step` is not."""
  ratio = lambda guard: (_compiled_size_of_a_guarded_update(100, guard) /
                         _compiled_size_of_a_guarded_update(25, guard))
  assert ratio(steps.finite_step) < 6  # 4 for a program linear in the leaves

  def chained(loss, grad_norm, new):
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    for x in new:
      ok = ok & jnp.isfinite(x).all()
    return ok
  assert ratio(chained) > 8  # what the guard avoids, still so in this XLA


def test_bad_input_to_the_harness_is_one_line(tmp_path):
  (tmp_path / 'raw').mkdir()
  proc = run_python(['-m', 'experiments.benchmark', '--config=configs/late_fusion.py', '--steps=1'],
                    {'MMJAX_RAW_DATA_DIR': str(tmp_path / 'raw'), 'MMJAX_RAW_DOWNLOAD': '0',
                     'TFDS_DATA_DIR': str(tmp_path / 'tfds'), 'JAX_PLATFORMS': 'cpu'})
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('benchmark: error: ') and 'MMJAX_RAW_DATA_DIR' in last, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_a_profiled_run_traces_its_steps_and_names_their_layers(tmp_path):
  """config.profile traces exactly the configured steps, with an event per XLA operation on a
  CPU, and `python -m mmjax.profiling` names the layers the time went to."""
  from mmjax import profiling  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / 'run'
  proc = run_python(['-m', 'mmjax.main', '--config=tests/scripts/tiny_config.py',
                     f'--workdir={workdir}', '--config.profile.first_step=2',
                     '--config.profile.num_steps=3'])
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = profiling.summarize(workdir)
  assert summary['steps'] == summary['executions'] == 3  # exactly the window's steps traced
  assert summary['ops'] and all(r['ms_per_step'] > 0 for r in summary['ops'])
  assert abs(sum(r['share'] for r in profiling.summarize(workdir, top=10**6)['ops']) - 1) < 1e-6
  assert any('encoders_image' in r['layer'] for r in summary['ops']), summary['ops']
  printed = run_python(['-m', 'mmjax.profiling', f'--workdir={workdir}'])
  assert printed.returncode == 0 and ': 3 train steps' in printed.stdout, printed.stderr[-2000:]
  missing = run_python(['-m', 'mmjax.profiling', f'--workdir={tmp_path / "none"}'])
  assert missing.stderr.strip().splitlines()[-1].startswith('mmjax: error: no trace under')
