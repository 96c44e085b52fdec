"""Results of a sweep from its runs' workdirs: `results.csv` (one row per finished run) and
`table.md` (mean ± std and n over seeds, per method and metric), read from each run's
`metrics.jsonl` and `config.json` only. Works on partial results: unfinished runs are listed.

Workdirs are not kept with the results, so `records.jsonl` is: one line per finished run with its
config.json, datasets.json, environment.jsonl (the libraries, devices and CPU it trained on: a
retrain elsewhere drifts in the last bits), final step, row, training curves and timed attempts.
A run with no workdir (a fresh clone, another machine) counts as finished by its record, as long
as the record is of the run as it resolves now (runs.record_conflict): the sweep skips it and the
results keep it. A record of another config is ignored, and the run trains again. A workdir, once
begun, is what counts: an interrupted one resumes, and what it finishes replaces the record.

Metric columns are `<evaluator>/<metric>` (the evaluator's lines at the last step), or
`<evaluator>[<condition>]/<metric>` for evaluators with conditions (robustness), plus
`train/loss`, `train/accuracy` (the last logged interval), `train/examples_per_sec` (mean over
logged intervals after the first, which includes compilation) and `wall_s` (the seconds the
sweep timed the run's attempts, from `logs/timings.jsonl`, when it launched them).

Every row also carries its health (mmjax.health): `chance`, `inert` (the modalities the run does
not use, `;`-separated), `diverged` (1 when its loss went non-finite or it ended at chance) and
`healthy` (1 when neither); where the data's PID was measured, a unimodal run's `uninformed` is 1
when its modality carries no information about the label (chance is then its ceiling, not a
divergence); a run of 0 steps, which evaluates its initialisation, has `untrained` 1 and only a
non-finite loss counts against it. A run that stopped on a non-finite loss is a row too, with no
accuracy. Tables give, beside mean ± std over every run, the minimum over seeds, every seed's
figure and how many runs are healthy: a mean hides a collapsed seed.
"""

import csv
import dataclasses
import json
import math
import pathlib
import re

from experiments import runs as runs_lib
from mmjax import health as health_lib

RUNS_DIR = 'runs'
CSV = 'results.csv'
TABLE = 'table.md'
RECORDS = 'records.jsonl'
TIMINGS = 'timings.jsonl'
# The table's metrics: an evaluator's (single-task) accuracy; not training's, nor validation's,
# which selects the state the others score (its last line is the last state's).
ACCURACY = re.compile(r'^(?!(?:train|validation)[/\[])[^/\[]+(\[[^\]]*\])?/accuracy$')
_CONDITION = re.compile(r'^[^/\[]+\[([^\]]*)\]/accuracy$')
# A chance level measured on the data (the pid evaluator's: the most frequent label's share),
# which replaces 1 / num_classes where the labels do not use every class alike.
_DATA_CHANCE = re.compile(r'^[^/\[]+\[labels\]/chance$')
TEXT_COLUMNS = ('experiment', 'method', 'run', 'config', 'overrides', 'inert')
INERT_MARK, DIVERGED_MARK = '†', '‡'  # beside a seed's figure in tables


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


def read_attempts(root) -> dict[str, list[dict]]:
  """{run name: its attempts} from <root>/logs/timings.jsonl."""
  out = {}
  for line in runs_lib.read_jsonl(pathlib.Path(root) / 'logs' / TIMINGS):
    out.setdefault(line['run'], []).append(line)
  return out


def elapsed(attempts: list[dict]) -> tuple[float | None, int]:
  """(seconds during which at least one of `attempts` was running, the most runs the sweep ran
  at a time): the union of the attempts' intervals, so runs in parallel count once and the gaps
  between sweep invocations not at all; None where an attempt has no start time recorded."""
  intervals, jobs = [], 1
  for line in attempts:
    jobs = max(jobs, int(line.get('jobs', 1)))
    if 'start' not in line:
      return None, jobs
    intervals.append((line['start'], line['start'] + line['seconds']))
  total, end = 0.0, -math.inf
  for lo, hi in sorted(intervals):
    total += max(0.0, hi - max(lo, end))
    end = max(end, hi)
  return total, jobs


