"""How fast a config trains: compile, step, eval, input pipeline, memory, FLOPs and MFU, as JSON.

  python -m experiments.benchmark --config=configs/late_fusion.py [--steps=20] [--out=FILE.json]
  python -m experiments.benchmark --config=configs/mult.py:synthetic --config.dtype=bfloat16
  python -m experiments.benchmark --table [--doc=docs/performance.md]   # every shipped config

It builds what `python -m mmjax.main` builds (mesh, model, objective, optimizer, input pipeline,
the jitted train and eval steps) and measures, in one process:

  init_s              initialising the train state (its compile included)
  cpu_s               process CPU seconds of init, of each lowering and compile, and of the median
                      train step (steadier than wall time on a shared machine)
  lower_s / compile_s tracing+lowering / XLA compile of the train and eval steps, each
                      (jit(...).lower(...).compile(), the same executables the trainer runs)
  first_step_s        init_s + lowering + compile + the first step: the trainer's
                      "first step (compile + run)"
  step_s              train-step time over --steps timed steps after --warmup steps, on one batch
                      already on the device: median, p10, p90, min, max
  examples_per_sec    global batch / median step time (the step alone)
  loop_examples_per_sec  the trainer's loop: the step, then the next batch from the pipeline to
                      the devices while it runs
  eval_examples_per_sec  global batch / median eval-step time (metrics fetched every batch, as
                      the evaluators do)
  input_examples_per_sec  the training input pipeline alone (host; no model)
  input_to_step_ratio input / step examples per second: > 1 means the input keeps up
  peak_rss_mib        peak host memory of the process
  device_memory       the device's own statistics where the backend reports them (not CPU),
                      and the compiled step's argument/output/temporary sizes
  flops_per_example   XLA's cost analysis of the (global, unpartitioned) train step, per example:
                      forward, backward and update
  flops_per_sec       flops_per_example * examples_per_sec
  mfu                 flops_per_sec / (peak FLOP/s of the devices): H100, H200, A100, TPU v4,
                      v5e, v5p; null on a CPU or an unknown device

`--table` runs every config in configs/ (its `:synthetic` variant) and the main job
(configs/late_fusion.py on AV-MNIST) each in a fresh process and writes the table between the
markers of docs/performance.md, with the raw figures in docs/performance.json. Benchmarks print
figures; no test asserts a wall-clock time.
"""

import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax
from ml_collections import config_flags
import numpy as np

from mmjax import compilation
from mmjax import parallel
from mmjax import workdir as workdirs
from mmjax.training import features
from mmjax.training import steps
from mmjax.data import input_pipeline
from mmjax.errors import UserError

REPO = pathlib.Path(__file__).resolve().parents[1]
DOC = REPO / 'docs' / 'performance.md'
BEGIN, END = '<!-- benchmark table: begin -->', '<!-- benchmark table: end -->'
MAIN_JOB = 'configs/late_fusion.py'
FLAGS = flags.FLAGS


def define_flags() -> None:
  """This script's command line, defined when it runs as one (not when imported, e.g. by
  experiments.keras_compare, which defines its own)."""
  config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
  flags.DEFINE_integer('steps', 20, 'Timed train steps (after the warm-up steps).')
  flags.DEFINE_integer('warmup', 3, 'Untimed train steps after the first one.')
  flags.DEFINE_integer('eval_steps', 10, 'Timed eval steps.')
  flags.DEFINE_integer('input_batches', 40, 'Batches to time the input pipeline.')
  flags.DEFINE_enum('data', 'auto', ('auto', 'pipeline', 'random'),
                    "Input: the config's dataset ('pipeline'), or random arrays of the shapes in "
                    "config.benchmark_inputs ('random'); 'auto' picks random when the config "
                    'has benchmark_inputs.')
  flags.DEFINE_string('out', None, 'Write the figures here as JSON.')
  flags.DEFINE_string('compilation_cache', 'off',
                      "Persistent compilation cache: 'off' (cold compiles), 'auto' or a "
                      'directory (see mmjax.compilation).')
  flags.DEFINE_bool('table', False, 'Benchmark every shipped config into --doc.')
  flags.DEFINE_string('doc', str(DOC), 'The markdown file --table writes.')
  flags.DEFINE_list('only', None, '--table: only these config specs (e.g. mult.py:synthetic).')
  flags.DEFINE_integer('timeout', 1800, '--table: seconds allowed per config.')


