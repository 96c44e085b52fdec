"""Plots of a sweep's results (matplotlib, Agg backend), every seed a point, each as a PNG to
read and an SVG beside it to scale or edit:

- `accuracy.png`: the headline accuracy per method, a bar at the mean of every run (grouped by
  the other facets) and a point per seed; inert and diverged runs drawn as crosses;
- `robustness_snr.png`: accuracy vs the SNR of noise added to the audio, from healthy runs only;
- `robustness_missing.png`: accuracy with all modalities and with each one missing, healthy runs
  only;
- `training_curves.png`: each seed's validation accuracy and encoder gradient norms through
  training.

Each draws chance and, where the sweep has unimodal runs, the best unimodal model as lines, keeps
the axis within 0-100% and labels its axes in words. Each function returns a `Plot`: the file
it wrote and the figures it drew, so that what a picture shows can be checked without reading
pixels.
"""

import dataclasses
import itertools
import pathlib
import re
import textwrap

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position

# SVG element ids come from this salt instead of a random one, so an unchanged plot rewrites the
# same bytes and a regenerated results folder shows no spurious changes.
plt.rcParams['svg.hashsalt'] = 'mmjax'

from experiments import aggregate  # pylint: disable=wrong-import-position

_CONDITION = re.compile(r'^([^/\[]+)\[([^\]]*)\]/accuracy$')
_NOISE = re.compile(r'^noise=(\w+),(\w+)=(-?[\d.]+)$')
UNIMODAL = 'unimodal_'  # methods whose name starts so are the single-modality baselines
_KINDS = {'snr_db': 'SNR (dB)', 'std': 'standard deviation'}


@dataclasses.dataclass
class Plot:
  """What one plot drew, in accuracy points (%).

  bars / curves: {series label: {x label or level: mean}}; points: (series label, x, value,
  status) per run, status 'healthy', 'inert' or 'diverged'; lines: {label: level} (chance, the
  best unimodal model); left_out: runs not drawn (not healthy), by name; where: {series label:
  {x label: the bar's centre on the x axis}} (the accuracy plot).
  """
  name: str
  bars: dict = dataclasses.field(default_factory=dict)
  where: dict = dataclasses.field(default_factory=dict)
  curves: dict = dataclasses.field(default_factory=dict)
  points: list = dataclasses.field(default_factory=list)
  lines: dict = dataclasses.field(default_factory=dict)
  left_out: list = dataclasses.field(default_factory=list)


def _save(fig, path) -> str:
  """`path` (PNG) and the same figure as SVG beside it; no date or version inside either."""
  fig.tight_layout()
  fig.savefig(path, dpi=100, metadata={'Software': None})
  fig.savefig(pathlib.Path(path).with_suffix('.svg'), metadata={'Date': None, 'Creator': None})
  plt.close(fig)
  return pathlib.Path(path).name


def _series_label(key: tuple) -> str:
  return ', '.join(str(k) for k in key if k != '')


def _status(row: dict) -> str:
  return 'diverged' if row.get('diverged') else 'inert' if row.get('inert') else 'healthy'


def _metric_words(metric: str) -> str:
  """'test/accuracy' → 'test accuracy (%)'; 'robustness[all]/accuracy' → 'robustness accuracy
  (%)'."""
  evaluator = re.split(r'[/\[]', metric)[0]
  best = 'best ' if metric.endswith('/best_accuracy') else ''
  return f'{best}{evaluator} accuracy (%)'


def reference_lines(rows: list[dict], metric: str, fallback: str | None = None,
                    every_unimodal: bool = False) -> dict:
  """{'chance': %, 'best unimodal (<method>)': %} for the rows' chance level and the unimodal
  method with the highest mean of `metric`, where the rows have them. A unimodal run without
  `metric` is scored by `fallback` (an image-only model has no audio-noise evaluator, and its
  test accuracy is what `robustness[all]` would be). `every_unimodal`: a line for each unimodal
  method, the best one marked."""
  lines = {}
  chances = {r['chance'] for r in rows if isinstance(r.get('chance'), (int, float))}
  if len(chances) == 1:
    lines['chance'] = 100 * chances.pop()
  unimodal = {}
  for r in rows:
    if str(r.get('method', '')).startswith(UNIMODAL):
      value = next((r[m] for m in (metric, fallback) if isinstance(r.get(m), (int, float))), None)
      if value is not None:
        unimodal.setdefault(r['method'], []).append(value)
  means = {m: 100 * sum(v) / len(v) for m, v in unimodal.items()}
  if means:
    best = max(means, key=means.get)
    lines[f'best unimodal ({best})'] = means[best]
    if every_unimodal:
      lines.update({m: level for m, level in means.items() if m != best})
  return lines