def read_records(experiment, root) -> dict[str, dict]:
  """{run name: its record} from <root>/records.jsonl, and from those of the experiments it
  shares runs with (their directories beside `root`) for runs it has no record of."""
  roots = [pathlib.Path(root)] + [
      pathlib.Path(root).parent / f'{other}{"-quick" if experiment.quick else ""}'
      for other in experiment.shares_runs_with]
  out = {}
  for where in reversed(roots):  # its own records last: they win
    out.update({r['run']: r for r in runs_lib.read_jsonl(where / RECORDS)})
  return out


def status(run: runs_lib.Run, root, records: dict) -> tuple[runs_lib.Progress, dict | None]:
  """Where a run stands, and its record where that is what finished it: its workdir's progress,
  or 'recorded' where it has no workdir and `records` holds this run. A record of another config
  or data leaves it 'not started', with what differs."""
  state = runs_lib.progress(run, workdir(root, run))
  record = records.get(run.name)
  if state.state != 'not started' or record is None:
    return state, None
  conflict = runs_lib.record_conflict(run, record, RECORDS)
  if conflict:
    return dataclasses.replace(state, detail=f'{conflict}: it trains again'), None
  return runs_lib.Progress('recorded', record['step'], record['total']), record


def run_metrics(lines: list[dict], total: int) -> dict:
  """{column: value} from one run's metrics.jsonl lines (see the module docstring); the final
  evaluators' lines are those at step `total`."""
  out = {}
  # (the lines that mark a stop, `stopped_early` or `stopped_nonfinite`, hold no figures)
  train = [l for l in lines if l.get('split') == 'train' and 'loss' in l]
  if train:
    last = train[-1]
    for key in ('loss', 'accuracy'):
      if isinstance(last.get(key), (int, float)):
        out[f'train/{key}'] = last[key]
    speeds = [l['examples_per_sec'] for l in train[1:] if 'examples_per_sec' in l]
    if speeds:
      out['train/examples_per_sec'] = sum(speeds) / len(speeds)
  during = {}  # an evaluator run during training too: its best accuracy over the run
  for line in lines:
    split = line.get('split')
    if split not in (None, 'train') and 'condition' not in line and \
        isinstance(line.get('accuracy'), (int, float)):
      during.setdefault(split, []).append(line['accuracy'])
  out.update({f'{split}/best_accuracy': max(v) for split, v in during.items() if len(v) > 1})
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
  elapsed_s: float | None = 0.0    # wall time of the finished runs' attempts (`elapsed`)
  jobs: int = 1                    # the most runs the sweep ran at a time
  metrics: re.Pattern = ACCURACY   # the columns tables and plots show
  # {run name: {series: [(step, value), ...]}}: the selecting evaluator's accuracy and each
  # encoder's gradient norm over training (`curves`), for the training-curves plot
  curves: dict = dataclasses.field(default_factory=dict)
  records: list[dict] = dataclasses.field(default_factory=list)  # records.jsonl's lines


def collect(experiment, root) -> Results:
  rows, missing, facets, curves, records, timed_attempts = [], [], [], {}, [], []
  saved, timed = read_records(experiment, root), read_attempts(root)
  for run in experiment.runs:
    facets += [f for f in run.facets if f not in facets]
    state, record = status(run, root, saved)
    if state.state in ('finished', 'diverged'):
      record = _record(run, workdir(root, run), state, timed.get(run.name, []))
    elif record is None:
      missing.append((run, state))
      continue
    # Who the run is comes from the experiment now (labels may have changed); what it scored,
    # from its record.
    row = {'experiment': experiment.name, 'method': run.label, **run.facets,
           'seed': run.seed, 'run': run.name, 'config': run.config,
           'overrides': json.dumps(run.overrides, sort_keys=True), 'step': record['step'],
           **({'wall_s': sum(a['seconds'] for a in record['attempts'])}
              if record.get('attempts') else {}), **record['row']}
    rows.append({**row, **health_columns(row, record['config'], record['state'] == 'diverged')})
    curves[run.name] = record.get('curves') or {}
    records.append(record)
    timed_attempts += record.get('attempts') or []
  return Results(rows, missing, facets, *elapsed(timed_attempts),
                 re.compile(experiment.metrics) if experiment.metrics else ACCURACY, curves,
                 records)