# Dense peak FLOP/s per chip: (bfloat16, float32). The float32 figure of a GPU is its TF32
# tensor-core peak (what XLA's default matmul precision uses there); a TPU runs float32 matmuls
# in bfloat16 passes by default, so both are its bfloat16 peak. Matched against device_kind in
# this order.
PEAKS = (
    ('H100 PCIe', 'NVIDIA H100 PCIe', 756e12, 378e12),
    ('H100', 'NVIDIA H100 SXM', 989e12, 495e12),
    ('H200', 'NVIDIA H200', 989e12, 495e12),
    ('A100', 'NVIDIA A100', 312e12, 156e12),
    ('v5 lite', 'TPU v5e', 197e12, 197e12),
    ('v5e', 'TPU v5e', 197e12, 197e12),
    ('v5p', 'TPU v5p', 459e12, 459e12),
    ('v5', 'TPU v5p', 459e12, 459e12),
    ('v4', 'TPU v4', 275e12, 275e12),
)


def peak_flops(device_kind: str, dtype: str):
  """(name, peak FLOP/s per chip) for a device kind and compute dtype; (None, None) if unknown."""
  for pattern, name, bf16, f32 in PEAKS:
    if pattern.lower() in device_kind.lower():
      return name, (bf16 if dtype == 'bfloat16' else f32)
  return None, None


def random_batch(config, batch_size: int, seed: int = 0) -> dict:
  """A batch of random inputs of the shapes in `config.benchmark_inputs`:
  {modality: {'shape': (...), 'dtype': 'float32' | 'int32', 'high': token ids < high}}."""
  rng = np.random.default_rng(seed)
  inputs = {}
  for m, spec in config.benchmark_inputs.items():
    shape = (batch_size,) + tuple(spec['shape'])
    if np.issubdtype(np.dtype(spec.get('dtype', 'float32')), np.integer):
      inputs[m] = rng.integers(1, spec.get('high', 2), size=shape, dtype=np.int32)
    else:
      inputs[m] = rng.normal(size=shape).astype(np.float32)
  return {'inputs': inputs,
          'present': {m: np.ones(batch_size, bool) for m in inputs},
          'labels': {t: rng.integers(0, task.num_classes, size=batch_size, dtype=np.int32)
                     for t, task in config.tasks.items()},
          'mask': np.ones(batch_size, bool)}


class _Clock:
  """Wall and process-CPU seconds of a block: on a shared machine the CPU time of a compile
  varies less than its wall time."""

  def __enter__(self):
    self.wall, self.cpu = time.perf_counter(), time.process_time()
    return self

  def __exit__(self, *exc):
    self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def _blocked(fn):
  start = time.perf_counter()
  out = fn()
  jax.block_until_ready(out)
  return out, time.perf_counter() - start


def _first(iterator):
  try:
    return next(iterator)
  finally:
    iterator.close()


def _spread(times) -> dict:
  times = sorted(times)
  pct = lambda q: float(np.percentile(times, q))
  return {'median': statistics.median(times), 'p10': pct(10), 'p90': pct(90), 'min': times[0],
          'max': times[-1], 'n': len(times)}


def _flops(lowered, compiled) -> float | None:
  """FLOPs of one call: the unoptimised (global) program's cost analysis, else the compiled's."""
  for stage in (lowered, compiled):
    try:
      cost = stage.cost_analysis()
    except Exception:  # pylint: disable=broad-except  (not every backend implements it)
      continue
    if isinstance(cost, (list, tuple)):
      cost = cost[0] if cost else None
    if cost and cost.get('flops', 0) > 0:
      return float(cost['flops'])
  return None


