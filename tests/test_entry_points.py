"""Every entry point takes absl flags (`--name=value` or `--name value`, `--help`), and a mistake
is one `mmjax: error:` line."""

import pytest

from tests.conftest import run_python


@pytest.mark.slow
def test_model_summary_prints_flax_layer_table_and_counts():
  proc = run_python(['-m', 'mmjax.models.summary', '--config=configs/late_fusion.py:synthetic',
                     '--depth=1'], {'JAX_PLATFORMS': 'cpu'}, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  header = next(l for l in proc.stdout.splitlines() if 'flops' in l)
  for column in ('path', 'module', 'inputs', 'outputs', 'flops', 'vjp_flops', 'params'):
    assert column in header, header
  assert 'encoders_image' in proc.stdout and '\x1b[' not in proc.stdout  # plain when piped
  assert proc.stdout.strip().splitlines()[-1].startswith('total')
  bad = run_python(['-m', 'mmjax.models.summary', '--config=configs/late_fusion.py:synthetic',
                    '--config.nope=1'], {'JAX_PLATFORMS': 'cpu'}, timeout=300)
  assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1] == (
      "mmjax: error: --config overrides a field 'nope' the config lacks (every field: "
      'configs/default.py)'), bad.stderr[-2000:]


@pytest.mark.parametrize('module', ['mmjax.profiling', 'mmjax.plot', 'experiments.bench_memory'])
def test_help_and_the_space_separated_form(module, tmp_path):
  """mmjax.profiling rejected --help and `--workdir DIR`; bench_memory used argparse."""
  helped = run_python(['-m', module, '--help'], {'JAX_PLATFORMS': 'cpu'}, timeout=120)
  assert 'flags:' in helped.stdout + helped.stderr, (helped.stdout + helped.stderr)[-2000:]
  if module == 'experiments.bench_memory':
    return  # its one run takes minutes
  proc = run_python(['-m', module, '--workdir', str(tmp_path)], {'JAX_PLATFORMS': 'cpu'},
                    timeout=120)
  last = proc.stderr.strip().splitlines()[-1]
  assert proc.returncode == 1 and str(tmp_path) in last and 'error: ' in last, proc.stderr[-2000:]