def _record(run: runs_lib.Run, wd, state: runs_lib.Progress, attempts: list[dict]) -> dict:
  """What `records.jsonl` keeps of a run its workdir finished (see the module docstring)."""
  lines = runs_lib.read_metrics(wd)
  # A finished run's final lines are at its last step (before num_train_steps when it
  # stopped early).
  metrics = run_metrics(lines, state.step if state.state == 'finished' else state.total)
  return {'run': run.name, 'state': state.state, 'step': state.step, 'total': state.total,
          'config': runs_lib.read_config(wd), 'datasets': runs_lib.read_datasets(wd),
          'environment': runs_lib.read_environment(wd), 'row': metrics,
          'curves': run_curves(lines), 'attempts': attempts}


def write_records(results: Results, path) -> None:
  with open(path, 'w', encoding='utf-8') as f:
    f.writelines(json.dumps(r) + '\n' for r in results.records)  # the row's column order kept


def run_curves(lines: list[dict]) -> dict:
  """{'validation': [(step, accuracy)], 'grad_norm/<modality>': [(step, mean norm)]} of one
  run's metrics.jsonl lines: the validation evaluator's accuracy during training and each
  encoder's gradient norm per logged interval."""
  out = {}
  for line in lines:
    if line.get('split') == 'validation' and isinstance(line.get('accuracy'), (int, float)):
      out.setdefault('validation', []).append((line['step'], line['accuracy']))
    elif line.get('split') == 'train':
      for key, value in line.items():
        if key.startswith('grad_norm/') and isinstance(value, (int, float)):
          out.setdefault(key, []).append((line['step'], value))
  return out


def health_columns(row: dict, config: dict, nonfinite: bool) -> dict:
  """`chance`, `inert`, `diverged` and `healthy` of a run (see the module docstring) from its
  metric columns and config.json: the conditions of its robustness evaluator, or its headline
  accuracy alone where it has none."""
  accuracy = {}
  for key, value in row.items():
    match = _CONDITION.match(key)
    if match and isinstance(value, (int, float)):
      accuracy[match.group(1)] = value
  headline = [k for k in row if ACCURACY.match(k) and not _CONDITION.match(k)]
  if 'all' not in accuracy and headline:
    accuracy['all'] = row[headline[0]]
  tasks = config.get('tasks') or {}
  classes = [t.get('num_classes') for t in tasks.values()] if len(tasks) == 1 else []
  chance = health_lib.chance_level(classes[0]) if classes and classes[0] else None
  measured = [v for k, v in row.items() if _DATA_CHANCE.match(k) and isinstance(v, (int, float))]
  chance = measured[0] if measured else chance
  modalities = list((config.get('model') or {}).get('encoders') or
                    [c.split('=', 1)[1] for c in accuracy if c.startswith('missing=')])
  # A model of one modality that carries no information about the label (the data's PID: no
  # redundancy and no uniqueness in it, as on the synergy probe) has chance as its ceiling:
  # ending there is no sign of a failed run.
  seen = _information(row, modalities)
  blind = seen is not None and seen < UNINFORMED_BITS
  if blind:
    accuracy.pop('all', None)
  # A run of 0 steps evaluates its initialisation (gradient blending's first checkpoint): chance
  # is what it should score, so nothing but a non-finite loss is judged.
  untrained = config.get('num_train_steps') == 0
  if untrained:
    accuracy = {}
  # Without one task's chance level, only a non-finite loss can be judged.
  found = health_lib.check(accuracy if chance is not None else {}, modalities, chance or 0.0,
                           nonfinite)
  return {'chance': chance if chance is not None else '', 'inert': ';'.join(found.inert),
          'diverged': int(found.diverged), 'healthy': int(found.healthy),
          **({'uninformed': int(blind)} if seen is not None else {}),
          **({'untrained': 1} if untrained else {})}


# Bits below which a modality counts as carrying nothing: the PID's plug-in estimates read ~0.015
# bits from independent ten-class latents over 4,000 test examples ((10-1)² / (2 N ln 2)).
UNINFORMED_BITS = 0.05
_LABEL_PID = re.compile(r'^[^/\[]+\[labels\]/(redundancy|unique_\w+)$')