def _memory(compiled) -> dict:
  out = {}
  try:
    stats = compiled.memory_analysis()
    out['step_arguments_mib'] = stats.argument_size_in_bytes / 2**20
    out['step_outputs_mib'] = stats.output_size_in_bytes / 2**20
    out['step_temporaries_mib'] = stats.temp_size_in_bytes / 2**20
  except Exception:  # pylint: disable=broad-except
    pass
  device_stats = jax.local_devices()[0].memory_stats()
  if device_stats:
    for key in ('peak_bytes_in_use', 'bytes_in_use', 'bytes_limit'):
      if key in device_stats:
        out[f'device_{key.replace("bytes", "mib")}'] = device_stats[key] / 2**20
  return out


def _eval_split(config) -> str:
  for cfg in (config.get('evals') or {}).values():
    return cfg.get('split', 'test')
  return 'test'


def measure(config, *, num_steps: int = 20, warmup: int = 3, eval_steps: int = 10,
            input_batches: int = 40, data: str = 'auto') -> dict:
  """The figures of the module docstring for one config, as a dict."""
  log = compilation.CompileLog()
  random = data == 'random' or (data == 'auto' and 'benchmark_inputs' in config)
  # Built once: each training iterator below computes its feature table with the same compiled
  # front end.
  table_features = {} if random else features.table_features(config)
  batch_size = config.batch_size
  local = input_pipeline.local_batch_size(batch_size)
  dtype = config.get('dtype', 'float32')
  start = time.perf_counter()
  mesh = parallel.make_mesh()
  if random:
    first = random_batch(config, local, seed=jax.process_index())
    eval_batch = first
  else:
    # One batch each, then the iterators are closed: their reader threads would otherwise read
    # ahead during the compiles and the timed steps.
    first = _first(input_pipeline.train_iterator(config, table_features))
    eval_batch = _first(iter(input_pipeline.eval_data(config, _eval_split(config))))
  setup_s = time.perf_counter() - start

  with _Clock() as init_clock:
    trainer = steps.build_trainer(config, mesh)  # what train.py builds, the same way
    state = jax.block_until_ready(trainer.init_state(first))
  init_s = init_clock.wall
  train_step, eval_step = trainer.train_step, trainer.eval_fns.metrics
  batch = parallel.global_batch(first, mesh)
  ebatch = parallel.global_batch(eval_batch, mesh)

  clocks = {}
  with _Clock() as clocks['lower_train']:
    lowered = train_step.lower(state, batch)
  with _Clock() as clocks['compile_train']:
    compiled = lowered.compile()
  with _Clock() as clocks['lower_eval']:
    elowered = eval_step.lower(state, ebatch)
  with _Clock() as clocks['compile_eval']:
    ecompiled = elowered.compile()
  lower_train, compile_train = clocks['lower_train'].wall, clocks['compile_train'].wall
  lower_eval, compile_eval = clocks['lower_eval'].wall, clocks['compile_eval'].wall

  (state, _), first_run = _blocked(lambda: compiled(state, batch))
  for _ in range(warmup):
    state, sums = compiled(state, batch)
  jax.block_until_ready((state, sums) if warmup else state)
  times, cpu_times = [], []
  for _ in range(num_steps):
    t, c = time.perf_counter(), time.process_time()
    state, sums = compiled(state, batch)
    jax.block_until_ready((state, sums))
    times.append(time.perf_counter() - t)
    cpu_times.append(time.process_time() - c)
  step = _spread(times)

  eval_times = []
  for _ in range(eval_steps + 1):
    t = time.perf_counter()
    jax.device_get(ecompiled(state, ebatch))
    eval_times.append(time.perf_counter() - t)
  eval_step_s = _spread(eval_times[1:] or eval_times)

  loop_eps = input_eps = None
  if not random:
    # The trainer's loop (mmjax.training.train), from a fresh iterator after two steps: the step
    # dispatched, then the next batch read and put on the devices; metrics left on the device.
    train_iter = input_pipeline.train_iterator(config, table_features)
    batches = parallel.DeviceBatches(train_iter, mesh)
    pending = []
    for i in range(2 + num_steps):
      if i == 2:
        jax.block_until_ready(state)
        t = time.perf_counter()
      state, sums = compiled(state, batches.take())
      batches.prefetch()
      pending.append(sums)
    jax.block_until_ready((state, pending))
    loop_eps = num_steps * batch_size / (time.perf_counter() - t)
    train_iter.close()
    # The input pipeline alone, from a fresh iterator (an old one's read-ahead buffer would
    # flatter it), after a few batches of warm-up.
    train_iter = input_pipeline.train_iterator(config, table_features)
    for _ in range(3):
      next(train_iter)
    t = time.perf_counter()
    for _ in range(input_batches):
      next(train_iter)
    input_eps = input_batches * batch_size / (time.perf_counter() - t)
    train_iter.close()

  flops = _flops(lowered, compiled)
  eps = batch_size / step['median']
  flops_per_example = flops / batch_size if flops else None
  device = jax.devices()[0]
  peak_name, peak = peak_flops(device.device_kind, dtype)
  flops_per_sec = flops_per_example * eps if flops_per_example else None
  mfu = (flops_per_sec / (peak * jax.device_count())
         if flops_per_sec and peak and device.platform != 'cpu' else None)
  params = sum(x.size for x in jax.tree.leaves(state.params))
  return {
      'config': None,  # filled in by the caller
      'platform': device.platform,
      'device_kind': device.device_kind,
      'device_count': jax.device_count(),
      'peak_device': peak_name,
      'peak_flops_per_sec': peak,
      'jax_version': jax.__version__,
      'dtype': dtype,
      'param_dtype': str(jax.tree.leaves(state.params)[0].dtype),
      'batch_size': batch_size,
      'data': 'random' if random else config.dataset.name,
      'num_params': int(params),
      'setup_s': setup_s,
      'init_s': init_s,
      'lower_s': {'train': lower_train, 'eval': lower_eval},
      'compile_s': {'train': compile_train, 'eval': compile_eval},
      'cpu_s': {'init': init_clock.cpu, **{k: c.cpu for k, c in clocks.items()},
                'train_step_median': statistics.median(cpu_times)},
      'first_step_s': init_s + lower_train + compile_train + first_run,
      'compiles': log.counts(),
      'persistent_cache_hits': log.cache_hits(),
      'step_s': step,
      'examples_per_sec': eps,
      'loop_examples_per_sec': loop_eps,
      'eval_step_s': eval_step_s,
      'eval_examples_per_sec': batch_size / eval_step_s['median'],
      'input_examples_per_sec': input_eps,
      'input_to_step_ratio': input_eps / eps if input_eps else None,
      'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      'device_memory': _memory(compiled),
      'flops_per_example': flops_per_example,
      'flops_per_sec': flops_per_sec,
      'mfu': mfu,
      'load_average': os.getloadavg()[0],
  }