def _draw_lines(ax, lines: dict) -> None:
  for (label, level), style in zip(lines.items(), itertools.cycle(('--', '-.', ':'))):
    ax.axhline(level, color='0.4', ls=style, lw=1, label=label)


def _finish(ax, legend: bool = True) -> None:
  ax.set_ylim(0, 100)
  ax.grid(axis='y', alpha=0.3)
  if legend:
    ax.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def accuracy_plot(results, out_dir, metric: str | None = None) -> Plot | None:
  """Bars of the headline accuracy (the first accuracy column) per method at the mean of every
  run; each run a point on its bar; other facets are the series."""
  rows = results.rows
  metrics = aggregate.metric_columns(rows, results.metrics)
  if not rows or not metrics:
    return None
  metric = metric or metrics[0]
  facets = results.facets
  methods = [k[0] for k in aggregate.groups(rows, ['method'])]
  series = list(aggregate.groups(rows, facets)) if facets else [()]
  plot = Plot('accuracy.png', lines=reference_lines(rows, metric))
  # The legend beside the axes takes its longest label's width (~0.07 inch a character), so that
  # many long series labels (the recipe ablation's) do not squeeze the bars and cut the title.
  legend = 0.07 * max([len(_series_label(s)) for s in series] + [25])
  fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(methods) * max(1, len(series) ** 0.5)) + 0.5
                                  + legend, 4.5))
  # Each method's bars side by side, centred on its tick: only the series it has runs in (a
  # method with one remedy, or one recipe, gets one bar over its name).
  members_of = aggregate.groups(rows, ['method', *facets])  # (method, *series): its runs
  present = {m: [s for s in series if (m, *s) in members_of] for m in methods}
  width = 0.8 / max([len(p) for p in present.values()] + [1])
  for s in series:
    label = _series_label(s)
    xs, means = [], []
    for j, method in enumerate(methods):
      if s not in present[method]:
        continue
      members = members_of[(method, *s)]
      values = [r[metric] for r in members if isinstance(r.get(metric), (int, float))]
      x = j + (present[method].index(s) - (len(present[method]) - 1) / 2) * width
      plot.where.setdefault(label, {})[method] = x
      if values:
        xs.append(x)
        means.append(100 * sum(values) / len(values))
        plot.bars.setdefault(label, {})[method] = means[-1]
      for r in members:
        if isinstance(r.get(metric), (int, float)):
          plot.points.append((label, method, 100 * r[metric], _status(r)))
    ax.bar(xs, means, width, alpha=0.6, label=label or None)
    for _, method, value, status in [p for p in plot.points if p[0] == label]:
      x = plot.where[label][method]
      ax.plot(x, value, 'x' if status != 'healthy' else 'o', ms=5 if status == 'healthy' else 7,
              color='crimson' if status != 'healthy' else 'black', alpha=0.8)
  ax.plot([], [], 'o', color='black', label='a run (seed)')
  if any(p[3] != 'healthy' for p in plot.points):
    ax.plot([], [], 'x', color='crimson', ms=7, label='inert or diverged run')
  _draw_lines(ax, plot.lines)
  ax.set_xticks(range(len(methods)))
  ax.set_xticklabels(methods, rotation=30, ha='right')
  ax.set_xlabel('method')
  ax.set_ylabel(_metric_words(metric))
  ax.set_title('Bars: mean over every run; points: each run')
  _finish(ax)
  _save(fig, pathlib.Path(out_dir) / plot.name)
  return plot