def _information(row: dict, modalities: list[str]) -> float | None:
  """Bits the label shares with the one modality a unimodal run sees (redundancy + that
  modality's uniqueness, from the pid evaluator's `labels` line); None for other runs."""
  parts = {m.group(1): v for k, v in row.items() for m in [_LABEL_PID.match(k)] if m}
  if len(modalities) != 1 or 'redundancy' not in parts:
    return None
  return parts['redundancy'] + parts.get(f'unique_{modalities[0]}', 0.0)


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
      return float(v) if k not in TEXT_COLUMNS else v
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


HEADLINE = 'test/accuracy'  # the first column, where a run has it: min and per seed read it


def metric_columns(rows: list[dict], pattern: re.Pattern = ACCURACY) -> list[str]:
  """The columns a table shows: those matching `pattern` (an experiment's `metrics`), the
  headline first."""
  columns = []
  for row in rows:
    columns += [k for k in row if pattern.match(k) and k not in columns]
  return sorted(columns, key=lambda k: k != HEADLINE)


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
  """'test/accuracy' → 'test', 'robustness[missing=audio]/accuracy' → 'missing=audio',
  'test/ogm/audio/accuracy' → 'audio branch', 'retrieval/audio_to_image/class/R@1' →
  'audio→image class R@1', 'probe[features=audio]/accuracy' → 'probe on audio',
  'validation/best_accuracy' → 'validation (best)'."""
  branch = re.match(r'^[^/\[]+/ogm/(\w+)/accuracy$', metric)
  if branch:  # OGM-GE's branch through the fused head: 'test/ogm/audio/accuracy' → 'audio branch'
    return f'{branch.group(1)} branch'
  recall = re.match(r'^[^/\[]+/(\w+)_to_(\w+)/(class|pair)/R@(\d+)$', metric)
  if recall:  # retrieval: 'retrieval/audio_to_image/class/R@1' → 'audio→image class R@1'
    return f'{recall.group(1)}→{recall.group(2)} {recall.group(3)} R@{recall.group(4)}'
  probe = re.match(r'^[^/\[]+\[features=(\w+)\]/accuracy$', metric)
  if probe:  # a linear probe: 'probe[features=audio]/accuracy' → 'probe on audio'
    return f'probe on {probe.group(1)}'
  match = re.match(r'^([^/\[]+)(?:\[([^\]]*)\])?/(best_)?accuracy$', metric)
  if not match:
    return metric
  return match.group(2) or match.group(1) + (' (best)' if match.group(3) else '')


def _seed_figures(members: list[dict], metric: str) -> str:
  """Every seed's figure in seed order, marked † where the run is inert in a modality and ‡
  where it diverged."""
  out = []
  for row in sorted(members, key=lambda r: r.get('seed', 0)):
    value = row.get(metric)
    mark = DIVERGED_MARK if row.get('diverged') else INERT_MARK if row.get('inert') else ''
    out.append(('—' if not isinstance(value, (int, float)) else f'{100 * value:.1f}') + mark)
  return ' '.join(out)


def _healthy(members: list[dict]) -> str:
  return f'{sum(1 for r in members if r.get("healthy", 1))}/{len(members)}'


def table(results: Results, columns: str | None = None) -> str:
  """Markdown: a row per method (and facet values), accuracy in % as mean ± std over seeds, the
  headline metric's (the first column's) minimum and every seed's figure, the healthy runs out
  of all, and n, the number of runs with a figure behind each cell ('2–3' where cells differ).

  With `columns` (a facet), that facet's values become column groups, each cell with its
  minimum over seeds.
  """
  rows = results.rows
  row_keys = ['method', *[f for f in results.facets if f != columns]]
  metrics = metric_columns(rows, results.metrics)
  col_values = [k[0] for k in groups(rows, [columns])] if columns else [None]
  cells, header = [], []
  for cv in col_values:
    for metric in metrics:
      label = _metric_label(metric)
      header.append(label if cv is None else cv if len(metrics) == 1 else f'{cv} {label}')
      cells.append((() if cv is None else (cv,), metric))
  extra = ['min', 'per seed'] if columns is None and metrics else []
  stats = {m: summary(rows, row_keys + ([columns] if columns else []), m) for m in metrics}
  lines = ['| ' + ' | '.join([*row_keys, *header, *extra, 'healthy', 'n']) + ' |',
           '|' + '---|' * len(row_keys) + '---:|' * (len(header) + len(extra) + 2)]
  for key, members in groups(rows, row_keys).items():
    out, counts = [str(k) for k in key], []
    for cv, metric in cells:
      entry = stats[metric].get(key + cv)
      text = '—' if entry is None else percent(entry[0], entry[1])
      if entry is not None and columns is not None and entry[2] > 1:
        cell_rows = [r for r in members if r.get(columns) == cv[0]]
        text += f', min {100 * min(r[metric] for r in cell_rows if metric in r):.1f}'
      out.append(text)
      counts += [] if entry is None else [entry[2]]
    if extra:
      values = [r[metrics[0]] for r in members if isinstance(r.get(metrics[0]), (int, float))]
      out += [f'{100 * min(values):.1f}' if values else '—', _seed_figures(members, metrics[0])]
    lo, hi = min(counts, default=0), max(counts, default=0)
    out += [_healthy(members), str(hi) if lo == hi else f'{lo}–{hi}']
    lines.append('| ' + ' | '.join(out) + ' |')
  return '\n'.join(lines)


