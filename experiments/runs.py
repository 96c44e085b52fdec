"""One run of a sweep: a config file (and variant), the overrides that define it, and a seed.

A run's workdir name comes from those three (readable, filesystem-safe, stable); its command line
is the CLI users run (`python -m mmjax.main --config=... --workdir=... --config.k=v`); whether it
has finished is read from its workdir: a `metrics.jsonl` line of every evaluator at the last step,
and a checkpoint at that step. Nothing here parses log lines.
"""

import dataclasses
import hashlib
import importlib.util
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
from typing import Any, Mapping

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = 'config.json'
DATASETS = 'datasets.json'  # mmjax.workdir.datasets_path
ENVIRONMENT = 'environment.jsonl'  # mmjax.workdir.ENVIRONMENT_FILE
_MAX_NAME = 180


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of a sweep.

  config: a config file relative to the repository root, with an optional `:variant`.
  overrides: dotted config field → value; they define the run, so they are part of its name.
  seed: `config.seed`.
  settings: overrides every run of a sweep mode shares (budget, evaluators); not in the name,
    but checked against a workdir's config.json before it is resumed.
  method, facets: labels for tables and plots (method defaults to the config file's name).
  """
  config: str
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  seed: int = 0
  settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  method: str = ''
  facets: Mapping[str, str] = dataclasses.field(default_factory=dict)

  @property
  def label(self) -> str:
    return self.method or config_stem(self.config)

  @property
  def name(self) -> str:
    return run_name(self.config, self.overrides, self.seed)

  def values(self) -> dict:
    """Every config field this run sets: settings, then overrides, then the seed."""
    return {**self.settings, **self.overrides, 'seed': self.seed}


def split_config(config: str) -> tuple[str, str]:
  path, _, variant = config.partition(':')
  return path, variant


def config_stem(config: str) -> str:
  path, variant = split_config(config)
  stem = pathlib.Path(path).stem
  return f'{stem}-{variant}' if variant else stem


def _flat(key: str, value):
  """Dict values as dotted leaves: ('modality_dropout', {'audio': .3}) → modality_dropout.audio."""
  if isinstance(value, Mapping):
    for k in sorted(value):
      yield from _flat(f'{key}.{k}', value[k])
  else:
    yield key, value


def _text(value) -> str:
  if isinstance(value, (tuple, list)):
    return '-'.join(_text(v) for v in value)
  if isinstance(value, float):
    return f'{value:g}'
  return str(value)


def run_name(config: str, overrides: Mapping[str, Any], seed: int) -> str:
  """`late_fusion__modality_dropout.audio=0.3__seed0`: config, sorted overrides, seed.

  Characters a filesystem or a shell may mind become `_`; a name too long for a path component
  is cut and ends with a hash of the whole, so it stays unique and stable.
  """
  parts = [config_stem(config)]
  for key in sorted(overrides):
    parts += [f'{k}={_text(v)}' for k, v in _flat(key, overrides[key])]
  parts.append(f'seed{seed}')
  name = re.sub(r'[^A-Za-z0-9._=+-]', '_', '__'.join(parts))
  if len(name) > _MAX_NAME:
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    name = f'{name[:_MAX_NAME - 12]}__{digest}'
  return name


def _literal(value) -> str:
  """A Python literal with double-quoted strings (easier to read inside a shell's single quotes)."""
  if isinstance(value, str):
    return json.dumps(value)
  if isinstance(value, Mapping):
    return '{' + ', '.join(f'{_literal(k)}: {_literal(v)}' for k, v in value.items()) + '}'
  if isinstance(value, tuple):
    items = [_literal(v) for v in value]
    return f'({items[0]},)' if len(items) == 1 else '(' + ', '.join(items) + ')'
  if isinstance(value, list):
    return '[' + ', '.join(_literal(v) for v in value) + ']'
  return repr(value)


def flag_value(value) -> str:
  """A value as `--config.k=` takes it: strings as they are, anything else as a Python literal."""
  return value if isinstance(value, str) else _literal(value)


def main_args(run: Run, workdir) -> list[str]:
  """The arguments of `python -m mmjax.main` for `run` in `workdir`."""
  return ['-m', 'mmjax.main', f'--config={run.config}', f'--workdir={workdir}',
          *(f'--config.{k}={flag_value(v)}' for k, v in run.values().items())]


def command_line(run: Run, workdir) -> str:
  """One shell line (quoted) that trains `run`; rerunning it resumes an interrupted run."""
  return shlex.join(['python', *main_args(run, workdir)])


def execute(run: Run, workdir, log_path, timeout_s: int, env_extra=None) -> int:
  """Trains `run` in a subprocess (resuming from its checkpoint if it has one), stdout and
  stderr appended to `log_path`; killed after `timeout_s` seconds. Returns its exit status."""
  env = {**os.environ, **(env_extra or {})}
  env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), env.get('PYTHONPATH')]))
  cmd = ['timeout', '-k', '30', str(timeout_s), sys.executable,
         *main_args(run, os.path.abspath(workdir))]
  pathlib.Path(log_path).parent.mkdir(parents=True, exist_ok=True)
  with open(log_path, 'a', encoding='utf-8') as log:
    log.write(f'$ {shlex.join(cmd)}\n')
    log.flush()
    return subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                          check=False).returncode