def summary(result: dict) -> str:
  """A few lines for a terminal."""
  r = result
  gflop = lambda x: f'{x / 1e9:.3g}' if x else 'n/a'
  lines = [
      f'{r["config"]} ({r["data"]}, batch {r["batch_size"]}, {r["dtype"]}, '
      f'{r["num_params"]:,} params) on {r["device_count"]}x {r["device_kind"]}',
      f'  compile: train {r["compile_s"]["train"]:.1f}s, eval {r["compile_s"]["eval"]:.1f}s; '
      f'init {r["init_s"]:.1f}s; first step (compile + run) {r["first_step_s"]:.1f}s',
      f'  train step {1e3 * r["step_s"]["median"]:.1f} ms median '
      f'(p10 {1e3 * r["step_s"]["p10"]:.1f}, p90 {1e3 * r["step_s"]["p90"]:.1f}): '
      f'{r["examples_per_sec"]:,.0f} examples/s; eval {r["eval_examples_per_sec"]:,.0f} '
      'examples/s',
  ]
  if r['input_examples_per_sec']:
    lines.append(f'  input pipeline {r["input_examples_per_sec"]:,.0f} examples/s '
                 f'({r["input_to_step_ratio"]:.1f}x the step); trainer loop '
                 f'{r["loop_examples_per_sec"]:,.0f} examples/s')
  mfu = f'; MFU {100 * r["mfu"]:.1f}% of {r["peak_device"]}' if r['mfu'] is not None else ''
  lines.append(f'  {gflop(r["flops_per_example"])} GFLOP/example, '
               f'{gflop(r["flops_per_sec"])} GFLOP/s{mfu}; peak RSS {r["peak_rss_mib"]:,.0f} MiB')
  return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# --table: every shipped config, each in its own process, into docs/performance.md.

