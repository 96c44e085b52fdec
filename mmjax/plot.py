"""Training curves from metrics.jsonl: one run, or several in one figure to compare them.

  python -m mmjax.plot --workdir=runs/late_fusion [--workdir=runs/other ...] [--out=FILE.png]

Four panels against the training step: loss and accuracy (training, and each evaluator's plain
line: with no condition, or its `all` condition), the learning rate, and training throughput. One
run: a colour per split. Several: a colour per run, a line style per split. The trainer writes
`<workdir>/curves.png` at the end of every run; without --out this writes it for the first
workdir, or `curves.png` in the working directory for several.
"""

import dataclasses
import math

from absl import app
from absl import flags
from etils import epath

from mmjax import workdir as workdirs
from mmjax import writers
from mmjax.errors import UserError

FILE = 'curves.png'
# (panel title, metric, splits it is drawn for: 'train', or None for every split)
PANELS = (('loss', 'loss', None), ('accuracy (%)', 'accuracy', None),
          ('learning rate', 'learning_rate', 'train'),
          ('training examples / s', 'examples_per_sec', 'train'))
STYLES = ('-', '--', ':', '-.')


@dataclasses.dataclass
class Curves:
  """What was drawn: {panel metric: {(run, split): [(step, value), ...]}}."""
  path: epath.Path
  series: dict = dataclasses.field(default_factory=dict)


def series(lines: list[dict]) -> dict:
  """{metric: {split: [(step, value)]}} from metrics lines, the evaluators' plain lines only;
  accuracy in percent, non-finite values left out."""
  out = {}
  for line in lines:
    if line.get('condition', 'all') != 'all':
      continue
    split = line.get('split', 'train')
    for _, metric, only in PANELS:
      value = line.get(metric)
      if value is None or (only and split != only) or not math.isfinite(value):
        continue
      scale = 100.0 if metric == 'accuracy' else 1.0
      out.setdefault(metric, {}).setdefault(split, []).append((line['step'], scale * value))
  return out


def draw(runs: dict[str, list[dict]], out) -> Curves:
  """Draws the runs ({name: metrics lines}) into `out` (a PNG) and returns what was drawn."""
  if not any(runs.values()):
    raise UserError(f'no metrics lines in {", ".join(runs)}: nothing to plot')
  # Imported here: every run draws its curves once, at its end; importing mmjax.training.train
  # should not pay for matplotlib.
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')  # files only: no display is needed or opened
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  curves = Curves(workdirs.resolve(out))
  fig, axes = plt.subplots(2, 2, figsize=(11, 7))
  several = len(runs) > 1
  colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
  splits = sorted({l.get('split', 'train') for lines in runs.values() for l in lines},
                  key=lambda s: (s != 'train', s))
  for ax, (title, metric, _) in zip(axes.flat, PANELS):
    for r, (name, lines) in enumerate(runs.items()):
      for split, points in sorted(series(lines).get(metric, {}).items(),
                                  key=lambda kv: splits.index(kv[0])):
        steps, values = zip(*points)
        index = splits.index(split)
        colour = colours[(r if several else index) % len(colours)]
        style = STYLES[index % len(STYLES)] if several else '-'
        label = f'{name}: {split}' if several else split
        ax.plot(steps, values, ls=style, color=colour, marker='.' if len(steps) < 3 else None,
                lw=1.2, label=label)
        curves.series.setdefault(metric, {})[(name, split)] = list(points)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel('training step')
    ax.grid(alpha=0.3)
    if metric == 'accuracy':
      ax.set_ylim(0, 100)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7, loc='best')
  fig.suptitle(' vs '.join(runs) if several else next(iter(runs)), fontsize=10)
  fig.tight_layout()
  with curves.path.open('wb') as f:  # an epath: local, or a bucket as the workdir is
    fig.savefig(f, format='png', dpi=110)
  plt.close(fig)
  return curves


def write(workdirs_: list, out=None) -> Curves:
  """Curves of the runs in `workdirs_` into `out` (default: see the module docstring)."""
  paths = [workdirs.resolve(w) for w in workdirs_]
  for path in paths:
    if not (path / writers.METRICS_FILE).exists():
      raise UserError(f'--workdir={path}: no {writers.METRICS_FILE} there; give the workdir of a '
                      'run')
  if out is None:
    out = paths[0] / FILE if len(paths) == 1 else FILE
  names = [p.name for p in paths]
  if len(set(names)) < len(names):
    names = [str(p) for p in paths]
  return draw({n: writers.read_metrics(p) for n, p in zip(names, paths)}, out)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}; flags take the form --name=value')
  if not flags.FLAGS.workdir:
    raise app.UsageError('give --workdir=DIR (repeat it to compare runs)')
  try:
    curves = write(flags.FLAGS.workdir, flags.FLAGS.out)
  except UserError as e:
    raise SystemExit(f'mmjax.plot: error: {e}') from None
  print(curves.path)


if __name__ == '__main__':
  # Defined only when run as a program: the trainer imports this module beside mmjax.main's flags.
  flags.DEFINE_multi_string('workdir', None, "A run's workdir; repeat to compare runs.")
  flags.DEFINE_string('out', None, f'The PNG to write (default: <workdir>/{FILE} for one run, '
                      f'./{FILE} for several).')
  app.run(main)