# ------------------------------------------------------------------------------------------------
# What a workdir holds


def read_metrics(workdir) -> list[dict]:
  """The metrics.jsonl lines of `workdir` ([] if none); a line cut short is left out."""
  from mmjax import writers  # pylint: disable=import-outside-toplevel  (JAX, only when asked)
  return writers.read_metrics(workdir)


def read_jsonl(path) -> list[dict]:
  path = pathlib.Path(path)
  if not path.exists():
    return []
  lines = []
  for text in path.read_text(encoding='utf-8').splitlines():
    try:
      lines.append(json.loads(text))
    except json.JSONDecodeError:
      continue
  return lines


def read_config(workdir) -> dict | None:
  path = pathlib.Path(workdir) / CONFIG
  if not path.exists():
    return None
  return json.loads(path.read_text(encoding='utf-8'))


def evaluator_names(config: dict) -> list[str]:
  """The evaluators that run at the end of training (`config.evals`)."""
  return list(config.get('evals') or {})


def checkpoint_steps(workdir) -> list[int]:
  ckpt = pathlib.Path(workdir) / 'checkpoints'
  if not ckpt.is_dir():
    return []
  return sorted(int(p.name) for p in ckpt.iterdir() if p.is_dir() and p.name.isdigit())


@dataclasses.dataclass
class Progress:
  """Where a run's workdir stands: `state` is one of
  'finished', 'diverged' (it stopped at `step` on a non-finite loss: done, as rerunning it
  stops there again), 'partial' (trained to `step` of `total`, or lacks final evaluator lines),
  'not started', or 'conflict' (its config.json differs from the run's values, or it trained on
  another version of a dataset: `detail`); 'recorded' where the results record it finished
  (experiments.aggregate.status)."""
  state: str
  step: int = 0
  total: int | None = None
  detail: str = ''

  def describe(self) -> str:
    if self.state == 'partial':
      return f'partial: step {self.step} of {self.total}{self.detail}'
    if self.state == 'conflict':
      return f'conflict: {self.detail}'
    if self.state == 'diverged':
      return f'diverged: non-finite loss at step {self.step} of {self.total}'
    if self.state == 'recorded':
      return f'finished at step {self.step} of {self.total} (recorded in the results)'
    return self.state


def _normal(value):
  return json.loads(json.dumps(value, default=list))


def _saved(config: dict, key: str):
  node = config
  for part in key.split('.'):
    if not isinstance(node, dict) or part not in node:
      return KeyError
    node = node[part]
  return node


def _config_change(run: Run, saved: dict) -> str:
  """Where the run's config.json differs from the config its file and values resolve to now:
  a config file edited after the run trained makes it another run."""
  key = json.dumps([run.config, _normal(run.values())], sort_keys=True)
  if key not in _RESOLVED:
    _RESOLVED[key] = json.loads(load_config(run).to_json_best_effort())
  from mmjax import workdir as workdirs  # pylint: disable=import-outside-toplevel
  differences = workdirs.config_differences(saved, _RESOLVED[key])
  if not differences:
    return ''
  field, there, now = differences[0]
  return f'{field}={json.dumps(there)} there, {json.dumps(now)} now'


_RESOLVED: dict[str, dict] = {}


def _with_later_fields(key: str, value, values: dict):
  """`value` as the run resolves it: a dict setting (e.g. quick mode's `model.encoders`) with the
  fields that later values set inside it (`model.encoders.image.batch_norm`) applied."""
  resolved = _normal(value)
  keys = list(values)
  for other in keys[keys.index(key) + 1:]:
    if other.startswith(key + '.') and isinstance(resolved, dict):
      node = resolved
      *parents, leaf = other[len(key) + 1:].split('.')
      for part in parents:
        node = node.setdefault(part, {})
      node[leaf] = _normal(values[other])
  return resolved


