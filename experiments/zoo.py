"""Trains every config in configs/ briefly on one dataset and prints a markdown table of
parameter counts, compile time, throughput and test accuracy.

  python -m experiments.zoo --variant=synthetic --steps=300 --workdir=runs/zoo_synthetic
  python -m experiments.zoo --variant=avmnist --steps=400 --workdir=runs/zoo_avmnist

Each run is the CLI (`python -m mmjax.main`), so the table measures exactly what users run.
"""

import importlib
import json
import pathlib
import re
import subprocess
import sys

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parents[1]

_VARIANT = flags.DEFINE_string('variant', 'synthetic', 'Config variant: synthetic or avmnist.')
_STEPS = flags.DEFINE_integer('steps', 300, 'Training steps per config.')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/zoo', 'Parent directory of the runs.')
_ONLY = flags.DEFINE_list('only', [], 'Config names to run (default: all).')
_TIMEOUT = flags.DEFINE_integer('timeout', 3600, 'Seconds allowed per run.')


def configs() -> list[str]:
  names = sorted(p.stem for p in (REPO / 'configs').glob('*.py')
                 if p.stem not in ('__init__', 'default'))
  return [n for n in names if not _ONLY.value or n in _ONLY.value]


def has_variant(name: str, variant: str) -> bool:
  try:
    importlib.import_module(f'configs.{name}').get_config(variant)
    return True
  except ValueError:
    return False


def run(name: str) -> dict:
  from mmjax.models import summary  # pylint: disable=import-outside-toplevel
  variant = _VARIANT.value
  config = importlib.import_module(f'configs.{name}').get_config(variant)
  params = sum(summary.param_counts(config).values())
  workdir = pathlib.Path(_WORKDIR.value) / name
  steps = _STEPS.value
  cmd = [sys.executable, '-m', 'mmjax.main', f'--config=configs/{name}.py:{variant}',
         f'--workdir={workdir}', f'--config.num_train_steps={steps}',
         f'--config.eval_every_steps={steps}', f'--config.checkpoint_every_steps={steps}']
  proc = subprocess.run(['timeout', '-k', '10', str(_TIMEOUT.value), *cmd], cwd=REPO,
                        capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    return {'config': name, 'params': params, 'error': proc.stderr.strip().splitlines()[-1]}
  compile_s = float(re.search(r'first step \(compile \+ run\) took ([\d.]+)s', proc.stderr)[1])
  entries = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  test = [e for e in entries if e['split'] == 'test'][-1]
  speed = [e['examples_per_sec'] for e in entries if e['split'] == 'train'][1:]
  return {'config': name, 'params': params, 'compile_s': compile_s,
          'examples_per_sec': sum(speed) / max(len(speed), 1), 'test_accuracy': test['accuracy'],
          'test_examples': test['num_examples']}


def main(argv):
  del argv
  rows = []
  print(f'| config ({_VARIANT.value}, {_STEPS.value} steps) | parameters | first step (s) | '
        'examples/s | test accuracy |')
  print('|---|---:|---:|---:|---:|')
  for name in configs():
    if not has_variant(name, _VARIANT.value):
      continue
    r = run(name)
    rows.append(r)
    if 'error' in r:
      print(f'| {name} | {r["params"]:,} | failed: {r["error"]} | | |', flush=True)
    else:
      print(f'| {name} | {r["params"]:,} | {r["compile_s"]:.1f} | {r["examples_per_sec"]:.0f} | '
            f'{100 * r["test_accuracy"]:.1f}% |', flush=True)
  out = pathlib.Path(_WORKDIR.value) / 'results.json'
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(rows, indent=1))


if __name__ == '__main__':
  app.run(main)
