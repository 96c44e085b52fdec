"""Runs a grid of runs, one after another or `jobs` at a time, and writes its results (used by
experiments.sweep and experiments.zoo).

Each run is `python -m mmjax.main` in a subprocess, in `<root>/runs/<run name>`, its output in
`<root>/logs/<run name>.log`; a finished run is skipped (its workdir or its record in the
results says so: experiments.aggregate), an interrupted one resumes. A run that an
experiment shares with another (`Experiment.shares_runs_with`: the same config, overrides, seed
and settings) is not trained twice: its workdir becomes a link to the other experiment's (in the
sibling directory named after it), which it then skips or resumes like its own. Runs share
mmjax's persistent compilation cache (`~/.cache/mmjax/jax`, or `$MMJAX_COMPILATION_CACHE`), so
runs of one program (e.g. one method on several datasets) compile it once.
"""

import concurrent.futures
import os
import pathlib
import sys
import time

from experiments import aggregate
from experiments import plots
from experiments import runs as runs_lib


def default_results_dir(name: str, quick: bool) -> str:
  return f'runs/sweeps/{name}-quick' if quick else f'results/{name}'


def print_commands(experiment, root) -> None:
  for run in experiment.runs:
    print(runs_lib.command_line(run, aggregate.workdir(root, run)))


def run_all(experiment, root, timeout_s: int, out=None, jobs: int = 1) -> list[str]:
  """Trains every run that has not finished, in order, `jobs` at a time; returns the failures'
  descriptions."""
  out = out or sys.stdout
  total = len(experiment.runs)
  records = aggregate.read_records(experiment, root)

  def one(i, run) -> str | None:
    wd = aggregate.workdir(root, run)
    shared = _link_shared(experiment, root, run, wd)
    state, _ = aggregate.status(run, root, records)
    head = f'[{i}/{total}] {run.name}' + (f' (shared with {shared})' if shared else '')
    if state.state in ('finished', 'diverged', 'recorded'):
      print(f'{head}: {state.describe()}, skipped', file=out, flush=True)
      return None
    if state.state == 'conflict':
      print(f'{head}: not run: {state.detail}', file=out, flush=True)
      return f'{run.name}: {state.detail}'
    resume = (f' (resuming: {state.describe()})' if state.state == 'partial' else
              f' ({state.detail})' if state.detail else '')
    print(f'{head}: running{resume}', file=out, flush=True)
    log = pathlib.Path(root) / 'logs' / f'{run.name}.log'
    start = time.time()
    rc = runs_lib.execute(run, wd, log, timeout_s)
    seconds = time.time() - start
    aggregate.record_time(root, run, seconds, rc, start, jobs)
    state = runs_lib.progress(run, wd)
    took = f'{seconds:.0f}s'
    if rc == 0 and state.state == 'finished':
      print(f'{head}: done in {took}', file=out, flush=True)
      return None
    if state.state == 'diverged':  # an outcome the results count, not a failure to run
      print(f'{head}: {state.describe()}, after {took}', file=out, flush=True)
      return None
    print(f'{head}: FAILED after {took} (exit status {rc}, {state.describe()}); last lines of '
          f'{log}:\n{_tail(log)}', file=out, flush=True)
    return f'{run.name}: exit status {rc}, {state.describe()}; log: {log}'

  # Each run is its own process: threads only wait for them.
  with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
    results = list(pool.map(one, range(1, total + 1), experiment.runs))
  return [r for r in results if r]


def _link_shared(experiment, root, run, wd) -> str | None:
  """Links `wd` to the same run's workdir in an experiment this one shares runs with, where
  that one exists and `wd` does not; the experiment it links to (None: its own workdir)."""
  if wd.is_symlink():
    return pathlib.Path(os.readlink(wd)).parent.parent.name.removesuffix('-quick')
  if wd.exists():
    return None
  suffix = '-quick' if experiment.quick else ''
  for other in experiment.shares_runs_with:
    theirs = aggregate.workdir(pathlib.Path(root).parent / f'{other}{suffix}', run)
    if theirs.is_dir():
      wd.parent.mkdir(parents=True, exist_ok=True)
      wd.symlink_to(theirs.resolve(), target_is_directory=True)
      return other
  return None


def _tail(path, n: int = 5) -> str:
  try:
    lines = pathlib.Path(path).read_text(encoding='utf-8', errors='replace').splitlines()
  except OSError:
    return ''
  return '\n'.join('    ' + l for l in lines[-n:])


def write_results(experiment, root, out=None) -> aggregate.Results:
  """results.csv, table.md and the plots into `root`, from whatever runs have finished."""
  out = out or sys.stdout
  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  results = aggregate.collect(experiment, root)
  aggregate.write_csv(results, root / aggregate.CSV)
  aggregate.write_records(results, root / aggregate.RECORDS)
  (root / aggregate.TABLE).write_text(aggregate.markdown(results, experiment), encoding='utf-8')
  written = [plot.name for plot in plots.write_all(results, root)]
  # A plot this aggregation did not draw (its runs are gone, or no longer count) would show runs
  # the table no longer has.
  for stale in {p for p in root.glob('*.png') if p.name not in written}:
    stale.unlink()
    stale.with_suffix('.svg').unlink(missing_ok=True)
  print(f'{len(results.rows)} of {len(experiment.runs)} runs finished; wrote '
        f'{", ".join([aggregate.CSV, aggregate.TABLE, *written])} in {root}', file=out)
  for run, state in results.missing:
    print(f'  missing: {run.name} ({state.describe()})', file=out)
  return results