def dataset_versions(run: Run) -> dict[str, str]:
  """The version of each dataset the run reads now (mmjax.data.datasets.versions).
  It does not depend on the seed, so it is computed once per config, settings and overrides: a
  sweep asks for every run, twice when it trains it and again when it aggregates."""
  key = json.dumps([run.config, _normal(run.settings), _normal(run.overrides)], sort_keys=True)
  if key not in _DATASET_VERSIONS:
    from mmjax.data import datasets  # pylint: disable=import-outside-toplevel
    _DATASET_VERSIONS[key] = datasets.versions(load_config(run))
  return _DATASET_VERSIONS[key]


_DATASET_VERSIONS: dict[str, dict[str, str]] = {}


def _identity_conflict(run: Run, config: dict, datasets: dict | None, where: str) -> str:
  """'' when `config` (a run's config.json) and `datasets` (its datasets.json, None where it has
  none) are this run's as its config file, values and datasets resolve now; else one line that
  says what differs, about the run held in `where`."""
  values = run.values()
  for key, value in values.items():
    saved = _saved(config, key)
    wanted = _with_later_fields(key, value, values)
    if saved is KeyError or _normal(saved) != wanted:
      shown = '(absent)' if saved is KeyError else json.dumps(saved)
      return f'{where} holds a run with {key}={shown}, not {json.dumps(wanted)}'
  differs = _config_change(run, config)
  if differs:
    return f'{where} holds a run of another config: {differs} (the config file changed since)'
  if datasets:
    # mmjax (and so JAX) only here: the sweep's own process stays light.
    from mmjax import workdir as workdirs  # pylint: disable=import-outside-toplevel
    changed = workdirs.version_differences(datasets, dataset_versions(run))
    if changed:
      return f'{where} holds a run trained on {changed}'
  return ''


def read_datasets(workdir) -> dict | None:
  """The run's datasets.json ({dataset: version}), None where it predates them."""
  path = pathlib.Path(workdir) / DATASETS
  return json.loads(path.read_text(encoding='utf-8')) if path.exists() else None


def read_environment(workdir) -> list[dict] | None:
  """The run's environment.jsonl (mmjax.workdir.record_environment): the libraries, devices and
  CPU it trained on, a line per place it ran; None where it predates the file."""
  path = pathlib.Path(workdir) / ENVIRONMENT
  return read_jsonl(path) if path.exists() else None


def record_conflict(run: Run, record: dict, where: str) -> str:
  """'' when a record of a finished run (experiments.aggregate's records.jsonl) is of this run as
  it resolves now, else what differs."""
  if record.get('run') != run.name:
    return f'{where} records {record.get("run")}, not {run.name}'
  return _identity_conflict(run, record['config'], record.get('datasets'), where)


def progress(run: Run, workdir) -> Progress:
  config = read_config(workdir)
  if config is None:
    return Progress('not started')
  conflict = _identity_conflict(run, config, read_datasets(workdir), str(workdir))
  if conflict:
    return Progress('conflict', detail=(
        f'{conflict}; use another --results_dir or move that workdir away'))
  total = int(config['num_train_steps'])
  lines = read_metrics(workdir)
  step = max([l['step'] for l in lines if l.get('split') == 'train'] or [0])
  ckpts = checkpoint_steps(workdir)
  step = max([step, *ckpts])
  stopped = [l['step'] for l in lines if l.get('split') == 'train' and l.get('stopped_nonfinite')]
  if stopped:
    return Progress('diverged', stopped[-1], total)
  # Early stopping ends a run before num_train_steps, where its train metrics say so (unless it
  # trained on after that, resumed with a changed config).
  trained = max([l['step'] for l in lines if l.get('split') == 'train' and 'loss' in l] or [0])
  end = max([l['step'] for l in lines if l.get('split') == 'train' and l.get('stopped_early')
             and l['step'] >= trained] or [total])
  final = {l['split'] for l in lines if l.get('step') == end}
  lacking = [n for n in evaluator_names(config) if n not in final]
  # A run of 0 steps (it only evaluates) has no checkpoint to write: its final lines finish it.
  if (end in ckpts or end == 0) and not lacking:
    return Progress('finished', end, total)
  detail = f', no final {", ".join(lacking)} lines' if step >= total and lacking else ''
  return Progress('partial', step, total, detail)


# ------------------------------------------------------------------------------------------------
# A run's config, in this process (for labels such as parameter counts; training never uses it)


def set_field(config, key: str, value) -> None:
  node = config
  *parents, leaf = key.split('.')
  for p in parents:
    node = node[p]
  node[leaf] = value


def load_config(run: Run, with_values: bool = True):
  """The run's ml_collections config: its file's get_config(variant), with the run's values."""
  path, variant = split_config(run.config)
  if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
  spec = importlib.util.spec_from_file_location(f'_sweep_config_{config_stem(run.config)}',
                                                REPO / path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(variant) if variant else module.get_config()
  if with_values:
    for key, value in run.values().items():
      set_field(config, key, value)
  return config