def paired_differences(results: Results, baseline: str | None, paired_on: tuple = (),
                       baseline_facets: tuple = ()) -> dict[tuple, dict]:
  """{group (method and facets): {'seeds': [...], 'diffs': [...] in points, 'mean', 'low', 'high'}}:
  each group's headline metric minus its baseline's on the same seed (and the same values of the
  facets `paired_on`), for every seed both have, with a 95% t-interval of the mean difference
  (None below two pairs). The baseline is the method `baseline`; or, with `baseline_facets`
  ((facet, value), ...), each method's own runs with those values, compared with that method's
  other runs (only `baseline`'s where one is named)."""
  from scipy import stats  # pylint: disable=import-outside-toplevel
  keys = ['method', *results.facets]
  rows = [r for r in results.rows if isinstance(r.get(HEADLINE), (int, float))]
  # With baseline facets a method pairs with its own runs, else every method with `baseline`'s.
  pair = lambda r: (r['method'] if baseline_facets else None, r['seed'],
                    *(r.get(f) for f in paired_on))
  if baseline_facets:
    is_base = lambda r: all(r.get(f) == v for f, v in baseline_facets)
    compared = [r for r in rows if not is_base(r) and baseline in (None, r['method'])]
  else:
    is_base = lambda r: r['method'] == baseline
    compared = [r for r in rows if not is_base(r)]
  base = {pair(r): r for r in rows if is_base(r)}
  trained_on = {record['run']: _trained_on(record) for record in results.records}
  elsewhere = lambda a, b: None not in (trained_on.get(a.get('run')), trained_on.get(
      b.get('run'))) and trained_on[a['run']] != trained_on[b['run']]
  out = {}
  for key, members in groups(compared, keys).items():
    pairs = sorted((r['seed'], 100 * (r[HEADLINE] - base[pair(r)][HEADLINE]),
                    elsewhere(r, base[pair(r)])) for r in members if pair(r) in base)
    if not pairs:
      continue
    diffs = [d for _, d, _ in pairs]
    mean, std = mean_std(diffs)
    half = (stats.t.ppf(0.975, len(diffs) - 1) * std / math.sqrt(len(diffs))
            if len(diffs) > 1 else None)
    out[key] = {'seeds': [s for s, _, _ in pairs], 'diffs': diffs, 'mean': mean,
                'low': None if half is None else mean - half,
                'high': None if half is None else mean + half,
                'elsewhere': sum(e for _, _, e in pairs)}
  return out


def _trained_on(record: dict) -> frozenset | None:
  """Where a run trained: its environment.jsonl lines without their steps (None where it
  predates the file). Two runs trained on different CPUs or library versions round differently."""
  lines = record.get('environment')
  if not lines:
    return None
  return frozenset(json.dumps({k: v for k, v in line.items() if k != 'step'}, sort_keys=True)
                   for line in lines)