def _conditions(rows):
  """{evaluator: [condition, ...]} of the columns with conditions, in first-seen order."""
  out = {}
  for metric in aggregate.metric_columns(rows):
    match = _CONDITION.match(metric)
    if match:
      out.setdefault(match.group(1), []).append(match.group(2))
  return out


def _title(ax, text: str) -> None:
  """A title wrapped to the axes' width, so a long caption is not cut at the figure's edge."""
  ax.set_title(textwrap.fill(text, 70), fontsize=10)


def _caption(left_out: list[str], total: int) -> str:
  if not left_out:
    return f'all {total} runs healthy'
  return f'{len(left_out)} of {total} runs left out (inert or diverged)'


def robustness_plots(results, out_dir) -> list[Plot]:
  """Per evaluator with conditions: accuracy under each noise level (a line per series through
  the healthy runs' means, their runs as points) and with each modality missing (bars)."""
  rows, facets = results.rows, results.facets
  keys = ['method', *facets]
  healthy = [r for r in rows if r.get('healthy', 1)]
  left_out = [r['run'] for r in rows if not r.get('healthy', 1) and 'run' in r]
  plots = []
  for evaluator, conditions in _conditions(rows).items():
    col = lambda c, e=evaluator: f'{e}[{c}]/accuracy'
    drawn = [r for r in healthy if isinstance(r.get(col(conditions[0])), (int, float))]
    series = list(aggregate.groups(drawn, keys))
    lines = reference_lines(rows, col('all'), fallback=aggregate.HEADLINE)
    noise = {}
    for c in conditions:
      match = _NOISE.match(c)
      if match:
        noise.setdefault((match.group(1), match.group(2)), []).append((float(match.group(3)), c))
    for (modality, kind), levels in noise.items():
      levels.sort(reverse=True)
      suffix = '' if len(noise) == 1 else f'_{modality}'
      noisy = [r for r in rows if isinstance(r.get(col(levels[0][1])), (int, float))]
      plot = Plot(f'{evaluator}_snr{suffix}.png', lines=dict(lines),
                  left_out=[r['run'] for r in noisy if not r.get('healthy', 1)])
      fig, ax = plt.subplots(figsize=(8, 4.5))
      for s in series:
        label = _series_label(s)
        members = aggregate.groups(drawn, keys)[s]
        curve = {}
        for level, c in levels:
          values = [r[col(c)] for r in members if isinstance(r.get(col(c)), (int, float))]
          if values:
            curve[level] = 100 * sum(values) / len(values)
            plot.points += [(label, level, 100 * v, 'healthy') for v in values]
        if not curve:
          continue
        plot.curves[label] = curve
        line = ax.plot(list(curve), list(curve.values()), marker='o', label=label)[0]
        ax.plot([p[1] for p in plot.points if p[0] == label],
                [p[2] for p in plot.points if p[0] == label], '.', color=line.get_color(),
                alpha=0.5)
      _draw_lines(ax, plot.lines)
      ax.set_xlabel(f'{_KINDS.get(kind, kind)} of the noise added to the {modality}')
      ax.set_ylabel(f'{evaluator} accuracy (%)')
      if kind == 'snr_db':
        ax.invert_xaxis()  # more noise to the right
      _title(ax, f'Extra {modality} noise: healthy runs; '
                 f'{_caption(plot.left_out, len(noisy))}')
      _finish(ax)
      _save(fig, pathlib.Path(out_dir) / plot.name)
      plots.append(plot)
    shown = [c for c in conditions if c == 'all' or c.startswith('missing=')]
    if len(shown) > 1:
      plots.append(_missing_plot(
          evaluator, shown, drawn, series, keys,
          reference_lines(rows, col('all'), fallback=aggregate.HEADLINE, every_unimodal=True), left_out,
          out_dir))
  return plots


