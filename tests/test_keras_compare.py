"""experiments/keras_compare.py runs where TensorFlow is not installed (it is no dependency of
mmjax): one line says the Keras half is skipped, and the mmjax half is measured all the same."""

import importlib.util
import json
import re

import pytest

from tests.conftest import REPO, run_python


@pytest.mark.slow  # a CLI run
def test_keras_compare_measures_mmjax_without_tensorflow(tmp_path):
  out = tmp_path / 'compare.json'
  proc = run_python(['-m', 'experiments.keras_compare', '--data=random', '--steps=2',
                     '--warmup=1', '--rounds=1', f'--out={out}'], {'JAX_PLATFORMS': 'cpu'},
                    timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  skipped = [l for l in lines if 'skipped' in l.lower()]
  result = json.loads(out.read_text())
  assert result['mmjax']['num_params'] == 260_454  # docs/performance.md's main job
  assert result['precompute_frontends'] is False  # random batches are waveforms
  (row,) = result['rounds']
  assert row['mmjax_step_examples_per_sec'] > 0
  assert re.search(r'step alone [\d,]+ examples/s', proc.stdout), proc.stdout
  table_row = next(l for l in lines if l.split()[:1] == ['1'])
  assert re.search(r'\d', table_row.split()[2]), table_row  # the step-alone column
  if importlib.util.find_spec('tensorflow') is None:
    assert len(skipped) == 1 and 'pip install tensorflow' in skipped[0], proc.stdout
    assert result['keras']['skipped'] and row['keras_examples_per_sec'] is None
  else:
    assert not skipped and row['keras_examples_per_sec'] > 0, proc.stdout


def test_performance_docs_show_the_committed_comparison():
  """docs/performance.md's Keras table is docs/keras_compare.json's rounds, and its median the
  ratio the text gives."""
  result = json.loads((REPO / 'docs' / 'keras_compare.json').read_text())
  doc = (REPO / 'docs' / 'performance.md').read_text()
  block = doc.split('<!-- keras_compare table: begin -->')[1].split(
      '<!-- keras_compare table: end -->')[0]
  rows = [f"| {r['round']} | {r['mmjax_loop_examples_per_sec']:,.0f} | "
          f"{r['mmjax_step_examples_per_sec']:,.0f} | {r['keras_examples_per_sec']:,.0f} | "
          f"{r['loop_to_keras']:.2f} |" for r in result['rounds']]
  assert block.strip().splitlines()[2:] == rows
  assert result['precompute_frontends'] is True and result['median_ratio_of'] == 'loop_to_keras'
  assert f"(median {result['median_ratio']:.2f};" in doc