def paired_table(results: Results, baseline: str | None, paired_on: tuple = (),
                 baseline_facets: tuple = ()) -> str:
  """Markdown: each group's test accuracy minus its baseline's on the same seed (see
  `paired_differences`)."""
  keys = ['method', *results.facets]
  found = paired_differences(results, baseline, paired_on, baseline_facets)
  if not found:
    return ''
  which = ', '.join(f'{facet} {value}' for facet, value in baseline_facets)
  same = ''.join(f' and {facet}' for facet in paired_on) if baseline_facets else ''
  whom = (f'`{baseline}`' + (f', {which}' if which else '') if baseline else
          f"each method's own runs with {which},")
  lines = [wrap(f'Difference from {whom} on the same seed{same} (test accuracy, points): every '
                "seed's, the mean and its 95% t-interval."), '',
           '| ' + ' | '.join([*keys, 'per seed', 'mean', '95% interval', 'pairs']) + ' |',
           '|' + '---|' * len(keys) + '---:|' * 4]
  for key, d in found.items():
    interval = '—' if d['low'] is None else f'[{d["low"]:+.1f}, {d["high"]:+.1f}]'
    lines.append('| ' + ' | '.join([*map(str, key), ' '.join(f'{x:+.1f}' for x in d['diffs']),
                                    f'{d["mean"]:+.1f}', interval, str(len(d['diffs']))]) + ' |')
  apart = [f'{" ".join(map(str, key))}: {d["elsewhere"]} of {len(d["diffs"])}'
           for key, d in found.items() if d['elsewhere']]
  if apart:
    lines += ['', wrap('Pairs whose two runs trained on different CPUs or library versions '
                       f'(records.jsonl `environment`): {"; ".join(apart)}. A run trained again '
                       'elsewhere rounds differently and its figures drift, so these differences '
                       'hold that drift too.')]
  return '\n'.join(lines)


def health_note(results: Results) -> str:
  """What the marks mean and which runs are not healthy, by name."""
  bad = [r for r in results.rows if not r.get('healthy', 1)]
  if not results.rows or 'healthy' not in results.rows[0]:
    return ''
  # Among the runs judged for use at all (two modalities or more: they have `missing=` lines).
  swapped = [any('[swapped=' in k for k in r) for r in results.rows
             if any('[missing=' in k or '[swapped=' in k for k in r)]
  margin = f'{100 * health_lib.NOISE_MARGIN:.1f} point'
  swap = f"giving each example another example's modality moves accuracy by under {margin}"
  removal = (f'with the other modality removed within {100 * health_lib.CHANCE_MARGIN:.0f} '
             'points of chance')
  # mmjax.health: the swap decides where a run measured it, removal where it did not.
  usage = (swap if all(swapped) else removal if not any(swapped) else
           f'{swap} (runs that measured it; the {swapped.count(False)} that did not: {removal})')
  rules = (f'Healthy: neither inert ({INERT_MARK}: {usage}, or the strongest noise on it moves '
           f'accuracy by under {margin}) nor diverged ({DIVERGED_MARK}: a non-finite loss, or '
           f'within {100 * health_lib.CHANCE_MARGIN:.0f} points of chance with every modality).')
  blind = [r['run'] for r in results.rows if r.get('uninformed')]
  if blind:
    rules += (f' {len(blind)} {"run sees" if len(blind) == 1 else "runs see"} only a modality '
              'that carries no information about the '
              "label (in the data's PID, no redundancy and no uniqueness in it): chance is their "
              'ceiling, so ending there does not count as diverged: ' +
              '; '.join(f'`{name}`' for name in blind) + '.')
  untrained = [r['run'] for r in results.rows if r.get('untrained')]
  if untrained:
    one = len(untrained) == 1
    rules += (f' {len(untrained)} {"run evaluates its" if one else "runs evaluate their"} '
              f'initialisation (0 steps) and {"is" if one else "are"} not judged: ' +
              '; '.join(f'`{name}`' for name in untrained) + '.')
  if not bad:
    n = len(results.rows)
    return rules + (' The run is healthy.' if n == 1 else f' All {n} runs are healthy.')
  names = '; '.join(f'`{r["run"]}` (' + ', '.join(
      ([_inert_with_gradient(r, results.curves)] if r.get('inert') else []) +
      (['diverged'] if r.get('diverged') else [])) + ')' for r in bad)
  return (rules + f' {len(bad)} of {len(results.rows)} runs are not: {names}.' +
          _healthy_gradient_note(results, bad))


