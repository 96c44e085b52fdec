"""Results of a sweep from its runs' workdirs: `results.csv` (one row per finished run) and
`table.md` (mean ± std and n over seeds, per method and metric), read from each run's
`metrics.jsonl` and `config.json` only. Works on partial results: unfinished runs are listed.

Metric columns are `<evaluator>/<metric>` (the evaluator's lines at the last step), or
`<evaluator>[<condition>]/<metric>` for evaluators with conditions (robustness), plus
`train/loss`, `train/accuracy` (the last logged interval), `train/examples_per_sec` (mean over
logged intervals after the first, which includes compilation) and `wall_s` (the seconds the
sweep timed the run's attempts, from `logs/timings.jsonl`, when it launched them).
"""

import csv
import dataclasses
import json
import math
import pathlib
import re

from experiments import runs as runs_lib

RUNS_DIR = 'runs'
CSV = 'results.csv'
TABLE = 'table.md'
TIMINGS = 'timings.jsonl'
# The table's metrics: an evaluator's (single-task) accuracy.
ACCURACY = re.compile(r'^(?!train[/\[])[^/\[]+(\[[^\]]*\])?/accuracy$')


def workdir(root, run: runs_lib.Run) -> pathlib.Path:
  return pathlib.Path(root) / RUNS_DIR / run.name


def record_time(root, run: runs_lib.Run, seconds: float, exit_status: int, start: float,
                jobs: int = 1) -> None:
  """Appends one attempt to <root>/logs/timings.jsonl (the sweep's own record): its wall time,
  when it started (epoch seconds) and how many runs the sweep ran at a time."""
  path = pathlib.Path(root) / 'logs' / TIMINGS
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'a', encoding='utf-8') as f:
    f.write(json.dumps({'run': run.name, 'seconds': round(seconds, 1), 'exit': exit_status,
                        'start': round(start, 1), 'jobs': jobs}) + '\n')


def _attempts(root) -> list[dict]:
  path = pathlib.Path(root) / 'logs' / TIMINGS
  return list(runs_lib.read_jsonl(path)) if path.exists() else []


def wall_times(root) -> dict[str, float]:
  """{run name: seconds over all its attempts} from <root>/logs/timings.jsonl."""
  out = {}
  for line in _attempts(root):
    out[line['run']] = out.get(line['run'], 0.0) + line['seconds']
  return out


def elapsed(root, names) -> tuple[float, int]:
  """(seconds during which at least one attempt of the runs `names` was running, the most runs
  the sweep ran at a time): the union of the attempts' intervals, so runs in parallel count
  once and the gaps between sweep invocations not at all. Attempts recorded without a start
  time count as run one after another."""
  intervals, serial, jobs = [], 0.0, 1
  for line in _attempts(root):
    if line['run'] not in names:
      continue
    jobs = max(jobs, int(line.get('jobs', 1)))
    if 'start' in line:
      intervals.append((line['start'], line['start'] + line['seconds']))
    else:
      serial += line['seconds']
  total, end = 0.0, -math.inf
  for lo, hi in sorted(intervals):
    total += max(0.0, hi - max(lo, end))
    end = max(end, hi)
  return serial + total, jobs


def run_metrics(lines: list[dict], total: int) -> dict:
  """{column: value} from one run's metrics.jsonl lines (see the module docstring)."""
  out = {}
  train = [l for l in lines if l.get('split') == 'train']
  if train:
    last = train[-1]
    for key in ('loss', 'accuracy'):
      if isinstance(last.get(key), (int, float)):
        out[f'train/{key}'] = last[key]
    speeds = [l['examples_per_sec'] for l in train[1:] if 'examples_per_sec' in l]
    if speeds:
      out['train/examples_per_sec'] = sum(speeds) / len(speeds)
  for line in lines:
    if line.get('step') != total or line.get('split') in (None, 'train'):
      continue
    prefix = line['split'] + (f'[{line["condition"]}]' if 'condition' in line else '')
    for key, value in line.items():
      if key in ('step', 'split', 'condition') or isinstance(value, bool):
        continue
      if isinstance(value, (int, float)):
        out[f'{prefix}/{key}'] = value
  return out


@dataclasses.dataclass
class Results:
  rows: list[dict]                 # finished runs
  missing: list[tuple]             # (run, runs.Progress) of every other run
  facets: list[str]                # facet names, in the experiment's order
  elapsed_s: float = 0.0           # wall time of the finished runs' attempts (`elapsed`)
  jobs: int = 1                    # the most runs the sweep ran at a time


def collect(experiment, root) -> Results:
  rows, missing, facets = [], [], []
  times = wall_times(root)
  for run in experiment.runs:
    facets += [f for f in run.facets if f not in facets]
    wd = workdir(root, run)
    state = runs_lib.progress(run, wd)
    if state.state != 'finished':
      missing.append((run, state))
      continue
    rows.append({'experiment': experiment.name, 'method': run.label, **run.facets,
                 'seed': run.seed, 'run': run.name, 'config': run.config,
                 'overrides': json.dumps(run.overrides, sort_keys=True), 'step': state.total,
                 **({'wall_s': times[run.name]} if run.name in times else {}),
                 **run_metrics(runs_lib.read_metrics(wd), state.total)})
  return Results(rows, missing, facets,
                 *elapsed(root, {r['run'] for r in rows if 'wall_s' in r}))


def write_csv(results: Results, path) -> None:
  columns = []
  for row in results.rows:
    columns += [k for k in row if k not in columns]
  with open(path, 'w', newline='', encoding='utf-8') as f:
    writer = csv.DictWriter(f, fieldnames=columns, lineterminator='\n')
    writer.writeheader()
    writer.writerows(results.rows)


