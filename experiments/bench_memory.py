"""Host memory of a long training run: the RSS of `python -m mmjax.main`, sampled with psutil.

  python -m experiments.bench_memory --steps=2000

Trains tests/scripts/tiny_config.py (a few seconds per 100 steps on a CPU) with frequent metrics,
evaluations and checkpoints, and prints the RSS against the step and its growth from warm-up (30-40%
of the steps) to the end (90-100%). A flat line means no per-step host leak in the loop, the input
pipeline, the metric writers or the checkpointer.
"""

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import psutil

REPO = pathlib.Path(__file__).resolve().parents[1]
MIB = 1 << 20


def _last_step(path) -> int:
  """The step of the last complete line of metrics.jsonl (0 before the first)."""
  try:
    with open(path, 'rb') as f:
      f.seek(max(0, os.path.getsize(path) - 4096))
      lines = f.read().splitlines()
  except OSError:
    return 0
  for line in reversed(lines):
    try:
      return json.loads(line)['step']
    except ValueError:
      continue
  return 0


def measure(steps: int, workdir, eval_every: int | None = None, env_extra=None,
            poll_s: float = 0.2, timeout: int = 900) -> dict:
  """Runs `steps` training steps in a subprocess; {'samples': [(step, rss_bytes)], 'warm', 'end',
  'growth', 'seconds'} with warm/end the median RSS over 30-40% and 90-100% of the steps."""
  args = ['timeout', '-k', '10', str(timeout), sys.executable, '-m', 'mmjax.main',
          '--config=tests/scripts/tiny_config.py', f'--workdir={workdir}',
          f'--config.num_train_steps={steps}', '--config.log_every_steps=8',
          f'--config.evals.validation.every_steps={eval_every or steps}',
          f'--config.checkpoint_every_steps={max(steps // 20, 8)}']
  env = {**os.environ, 'PYTHONPATH': str(REPO), 'JAX_PLATFORMS': 'cpu', **(env_extra or {})}
  metrics = pathlib.Path(workdir) / 'metrics.jsonl'
  start = time.time()
  samples = []
  # A file, not a pipe: a pipe nobody reads fills up and blocks the run.
  with tempfile.TemporaryFile(mode='w+') as log:
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
      while proc.poll() is None:
        time.sleep(poll_s)
        try:
          trainer = psutil.Process(proc.pid).children()  # the trainer under `timeout`
          rss = sum(p.memory_info().rss for p in trainer)
        except psutil.Error:
          continue
        step = _last_step(metrics)
        if trainer and step < steps:  # training only: the final evaluation is not a step
          samples.append((step, rss))
    finally:
      if proc.poll() is None:  # interrupted: SIGKILL cannot pass through `timeout`, so kill both
        for child in psutil.Process(proc.pid).children(recursive=True):
          child.kill()
        proc.kill()
      proc.wait()
    if proc.returncode:
      log.seek(0)
      raise RuntimeError(f'training failed ({proc.returncode}): {log.read()[-2000:]}')
  window = lambda lo, hi: [r for s, r in samples if lo * steps <= s < hi * steps] or [0]
  warm, end = statistics.median(window(0.3, 0.4)), statistics.median(window(0.9, 1.0))
  return {'samples': samples, 'warm': warm, 'end': end, 'growth': end / warm - 1,
          'seconds': time.time() - start}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}; flags take the form --name=value')
  args = flags.FLAGS
  with tempfile.TemporaryDirectory() as tmp:
    result = measure(args.steps, pathlib.Path(tmp) / 'run', args.eval_every)
  samples = result['samples']
  print(f'{args.steps} steps in {result["seconds"]:.0f}s; {len(samples)} RSS samples')
  for tenth in range(10):
    rss = [r for s, r in samples if tenth * args.steps / 10 <= s < (tenth + 1) * args.steps / 10]
    if rss:
      print(f'  steps {tenth * 10:3d}-{tenth * 10 + 10:3d}%: median '
            f'{statistics.median(rss) / MIB:7.1f} MiB  max {max(rss) / MIB:7.1f} MiB')
  print(f'warm-up (30-40%) {result["warm"] / MIB:.1f} MiB -> end (90-100%) '
        f'{result["end"] / MIB:.1f} MiB: {100 * result["growth"]:+.2f}%')


if __name__ == '__main__':
  flags.DEFINE_integer('steps', 2000, 'Training steps of the measured run.')
  flags.DEFINE_integer('eval_every', 500, 'Steps between validation passes.')
  app.run(main)