def remedies_note(results: Results, remedies: tuple[str, ...]) -> str:
  """Where the methods of runs that are not healthy are trained again with a fix."""
  if not remedies or all(r.get('healthy', 1) for r in results.rows):
    return ''
  names = [f'`--experiment={name}`' for name in remedies]
  listed = ' and '.join([', '.join(names[:-1]), names[-1]] if len(names) > 1 else names)
  return (f' Their methods are trained again on the same seeds with a remedy in {listed}, whose '
          'tables show these runs beside the remedied ones.')


# The first steps, where a branch that never learns shows it: its encoder's gradient collapses
# while the other's grows (the per-encoder norms each run logs, `grad_norm/<modality>`). Some
# runs revive later, so the last logged ratio is given beside the early minimum.
EARLY_STEPS = 600


def gradient_shares(curves: dict, modality: str) -> tuple[float, float] | None:
  """(smallest over the logged steps up to EARLY_STEPS, last logged) ratio of `modality`'s encoder
  gradient norm to the largest other encoder's; None for a run without those curves."""
  mine = {step: norm for step, norm in curves.get(f'grad_norm/{modality}', [])}
  others = [{step: norm for step, norm in points} for key, points in curves.items()
            if key.startswith('grad_norm/') and key != f'grad_norm/{modality}']
  ratios = [(s, mine[s] / top) for s in sorted(mine) if others
            and all(s in o for o in others) and (top := max(o[s] for o in others)) > 0]
  early = [ratio for s, ratio in ratios if s <= EARLY_STEPS]
  return (min(early), ratios[-1][1]) if early else None


def _inert_with_gradient(row: dict, curves: dict) -> str:
  """'inert in <modalities>', with each one's gradient figures where the run kept its curves."""
  inert = row['inert'].split(';')
  found = {m: gradient_shares(curves.get(row['run'], {}), m) for m in inert}
  return f'inert in {", ".join(inert)}' + ''.join(
      _gradient_story(m, early, last)
      for m, shares in found.items() if shares is not None for early, last in [shares])


def _gradient_story(modality: str, early: float, last: float) -> str:
  if early == 0:  # no gradient at all reaches the encoder: a dead one, not a weak one
    end = 'stayed 0 to the end' if last == 0 else f"was {last:.2g} of the other's at the end"
    return (f"; its {modality} encoder's gradient was exactly 0 within {EARLY_STEPS} steps (a "
            f'dead encoder) and {end}')
  return (f"; its {modality} encoder's gradient fell to {early:.2g} of the other encoder's "
          f'within {EARLY_STEPS} steps and was {last:.2g} of it at the end')


def _healthy_gradient_note(results: Results, bad: list[dict]) -> str:
  """For each modality some run is inert in: the same gradient figures of the healthy runs that
  kept their curves, for contrast."""
  notes = []
  for m in sorted({m for r in bad for m in r.get('inert', '').split(';') if m}):
    shares = [found for r in results.rows if r.get('healthy')
              and (found := gradient_shares(results.curves.get(r['run'], {}), m)) is not None]
    if shares:
      runs = 'healthy run' if len(shares) == 1 else 'healthy runs'
      notes.append(f"the {len(shares)} {runs} with curves: the {m} encoder's gradient fell "
                   f"to {min(e for e, _ in shares):.2g}-{max(e for e, _ in shares):.2g} of the "
                   f"other's within {EARLY_STEPS} steps and was {min(l for _, l in shares):.2g} "
                   f'of it or more at the end')
  return f' For contrast, {"; ".join(notes)}.' if notes else ''


def missing_note(results: Results, total: int) -> str:
  """All finished, or how many are not: those begun named with their state, the rest counted."""
  if not results.missing:
    return f'All {total} runs finished.'
  begun = [(run, state) for run, state in results.missing if state.state != 'not started']
  items = [f'`{run.name}` ({state.describe()})' for run, state in begun]
  waiting = len(results.missing) - len(begun)
  if waiting:
    items.append(f'{waiting} not started')
  return f'{len(results.missing)} of {total} runs not finished: {"; ".join(items)}.'


_PID = re.compile(r'^([^/\[]+)\[predictions\]/synergy$')


