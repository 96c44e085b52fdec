"""A jax.profiler trace of a configured range of train steps, and where its time went.

`config.profile = {'first_step': N, 'num_steps': K}` traces steps N+1 .. N+K (K = 0: off) into
`<workdir>/profile` (TensorBoard's profile plugin, XProf and Perfetto read it). On a CPU the trace
then has an event per XLA operation (`--xla_cpu_enable_xprof_traceme`), and the train step's
optimised HLO is dumped beside it, so `summarize` can name each operation's layer:

  python -m mmjax.profiling --workdir=runs/lf     # the top operations per traced step
"""

import collections
import glob
import gzip
import json
import os
import re
import sys

from absl import app
from absl import flags

from mmjax import workdir as workdirs
from mmjax.errors import UserError


def window(config) -> tuple[int, int] | None:
  """(first, last) traced step, or None when profiling is off."""
  cfg = config.get('profile') or {}
  first, num = int(cfg.get('first_step', 0)), int(cfg.get('num_steps', 0))
  if num < 0 or first < 0:
    raise UserError(f'profile={dict(cfg)}: first_step and num_steps must be >= 0')
  return (first + 1, first + num) if num else None


def profile_dir(workdir) -> str:
  return os.fspath(workdirs.resolve(workdir) / 'profile')


def configure_xla(config, workdir) -> bool:
  """Before the backend starts: op-level trace events on a CPU and the train step's optimised
  HLO in `<workdir>/profile/hlo` (XLA reads its flags once, when the backend starts). Returns
  whether the run is profiled."""
  if window(config) is None:
    return False
  flags = [os.environ.get('XLA_FLAGS', ''), '--xla_cpu_enable_xprof_traceme=true',
           f'--xla_dump_to={os.path.join(profile_dir(workdir), "hlo")}',
           '--xla_dump_hlo_as_text', '--xla_dump_hlo_module_re=.*train_step.*']
  os.environ['XLA_FLAGS'] = ' '.join(f for f in flags if f)
  return True


class Tracer:
  """Starts the trace before step `first` and stops it once step `last` has run."""

  def __init__(self, config, workdir):
    self._window, self._dir, self._on = window(config), profile_dir(workdir), False

  def before(self, step: int, state) -> None:
    """Called before dispatching `step`; waits for the step before it, so the trace holds
    exactly the window's steps."""
    if self._window and step == self._window[0]:
      import jax  # pylint: disable=import-outside-toplevel
      jax.block_until_ready(state)
      jax.profiler.start_trace(self._dir)
      self._on = True

  def after(self, step: int, state) -> None:
    """Called once `step` is dispatched: waits for it, so the trace holds whole steps."""
    if self._on and step == self._window[1]:
      self.stop(state)

  def stop(self, state=None) -> None:
    if self._on:
      import jax  # pylint: disable=import-outside-toplevel
      if state is not None:
        jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self._on = False


_INSTRUCTION = re.compile(r'\s*(ROOT )?%?([\w.\-]+) = (\S+) ([\w\-]+)\(')


def _layers(hlo_dir: str) -> dict[str, str]:
  """HLO operation name → what it computes: the op_name of its metadata (the model path, e.g.
  `.../encoders_audio/Conv_5/...`), else that of the root of the computation it calls (a
  fusion), else that root's opcode and shape; from the dumped optimised train step."""
  own, calls, roots = {}, {}, {}
  for path in glob.glob(os.path.join(hlo_dir, '*train_step*after_optimizations.txt')):
    computation = None
    for line in open(path, encoding='utf-8'):
      head = re.match(r'(?:ENTRY )?%?([\w.\-]+) \(', line)
      if head and not line.startswith(' '):
        computation = head.group(1)
        continue
      m = _INSTRUCTION.match(line)
      if not m:
        continue
      is_root, name, shape, opcode = m.groups()
      op_name = re.search(r'op_name="([^"]+)"', line)
      own[name] = op_name.group(1) if op_name else ''
      called = re.search(r'calls=%?([\w.\-]+)', line)
      if called:
        calls[name] = called.group(1)
      if is_root and computation:
        roots[computation] = own[name] or f'{opcode} {shape.split("{")[0]}'
  return {name: layer or roots.get(calls.get(name, ''), '') for name, layer in own.items()}


def summarize(workdir, top: int = 25) -> dict:
  """The operations that took the most time per traced step, from the newest trace in
  `<workdir>/profile`: {'trace', 'steps' (configured), 'executions' (of most operations in the
  trace), 'ops': [{'op', 'ms_per_step', 'share', 'layer'}]}."""
  root = profile_dir(workdir)
  traces = sorted(glob.glob(os.path.join(root, 'plugins', 'profile', '*', '*.trace.json.gz')))
  if not traces:
    raise UserError(f'no trace under {root}; train with --config.profile.num_steps=K first')
  events = json.load(gzip.open(traces[-1]))['traceEvents']
  ops = [e for e in events if e.get('ph') == 'X' and 'hlo_op' in e.get('args', {})
         and 'train_step' in e['args'].get('hlo_module', '')]
  if not ops:
    raise UserError(f'{traces[-1]} holds no XLA operation events of the train step')
  run_config = json.loads((workdirs.resolve(workdir) / 'config.json').read_text())
  first, last = window(run_config) or (1, 1)  # the window the run traced, as it parsed it
  steps = last - first + 1
  total, runs = collections.Counter(), collections.Counter()
  for e in ops:
    total[e['args']['hlo_op']] += e.get('dur', 0.0)
    runs[e['args']['hlo_op']] += 1
  layers, overall = _layers(os.path.join(root, 'hlo')), sum(total.values())
  # How many times most operations ran: the number of steps in the trace, which should be
  # the configured one.
  executions = collections.Counter(runs.values()).most_common(1)[0][0]
  return {'trace': traces[-1], 'steps': steps, 'executions': executions,
          'ops': [{'op': op, 'ms_per_step': us / 1000 / steps, 'share': us / overall,
                   'layer': layers.get(op, '')} for op, us in total.most_common(top)]}


def main(argv) -> int:
  if len(argv) > 1:
    sys.exit(f'mmjax: error: unexpected arguments {argv[1:]}; flags take the form --name=value')
  workdir = flags.FLAGS.workdir
  if not workdir:
    sys.exit('mmjax: error: give --workdir=DIR, a run trained with config.profile.num_steps > 0')
  try:
    summary = summarize(workdir)
  except UserError as e:
    sys.exit(f'mmjax: error: {e}')
  print(f'{summary["trace"]}: {summary["steps"]} train steps')
  if summary['executions'] != summary['steps']:
    print(f'warning: most operations ran {summary["executions"]} times in the trace, not once per '
          'step; the figures per step are off by that ratio', file=sys.stderr)
  print(f'{"ms/step":>8} {"share":>6}  operation  [layer]')
  for r in summary['ops']:
    layer = re.sub(r'^jit\(train_step\)/', '', r['layer'])
    print(f'{r["ms_per_step"]:8.2f} {r["share"]:6.1%}  {r["op"]}  [{layer}]')
  return 0


if __name__ == '__main__':
  # Defined only when run as a program: the trainer imports this module beside mmjax.main's flags.
  flags.DEFINE_string('workdir', None, 'A run trained with config.profile.num_steps > 0.')
  app.run(main)