# Configs whose runs start from another finished run, so they cannot be benchmarked alone.
NEEDS_ANOTHER_RUN = {'distill_audio': 'its teacher (distill.teacher) is a finished run'}


def shipped_specs() -> list[str]:
  """The config specs the table covers: every config's :synthetic variant, then the main job."""
  names = sorted(p.stem for p in (REPO / 'configs').glob('*.py')
                 if p.stem not in ('__init__', 'default', *NEEDS_ANOTHER_RUN))
  return [f'{n}.py:synthetic' for n in names] + [pathlib.Path(MAIN_JOB).name]


def _run_one(spec: str, args: list[str], timeout: int) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / 'result.json'
    cmd = ['timeout', '-k', '10', str(timeout), sys.executable, '-m', 'experiments.benchmark',
           f'--config=configs/{spec}', f'--out={out}', *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False,
                          env={**os.environ, 'PYTHONPATH': str(REPO)})
    if proc.returncode or not out.exists():
      tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
      return {'config': spec, 'error': f'exit {proc.returncode}: {" | ".join(tail)}'}
    return json.loads(out.read_text())


def _fmt(x, digits=3):
  if x is None:
    return '–'
  if abs(x) >= 1000:
    return f'{x:,.0f}'
  return f'{x:.{digits}g}'


def render_table(results: list[dict]) -> str:
  """The markdown table of docs/performance.md from the harness's JSON results."""
  head = ('| config | data | params | compile train / eval (s) | CPU s: init, compile train, '
          'eval | first step (s) | train step (ms), median [p10, p90] | train step CPU (ms) | '
          'train ex/s | eval ex/s | input ex/s | input / step | MFLOP / example | GFLOP/s | '
          'peak RSS (MiB) |')
  rows = [head, '|' + '---|' * 15]
  for r in results:
    if 'error' in r:
      rows.append(f'| `{r["config"]}` | failed: {r["error"]} |' + ' |' * 13)
      continue
    s, cpu = r['step_s'], r['cpu_s']
    rows.append(
        f'| `{r["config"]}` | {r["data"]} | {r["num_params"]:,} | '
        f'{r["compile_s"]["train"]:.1f} / {r["compile_s"]["eval"]:.1f} | '
        f'{cpu["init"]:.1f}, {cpu["compile_train"]:.1f}, {cpu["compile_eval"]:.1f} | '
        f'{r["first_step_s"]:.1f} | {1e3 * s["median"]:.1f} [{1e3 * s["p10"]:.1f}, '
        f'{1e3 * s["p90"]:.1f}] | {1e3 * cpu["train_step_median"]:.0f} | '
        f'{_fmt(r["examples_per_sec"])} | '
        f'{_fmt(r["eval_examples_per_sec"])} | {_fmt(r["input_examples_per_sec"])} | '
        f'{_fmt(r["input_to_step_ratio"], 2)} | '
        f'{_fmt(r["flops_per_example"] and r["flops_per_example"] / 1e6)} | '
        f'{_fmt(r["flops_per_sec"] and r["flops_per_sec"] / 1e9)} | '
        f'{r["peak_rss_mib"]:,.0f} |')
  return '\n'.join(rows)


LOADED = 1.0  # a 1-minute load average from which other jobs are taken to share the machine