def interactions_table(results: Results, facet: str | None) -> str:
  """Markdown: for each value of `facet` (a probe), the data's partial information decomposition
  (a pid evaluator's `labels` line) and each method's predictions' (mean ± std over its runs), in
  bits, beside test accuracy; '' when no run measured one."""
  names = {m.group(1) for r in results.rows for k in r for m in [_PID.match(k)] if m}
  if not names or facet is None:
    return ''
  name = min(names)  # one pid evaluator per run
  rows = [r for r in results.rows if f'{name}[predictions]/synergy' in r]
  parts = ['redundancy', *sorted({k.split('/', 1)[1] for r in rows for k in r
                                  if k.startswith(f'{name}[labels]/unique_')}), 'synergy']
  labels = ['R', *[f'U {p[len("unique_"):]}' for p in parts[1:-1]], 'S',
            'S, labels at its accuracy']
  lines = [f'| {facet} | method | test accuracy (%), per seed | ' + ' | '.join(labels) + ' | n |',
           '|---|---|---:|' + '---:|' * (len(parts) + 2)]
  # (+ 0.0: a part the solver leaves a hair below 0 shows as 0.00, not -0.00)
  shown = lambda x: round(x, 2) + 0.0
  bits = lambda values: (f'{shown(mean_std(values)[0]):.2f}' if len(values) == 1 else
                         '{:.2f} ± {:.2f}'.format(*map(shown, mean_std(values))))
  for (value,), members in groups(rows, [facet]).items():
    data = [bits([members[0][f'{name}[labels]/{p}']]) for p in parts]
    lines.append(f'| {value} | data | — | ' + ' | '.join(data) + ' | — | |')
    null = f'{name}[labels_at_model_accuracy]/synergy'
    for (method,), runs in groups(members, ['method']).items():
      cells = [bits([r[f'{name}[predictions]/{p}'] for r in runs]) for p in parts]
      cells.append(bits([r[null] for r in runs if null in r]) if any(null in r for r in runs)
                   else '—')
      lines.append(f'| {value} | {method} | {_seed_figures(runs, HEADLINE)} | ' +
                   ' | '.join(cells) + f' | {len(runs)} |')
  return '\n'.join(lines)


def markdown(results: Results, experiment) -> str:
  """table.md: what ran on what budget, the table (or that no run has finished), what is missing."""
  total = len(experiment.runs)
  body = (table(results, experiment.columns) if results.rows else
          'No run has finished yet.')
  return '\n\n'.join(filter(None, [
      wrap(f'Accuracy (%), mean ± std over every run, the minimum over seeds and each seed\'s '
           f'figure, and how many runs are healthy, from `{experiment.command}`.'),
      wrap(f'Budget: {experiment.budget}.'),
      body,
      (paired_table(results, experiment.paired_with, experiment.paired_on,
                    experiment.paired_baseline)
       if experiment.paired_with or experiment.paired_baseline else ''),
      _with_caption(interactions_table(results, experiment.columns), (
          'What each model\'s predictions use, in bits: the partial information decomposition '
          '(redundancy R, uniqueness U of each modality, synergy S; `mmjax/pid.py`) of (image '
          'latent, audio latent; prediction) on the test split, beside the data\'s own (the '
          'label in place of the prediction). Errors alone put some information into S: the '
          'last column is S of the labels with as many of them wrong as the model got wrong, '
          'at random.')),
      wrap(health_note(results) + remedies_note(results, experiment.remedies)),
      wrap(missing_note(results, total) + wall_note(results))])) + '\n'


def _with_caption(table_text: str, caption: str) -> str:
  return f'{wrap(caption)}\n\n{table_text}' if table_text else ''


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
  summed = f'{sum(timed) / 60:.0f} min summed over the runs'
  if results.elapsed_s is None:  # some attempts were recorded without their start
    at_once = '' if results.jobs == 1 else f', up to {results.jobs} at a time'
    return f' Wall time of the {len(timed)} finished runs the sweep timed: {summed}{at_once}.'
  how = ('one after another.' if results.jobs == 1 else
         f'up to {results.jobs} at a time (`--jobs={results.jobs}`; {summed}).')
  return (f' Wall time of the {len(timed)} finished runs the sweep timed: '
          f'{results.elapsed_s / 60:.0f} min, {how}')
