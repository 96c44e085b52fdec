"""PNG plots of a sweep's results (matplotlib, Agg backend), each mean ± std over seeds:

- `accuracy.png`: accuracy per method, a bar per method (grouped by the other facets);
- `robustness_snr.png`: accuracy vs the SNR of noise added to the audio (robustness evaluators);
- `robustness_missing.png`: accuracy with all modalities and with each one missing.
"""

import math
import pathlib
import re

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position

from experiments import aggregate  # pylint: disable=wrong-import-position

_CONDITION = re.compile(r'^([^/\[]+)\[([^\]]*)\]/accuracy$')
_NOISE = re.compile(r'^noise=(\w+),(\w+)=(-?[\d.]+)$')


def _save(fig, path) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=100, metadata={'Software': None})
  plt.close(fig)
  return pathlib.Path(path).name


def _series_label(key: tuple) -> str:
  return ', '.join(str(k) for k in key if k != '')


def _bars(ax, groups_, categories, stats, width=0.8):
  """Grouped bars: one group per category on the x axis, a bar per series."""
  n = max(len(groups_), 1)
  for i, series in enumerate(groups_):
    xs, means, errs = [], [], []
    for j, cat in enumerate(categories):
      entry = stats.get((series, cat))
      if entry is None:
        continue
      mean, std, _ = entry
      xs.append(j - width / 2 + (i + 0.5) * width / n)
      means.append(100 * mean)
      errs.append(0 if math.isnan(std) else 100 * std)
    ax.bar(xs, means, width / n, yerr=errs, capsize=2, label=_series_label(series) or None)
  ax.set_xticks(range(len(categories)))
  ax.set_xticklabels([_series_label(c) for c in categories], rotation=30, ha='right')
  ax.set_ylabel('accuracy (%)')
  ax.grid(axis='y', alpha=0.3)
  if any(_series_label(s) for s in groups_):
    ax.legend(fontsize='small')


def accuracy_plot(results, out_dir, metric: str | None = None) -> str | None:
  """Bars of the first accuracy column per method; other facets are the series."""
  rows = results.rows
  metrics = aggregate.metric_columns(rows)
  if not rows or not metrics:
    return None
  metric = metric or metrics[0]
  facets = results.facets
  summary = aggregate.summary(rows, ['method', *facets], metric)
  methods = list(aggregate.groups(rows, ['method']))
  series = list(aggregate.groups(rows, facets)) if facets else [()]
  stats = {(key[1:], key[:1]): value for key, value in summary.items()}
  fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(methods) * max(1, len(series) ** 0.5)), 4))
  _bars(ax, series, methods, stats)
  ax.set_title(f'{metric} (mean ± std over seeds)')
  return _save(fig, pathlib.Path(out_dir) / 'accuracy.png')


def _conditions(rows):
  """{evaluator: [condition, ...]} of the columns with conditions, in first-seen order."""
  out = {}
  for metric in aggregate.metric_columns(rows):
    match = _CONDITION.match(metric)
    if match:
      out.setdefault(match.group(1), []).append(match.group(2))
  return out


def robustness_plots(results, out_dir) -> list[str]:
  rows, facets = results.rows, results.facets
  written = []
  for evaluator, conditions in _conditions(rows).items():
    keys = ['method', *facets]
    series = list(aggregate.groups(rows, keys))
    col = lambda c: f'{evaluator}[{c}]/accuracy'
    noise = {}
    for c in conditions:
      match = _NOISE.match(c)
      if match:
        noise.setdefault((match.group(1), match.group(2)), []).append((float(match.group(3)), c))
    for (modality, kind), levels in noise.items():
      levels.sort(reverse=True)
      fig, ax = plt.subplots(figsize=(6, 4))
      base = aggregate.summary(rows, keys, col('all')) if 'all' in conditions else {}
      for s in series:
        points = [(level, aggregate.summary(rows, keys, col(c)).get(s)) for level, c in levels]
        points = [(x, e) for x, e in points if e is not None]
        xs = [x for x, _ in points]
        ys = [100 * e[0] for _, e in points]
        errs = [0 if math.isnan(e[1]) else 100 * e[1] for _, e in points]
        line = ax.errorbar(xs, ys, yerr=errs, marker='o', capsize=3, label=_series_label(s))
        if s in base:
          ax.axhline(100 * base[s][0], color=line[0].get_color(), ls=':', lw=1)
      ax.set_xlabel(f'{kind} of the noise added to the {modality} (dotted: none added)')
      ax.set_ylabel('accuracy (%)')
      ax.invert_xaxis()
      ax.grid(alpha=0.3)
      ax.legend(fontsize='small')
      ax.set_title(f'Extra {modality} noise (mean ± std over seeds)')
      suffix = '' if len(noise) == 1 else f'_{modality}'
      written.append(_save(fig, pathlib.Path(out_dir) / f'{evaluator}_snr{suffix}.png'))
    shown = [c for c in conditions if c == 'all' or c.startswith('missing=')]
    if len(shown) > 1:
      stats = {}
      for c in shown:
        for key, value in aggregate.summary(rows, keys, col(c)).items():
          stats[(key, (c,))] = value
      fig, ax = plt.subplots(figsize=(6, 4))
      _bars(ax, series, [(c,) for c in shown], stats)
      ax.set_title('Each modality missing (mean ± std over seeds)')
      written.append(_save(fig, pathlib.Path(out_dir) / f'{evaluator}_missing.png'))
  return written


def write_all(results, out_dir) -> list[str]:
  """Every plot the results support; returns the file names written."""
  written = []
  name = accuracy_plot(results, out_dir)
  if name:
    written.append(name)
  return written + robustness_plots(results, out_dir)