def read_csv(path) -> list[dict]:
  """results.csv back as dicts, numbers as floats (empty cells left out)."""
  with open(path, newline='', encoding='utf-8') as f:
    rows = list(csv.DictReader(f))
  def value(k, v):
    if k in ('seed', 'step'):
      return int(v)
    try:
      return float(v) if k not in ('experiment', 'method', 'run', 'config', 'overrides') else v
    except ValueError:
      return v
  return [{k: value(k, v) for k, v in row.items() if v != ''} for row in rows]


# ------------------------------------------------------------------------------------------------
# Statistics


def mean_std(values: list[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (n - 1); std is NaN for a single value."""
  n = len(values)
  mean = sum(values) / n
  if n < 2:
    return mean, math.nan
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def metric_columns(rows: list[dict]) -> list[str]:
  columns = []
  for row in rows:
    columns += [k for k in row if ACCURACY.match(k) and k not in columns]
  return columns


def groups(rows: list[dict], keys: list[str]) -> dict[tuple, list[dict]]:
  """Rows by the values of `keys`, in first-seen order."""
  out = {}
  for row in rows:
    out.setdefault(tuple(row.get(k, '') for k in keys), []).append(row)
  return out


def summary(rows: list[dict], keys: list[str], metric: str) -> dict[tuple, tuple]:
  """{group: (mean, std, n)} of `metric` over the rows of each group that have it."""
  out = {}
  for key, members in groups(rows, keys).items():
    values = [r[metric] for r in members if isinstance(r.get(metric), (int, float))]
    if values:
      out[key] = (*mean_std(values), len(values))
  return out


# ------------------------------------------------------------------------------------------------
# table.md


def percent(mean: float, std: float) -> str:
  if math.isnan(std):
    return f'{100 * mean:.1f}'
  return f'{100 * mean:.1f} ± {100 * std:.1f}'


def _metric_label(metric: str) -> str:
  """'test/accuracy' → 'test', 'robustness[missing=audio]/accuracy' → 'missing=audio'."""
  match = re.match(r'^([^/\[]+)(?:\[([^\]]*)\])?/accuracy$', metric)
  return match.group(2) or match.group(1) if match else metric


def table(results: Results, columns: str | None = None) -> str:
  """Markdown: a row per method (and facet values), accuracy in % as mean ± std over seeds, and
  n, the number of finished runs behind each cell ('2–3' where cells differ).

  With `columns` (a facet), that facet's values become column groups.
  """
  rows = results.rows
  row_keys = ['method', *[f for f in results.facets if f != columns]]
  metrics = metric_columns(rows)
  col_values = [k[0] for k in groups(rows, [columns])] if columns else [None]
  cells, header = [], []
  for cv in col_values:
    for metric in metrics:
      label = _metric_label(metric)
      header.append(label if cv is None else cv if len(metrics) == 1 else f'{cv} {label}')
      cells.append((() if cv is None else (cv,), metric))
  stats = {m: summary(rows, row_keys + ([columns] if columns else []), m) for m in metrics}
  lines = ['| ' + ' | '.join([*row_keys, *header, 'n']) + ' |',
           '|' + '---|' * len(row_keys) + '---:|' * (len(header) + 1)]
  for key in groups(rows, row_keys):
    out, counts = [str(k) for k in key], []
    for cv, metric in cells:
      entry = stats[metric].get(key + cv)
      out.append('—' if entry is None else percent(entry[0], entry[1]))
      counts += [] if entry is None else [entry[2]]
    lo, hi = min(counts, default=0), max(counts, default=0)
    out.append(str(hi) if lo == hi else f'{lo}–{hi}')
    lines.append('| ' + ' | '.join(out) + ' |')
  return '\n'.join(lines)


def missing_note(results: Results, total: int) -> str:
  if not results.missing:
    return f'All {total} runs finished.'
  items = '; '.join(f'`{run.name}` ({state.describe()})' for run, state in results.missing)
  return f'{len(results.missing)} of {total} runs not finished: {items}.'


def markdown(results: Results, experiment) -> str:
  """table.md: what ran on what budget, the table (or that no run has finished), what is missing."""
  total = len(experiment.runs)
  body = (table(results, experiment.columns) if results.rows else
          'No run has finished yet.')
  return '\n\n'.join([
      f'Accuracy (%) at the end of training, mean ± std over seeds (n runs), from\n'
      f'`{experiment.command}`.',
      wrap(f'Budget: {experiment.budget}.'),
      body,
      wrap(missing_note(results, total) + wall_note(results))]) + '\n'


def wrap(text: str, width: int = 100) -> str:
  """A paragraph wrapped at `width` columns, never inside a word or a `code span`."""
  words = re.findall(r'`[^`]*`\S*|\S+', text)
  lines, line = [], ''
  for word in words:
    if line and len(line) + 1 + len(word) > width:
      lines.append(line)
      line = word
    else:
      line = f'{line} {word}' if line else word
  return '\n'.join(lines + [line])


def wall_note(results: Results) -> str:
  timed = [r['wall_s'] for r in results.rows if 'wall_s' in r]
  if not timed:
    return ''
  how = ('one after another.' if results.jobs == 1 else
         f'up to {results.jobs} at a time (`--jobs={results.jobs}`; {sum(timed) / 60:.0f} min '
         'summed over the runs).')
  return (f' Wall time of the {len(timed)} finished runs the sweep timed: '
          f'{results.elapsed_s / 60:.0f} min, {how}')