def _missing_plot(evaluator, shown, drawn, series, keys, lines, left_out, out_dir) -> Plot:
  plot = Plot(f'{evaluator}_missing.png', lines=dict(lines), left_out=list(left_out))
  col = lambda c: f'{evaluator}[{c}]/accuracy'
  fig, ax = plt.subplots(figsize=(8, 4.5))
  width = 0.8 / max(len(series), 1)
  members_of = aggregate.groups(drawn, keys)
  for i, s in enumerate(series):
    label = _series_label(s)
    xs, means = [], []
    for j, c in enumerate(shown):
      values = [r[col(c)] for r in members_of[s] if isinstance(r.get(col(c)), (int, float))]
      if not values:
        continue
      x = j - 0.4 + (i + 0.5) * width
      xs.append(x)
      means.append(100 * sum(values) / len(values))
      plot.bars.setdefault(label, {})[c] = means[-1]
      plot.points += [(label, c, 100 * v, 'healthy') for v in values]
      ax.plot([x] * len(values), [100 * v for v in values], 'o', color='black', ms=3, alpha=0.7)
    ax.bar(xs, means, width, alpha=0.7, label=label)
  _draw_lines(ax, plot.lines)
  ax.set_xticks(range(len(shown)))
  ax.set_xticklabels(['every modality' if c == 'all' else f'{c.split("=", 1)[1]} missing'
                      for c in shown])
  ax.set_xlabel('test condition')
  ax.set_ylabel(f'{evaluator} accuracy (%)')
  _title(ax, f'A modality missing: healthy runs; '
            f'{_caption(left_out, len(left_out) + len(drawn))}; points: each run')
  _finish(ax)
  _save(fig, pathlib.Path(out_dir) / plot.name)
  return plot


def curves_plot(results, out_dir) -> Plot | None:
  """`training_curves.png`: a column per series (method and facets), each seed a line: the
  validation accuracy through training (top) and each encoder's gradient norm (bottom), so that
  a branch that waits, or a run that falls back late, shows per seed."""
  keys = ['method', *results.facets]
  series = {k: [r for r in v if results.curves.get(r['run'], {}).get('validation')]
            for k, v in aggregate.groups(results.rows, keys).items()}
  series = {k: v for k, v in series.items() if v}
  if not series:
    return None
  plot = Plot('training_curves.png')
  fig, axes = plt.subplots(2, len(series), figsize=(3.2 * len(series) + 1, 6.5), squeeze=False,
                           sharex='col')
  for column, (key, members) in enumerate(series.items()):
    label = _series_label(key)
    top, bottom = axes[0][column], axes[1][column]
    for row in sorted(members, key=lambda r: r.get('seed', 0)):
      curves = results.curves[row['run']]
      steps, values = zip(*curves['validation'])
      line = top.plot(steps, [100 * v for v in values], lw=1,
                      ls='-' if row.get('healthy', 1) else ':')[0]
      plot.curves.setdefault(label, {})[row.get('seed', 0)] = dict(curves['validation'])
      for name, style in zip(sorted(k for k in curves if k.startswith('grad_norm/')),
                             ('-', '--', ':')):
        steps, values = zip(*curves[name])
        bottom.plot(steps, values, lw=0.8, ls=style, color=line.get_color())
    top.set_title(label, fontsize=8)
    top.set_ylim(0, 100)
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    bottom.set_xlabel('training step')
  axes[0][0].set_ylabel('validation accuracy (%)\n(dotted: inert or diverged run)')
  names = sorted({k.split('/')[1] for c in results.curves.values() for k in c
                  if k.startswith('grad_norm/')})
  styles = ', '.join(f'{n} {s}' for n, s in zip(names, ('solid', 'dashed', 'dotted')))
  axes[1][0].set_ylabel(f'encoder gradient norm\n({styles})')
  drawn = sum(len(v) for v in series.values())
  fig.suptitle('Each seed through training' + (
      '' if drawn == len(results.rows) else f' ({drawn} of {len(results.rows)} runs: the others '
      'were recorded without their curves)'), fontsize=10)
  _save(fig, pathlib.Path(out_dir) / plot.name)
  return plot


def write_all(results, out_dir) -> list[Plot]:
  """Every plot the results support."""
  written = [p for p in (accuracy_plot(results, out_dir), curves_plot(results, out_dir)) if p]
  return written + robustness_plots(results, out_dir)