def render_context(meta: dict) -> str:
  skipped = '; '.join(f'`{name}.py` ({why})' for name, why in sorted(NEEDS_ANOTHER_RUN.items()))
  # The load after the run counts the benchmark's own processes; only the load before it tells
  # whether other jobs shared the machine.
  shared = ('the machine was shared with other jobs: compare rows with care'
            if meta['load_before'] >= LOADED else 'the load after counts the benchmark itself')
  return (f'Measured {meta["date"]} on {meta["machine"]}, JAX {meta["jax_version"]}, '
          f'{meta["device_count"]}x {meta["device_kind"]}; `--steps={meta["steps"]}`; load '
          f'average {meta["load_before"]:.1f} before and {meta["load_after"]:.1f} after the run '
          f'({shared}). Not in the table: {skipped}.')


def write_doc(doc: pathlib.Path, results: list[dict], meta: dict) -> None:
  text = doc.read_text(encoding='utf-8')
  if BEGIN not in text or END not in text:
    raise SystemExit(f'{doc} lacks the markers {BEGIN} ... {END}')
  before, rest = text.split(BEGIN, 1)
  after = rest.split(END, 1)[1]
  body = f'{render_context(meta)}\n\n{render_table(results)}'
  doc.write_text(f'{before}{BEGIN}\n{body}\n{END}{after}', encoding='utf-8')
  doc.with_suffix('.json').write_text(
      json.dumps({'meta': meta, 'results': results}, indent=1) + '\n', encoding='utf-8')


def _machine() -> str:
  return f'{workdirs.cpu_name()}, {os.cpu_count()} cores'


def run_table(argv_rest: list[str]) -> None:
  specs = FLAGS.only or shipped_specs()
  args = [f'--steps={FLAGS.steps}', f'--warmup={FLAGS.warmup}',
          f'--eval_steps={FLAGS.eval_steps}', f'--input_batches={FLAGS.input_batches}',
          *argv_rest]
  load_before = os.getloadavg()[0]
  results = []
  for spec in specs:
    print(f'benchmarking {spec} ...', flush=True)
    result = _run_one(spec, args, FLAGS.timeout)
    results.append(result)
    print(summary(result) if 'error' not in result else result['error'], flush=True)
  ok = [r for r in results if 'error' not in r]
  first = ok[0] if ok else {'jax_version': jax.__version__, 'device_count': jax.device_count(),
                            'device_kind': jax.devices()[0].device_kind}
  meta = {'date': time.strftime('%Y-%m-%d'), 'machine': _machine(),
          'jax_version': first['jax_version'], 'device_count': first['device_count'],
          'device_kind': first['device_kind'], 'steps': FLAGS.steps,
          'load_before': load_before, 'load_after': os.getloadavg()[0]}
  write_doc(pathlib.Path(FLAGS.doc), results, meta)
  print(f'wrote {FLAGS.doc}')


def main(argv):
  if FLAGS.table:
    # Config overrides (--config.x=y) pass through to every config's run.
    run_table([a for a in sys.argv[1:] if a.startswith('--config.')])
    return
  del argv
  if FLAGS.config is None:
    raise app.UsageError('give --config=configs/NAME.py (or --table)')
  try:
    cache = compilation.enable_cache(FLAGS.compilation_cache)
    result = measure(FLAGS.config, num_steps=FLAGS.steps, warmup=FLAGS.warmup,
                     eval_steps=FLAGS.eval_steps, input_batches=FLAGS.input_batches,
                     data=FLAGS.data)
  except UserError as e:  # missing raw data, a bad config value: one line, as the trainer
    sys.exit(f'benchmark: error: {e}')
  spec = FLAGS['config'].config_filename
  result['config'] = spec[len('configs/'):] if spec.startswith('configs/') else spec
  result['compilation_cache'] = cache
  print(summary(result))
  if FLAGS.out:
    pathlib.Path(FLAGS.out).write_text(json.dumps(result, indent=1) + '\n', encoding='utf-8')


if __name__ == '__main__':
  define_flags()
  app.run(main)
