"""Every code example in README.md and docs/*.md runs.

Each ```python block runs as written, in a fresh interpreter started in the repository root (as a
user would paste it), offline: raw data from the test's raw dir, downloads off, datasets in the
test session's TFDS_DATA_DIR. A block that is a fragment gets the lines that make it whole in
SETUP, and a block may get CHECKS run after it in the same interpreter. A python block that cannot
run offline would be listed in NOT_RUN with the reason; none is now. Shell blocks are not run here:
the commands they show have their own tests (the README's in .ci/run, test_train and
test_multihost, the datasheet's build command below).
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from mmjax.data import build
from tests.conftest import RAW_DATA_DIR, REPO, has_raw_data, needs_raw_data, run_python

DOCS = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]

# (file, first line of the block) → code run before the block.
SETUP = {
    ('README.md', "config.dataset.name = 'my_dataset'            # read with tfds.data_source"):
        'from configs import default\nconfig = default.get_config()\n',
}
# (file, first line of the block) → code run after the block, in the same interpreter.
CHECKS = {
    ('README.md', "config.dataset.name = 'my_dataset'            # read with tfds.data_source"):
        "assert config.dataset.modalities.text.max_length == 32\n"
        "assert config.tasks.label.num_classes == 20\n",
    ('README.md', '# mmjax/models/fusion/sum.py'):
        # The fusion the block registers runs in a model built by config alone.
        "import jax\n"
        "from mmjax.data import input_pipeline\n"
        "from mmjax.models.model import build_model\n"
        "from tests.conftest import tiny_config\n"
        "config = tiny_config()\n"
        "config.model.fusion = {'name': 'sum_fusion', 'dim': 8}\n"
        "batch = next(input_pipeline.train_iterator(config))\n"
        "model = build_model(config)\n"
        "variables = model.init(jax.random.key(0), batch['inputs'], batch['present'])\n"
        "logits = model.apply(variables, batch['inputs'], batch['present'])\n"
        "assert logits['label'].shape == (config.batch_size, 10), logits['label'].shape\n"
        "fused = {k: v['kernel'].shape[-1] for k, v in variables['params']['fusion'].items()}\n"
        "assert fused == {'Dense_0': 8, 'Dense_1': 8}, fused  # one Dense(dim) per modality\n",
    ('README.md', '# mmjax/objectives/label_smoothing.py'):
        # The objective the block registers trains by config alone, in the trainer's step.
        "from mmjax import parallel\n"
        "from mmjax.training import steps\n"
        "from mmjax.data import input_pipeline\n"
        "from tests.conftest import tiny_config\n"
        "config = tiny_config(**{'objective.name': 'label_smoothing'})\n"
        "mesh = parallel.make_mesh()\n"
        "batch = next(input_pipeline.train_iterator(config))\n"
        "trainer = steps.build_trainer(config, mesh)\n"
        "assert type(trainer.objective).__name__ == 'LabelSmoothing'\n"
        "state = trainer.init_state(batch)\n"
        "batch = parallel.global_batch(batch, mesh)\n"
        "losses = []\n"
        "for _ in range(6):\n"
        "  state, sums = trainer.train_step(state, batch)\n"
        "  losses.append(float(sums['loss']))\n"
        "assert losses[-1] < losses[0], losses\n",
    ('README.md', '# mmjax/evaluators/feature_norm.py'):
        # The evaluator the block registers runs in a run configured by config alone.
        "from mmjax.training import train\n"
        "from tests.conftest import tiny_config\n"
        "import json, pathlib, tempfile\n"
        "workdir = pathlib.Path(tempfile.mkdtemp()) / 'run'\n"
        "config = tiny_config(num_train_steps=0)  # evaluates the initial model\n"
        "config.evals = {'norms': {'type': 'feature_norm', 'split': 'validation'}}\n"
        "results = train.train_and_evaluate(config, str(workdir))\n"
        "[line] = results['norms']\n"
        "assert set(line) == {'image/feature_norm', 'audio/feature_norm', 'num_examples'}, line\n"
        "assert all(v > 0 for v in line.values()), line\n"
        "logged = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]\n"
        "assert [l['image/feature_norm'] for l in logged if l['split'] == 'norms'] == [\n"
        "    line['image/feature_norm']]\n",
    ('datasets.md', 'import os'):
        "import sys\n"
        "if 'sources' in globals():  # the reading example: no mmjax, no TensorFlow\n"
        "  assert not [m for m in sys.modules if m.split('.')[0] in ('mmjax', 'tensorflow')]\n"
        "  shown = (example['label'], example['audio_id'], example['image'].shape)\n"
        "  assert shown == (5, 1763, (28, 28, 1)), shown\n"
        "  assert len(sources['train']) == 55000\n"
        "else:\n"
        "  assert audio.shape == (3000, 8000), audio.shape\n",
    ('datasets.md', 'from configs import late_fusion_ogm'):
        "assert (config.dataset.name, config.dataset.joins.audio.dataset) == "
        "('avmnist/standard', 'fsdd/snr0db')\n",
}
NOT_RUN = {}  # (file, first line) → why it cannot run offline


def _blocks():
  """(file name, line number, language, code) of every fenced block."""
  out = []
  for path in DOCS:
    lines = path.read_text(encoding='utf-8').splitlines()
    i = 0
    while i < len(lines):
      m = re.match(r'^```(\w*)\s*$', lines[i])
      if m:
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith('```'))
        out.append((path.name, i + 1, m.group(1), '\n'.join(lines[i + 1:end]) + '\n'))
        i = end
      i += 1
  return out


PYTHON = [b for b in _blocks() if b[2] == 'python']


def _key(block):
  name, _, _, code = block
  return name, code.splitlines()[0]


def test_every_special_case_names_an_existing_block():
  keys = {_key(b) for b in PYTHON}
  assert set(SETUP) | set(CHECKS) | set(NOT_RUN) <= keys
  assert len(PYTHON) >= 4  # README: dataset fields, sum fusion; datasheet: build, read


# A block that builds or reads the AV-MNIST data is a long end-to-end check: the reading example
# needs the build, so `-m "not slow"` must leave out both.
@pytest.mark.parametrize('block', [
    pytest.param(b, id=f'{b[0]}:{b[1]}', marks=[pytest.mark.slow] if 'avmnist/' in b[3] else [])
    for b in PYTHON])
def test_python_block_runs(block, tfds_data_dir, tmp_path):
  key = _key(block)
  if key in NOT_RUN:
    pytest.skip(NOT_RUN[key])
  code = block[3]
  if 'MMJAX_RAW_DATA_DIR' in code and not has_raw_data():
    pytest.skip(f'no raw data at {RAW_DATA_DIR}')
  script = tmp_path / 'block.py'
  script.write_text(SETUP.get(key, '') + code + CHECKS.get(key, ''), encoding='utf-8')
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu', TFDS_DATA_DIR=tfds_data_dir,
             MMJAX_RAW_DATA_DIR=str(RAW_DATA_DIR), MMJAX_RAW_DOWNLOAD='0')
  proc = subprocess.run(['timeout', '-k', '10', '600', sys.executable, str(script)], cwd=REPO,
                        env=env, capture_output=True, text=True, check=False)
  assert proc.returncode == 0, f'{block[0]}:{block[1]}\n{proc.stderr[-3000:]}'


# ------------------------------------------------------------------------------------------------
# The datasheet's build command: `python -m mmjax.data.build ... --manual_dir=RAW`


def test_build_command_fills_in_mmjax_defaults():
  assert build.with_defaults(['build', 'avmnist', '--manual_dir=r']) == [
      'build', 'avmnist', '--manual_dir=r', f'--imports={build.IMPORTS}',
      '--file_format=array_record']
  given = ['build', 'x', '--imports=my.module', '--file_format=tfrecord']
  assert build.with_defaults(given) == given


@needs_raw_data
@pytest.mark.slow
def test_build_command_reads_the_raw_dir_from_manual_dir(tmp_path):
  """The documented command, with a relative --manual_dir and no MMJAX_RAW_DATA_DIR: the files
  can only come from the manual dir."""
  env = {k: v for k, v in os.environ.items() if k not in ('MMJAX_RAW_DATA_DIR', 'TFDS_DATA_DIR')}
  env.update(PYTHONPATH=str(REPO), MMJAX_RAW_DOWNLOAD='0', XDG_CACHE_HOME=str(tmp_path / 'cache'))
  manual = os.path.relpath(RAW_DATA_DIR, tmp_path)
  proc = subprocess.run(
      ['timeout', '-k', '10', '600', sys.executable, '-m', 'mmjax.data.build', 'fsdd/clean',
       f'--manual_dir={manual}', '--data_dir=tfds'], cwd=tmp_path, env=env, capture_output=True,
      text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  built, = (tmp_path / 'tfds' / 'fsdd' / 'clean').iterdir()  # the version folder
  assert sorted(p.name for p in built.glob('*.array_record-*')) == [
      f'fsdd-{split}.array_record-00000-of-00001' for split in ('test', 'train', 'validation')]
  assert not (tmp_path / 'cache').exists()


# ------------------------------------------------------------------------------------------------
# CI runs what the README tells users to run


def test_a_wrong_raw_data_dir_stops_the_suite_instead_of_skipping(tmp_path):
  """Every test of the real data skips without it; a mistyped MMJAX_RAW_DATA_DIR in the README's
  command must not make the suite pass having run none of them."""
  proc = run_python(['-m', 'pytest', '-n', '0', '--collect-only', 'tests/test_docs.py'],
                    env_extra={'MMJAX_RAW_DATA_DIR': str(tmp_path / 'nowhere')}, timeout=120)
  assert proc.returncode != 0
  assert f'MMJAX_RAW_DATA_DIR={tmp_path / "nowhere"} holds no mnist/ and fsdd/recordings/' in (
      proc.stderr), (proc.stdout[-2000:], proc.stderr[-2000:])


def test_ci_runs_the_readme_test_command_verbatim():
  proc = subprocess.run(['bash', '.ci/run', '--dry-run'], cwd=REPO, capture_output=True, text=True,
                        check=False, timeout=60)
  assert proc.returncode == 0, proc.stderr
  command = proc.stdout.strip().removeprefix('+ ')
  quickstart = (REPO / 'README.md').read_text(encoding='utf-8').split('## Quickstart')[1]
  quickstart = quickstart.split('\n## ')[0]
  assert command in quickstart.splitlines()
  assert command.endswith("pip install -e '.[test]' && MMJAX_RAW_DATA_DIR=../shared/data "
                          'python -m pytest')
  # Wherever else a code block of the README runs pytest, it is this line.
  blocks = (REPO / 'README.md').read_text(encoding='utf-8').split('```')[1::2]
  shown = [line for block in blocks for line in block.splitlines() if 'pytest' in line]
  assert len(shown) >= 2 and set(shown) == {command}, shown


@pytest.mark.parametrize('variant', [
    "pip install -e '.[test]' && MMJAX_RAW_DATA_DIR=../shared/data python -m pytest",
    'MMJAX_RAW_DATA_DIR=../shared/data python -m pytest',
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && "
    'MMJAX_RAW_DATA_DIR=../shared/data python -m pytest -x',
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && python -m pytest",
    'python -m pytest tests/test_train.py',
])
def test_ci_refuses_a_readme_that_shows_another_test_command(tmp_path, variant):
  """A second, different test command in the README would go untested: .ci/run stops."""
  (tmp_path / '.ci').mkdir()
  shutil.copy(REPO / '.ci' / 'run', tmp_path / '.ci' / 'run')
  readme = (REPO / 'README.md').read_text(encoding='utf-8')
  (tmp_path / 'README.md').write_text(readme + f'\n```bash\n{variant}\n```\n', encoding='utf-8')
  proc = subprocess.run(['bash', str(tmp_path / '.ci' / 'run'), '--dry-run'], capture_output=True,
                        text=True, check=False, timeout=60)
  assert proc.returncode == 1 and variant in proc.stderr, proc.stdout + proc.stderr
  # A README whose only test command does not point the tests at the raw data is refused too.
  for text in ('no test command here\n', readme.replace('MMJAX_RAW_DATA_DIR=../shared/data ', '')):
    (tmp_path / 'README.md').write_text(text, encoding='utf-8')
    proc = subprocess.run(['bash', str(tmp_path / '.ci' / 'run'), '--dry-run'],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 1 and 'must show one test command line' in proc.stderr


def test_ci_runs_the_command_as_written_and_refuses_what_acts_before_the_conftest(tmp_path):
  """.ci/run executes the README's line itself, in its own environment (stubs stand in for
  python3, pip and python here). A shell that sets PYTEST_ADDOPTS, PYTEST_PLUGINS, PYTHONPATH or
  PYTHONHOME would change what the command runs before the tests can clear it (a `-k` in
  PYTEST_ADDOPTS would let CI pass on fewer tests): .ci/run stops instead of running it."""
  (tmp_path / '.ci').mkdir()
  shutil.copy(REPO / '.ci' / 'run', tmp_path / '.ci' / 'run')
  shutil.copy(REPO / 'README.md', tmp_path / 'README.md')
  stubs = tmp_path / 'stubs'
  stubs.mkdir()
  (stubs / 'python3').write_text(  # `python3 -m venv .venv`: an activate script with stubs
      '#!/bin/bash\nmkdir -p .venv/bin\n'
      """printf 'pip() { :; }\\npython() { echo "$*" > "$ENV_PROBE_OUT.args"; """
      """env > "$ENV_PROBE_OUT"; }\\n' > .venv/bin/activate\n""")
  (stubs / 'python3').chmod(0o755)
  out = tmp_path / 'env.txt'
  clean = {k: v for k, v in os.environ.items()
           if k not in ('PYTEST_ADDOPTS', 'PYTEST_PLUGINS', 'PYTHONPATH', 'PYTHONHOME')}
  env = {**clean, 'PATH': f'{stubs}:{os.environ["PATH"]}', 'ENV_PROBE_OUT': str(out),
         'A_USER_SETTING': 'kept'}
  proc = subprocess.run(['bash', str(tmp_path / '.ci' / 'run')], env=env, capture_output=True,
                        text=True, check=False, timeout=60)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  seen = dict(line.split('=', 1) for line in out.read_text().splitlines() if '=' in line)
  assert seen['MMJAX_RAW_DATA_DIR'] == '../shared/data' and seen['A_USER_SETTING'] == 'kept'
  assert (tmp_path / 'env.txt.args').read_text().strip() == '-m pytest'
  out.unlink()
  for name, value in (('PYTEST_ADDOPTS', '-k nothing'), ('PYTEST_PLUGINS', 'elsewhere'),
                      ('PYTHONPATH', '/elsewhere'), ('PYTHONHOME', '/elsewhere')):
    proc = subprocess.run(['bash', str(tmp_path / '.ci' / 'run')], env={**env, name: value},
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 1 and not out.exists(), proc.stdout + proc.stderr
    assert f'this shell sets {name}, which would change what it runs: unset {name}' in (
        proc.stderr), proc.stderr


@pytest.mark.slow
def test_the_suite_clears_what_a_fresh_machine_would_not_have_set(tmp_path):
  """A forced device count, a platform, a prebuilt TFDS_DATA_DIR, a PYTHONPATH or an mmjax
  setting in the shell that runs the README's command must not reach the tests; scripts that
  tests start keep what their test gives them."""
  out = tmp_path / 'env.json'
  raw = tmp_path / 'raw'  # what the suite checks a raw-data dir for, and nothing in it
  for d in ('mnist', 'fsdd/recordings'):
    (raw / d).mkdir(parents=True)
  env = {**os.environ, 'TFDS_DATA_DIR': '/prebuilt', 'MMJAX_RAW_DATA_DIR': str(raw),
         'MMJAX_COMPILATION_CACHE': '/elsewhere', 'PYTHONPATH': str(REPO),
         'XLA_FLAGS': '--xla_force_host_platform_device_count=4', 'JAX_PLATFORMS': 'cpu',
         'PIP_DEFAULT_TIMEOUT': '60', 'ENV_PROBE_OUT': str(out)}
  proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                         'tests/scripts/env_probe.py'], cwd=REPO, env=env, capture_output=True,
                        text=True, check=False, timeout=300)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  seen = json.loads(out.read_text())
  assert not set(seen) & {'PYTHONPATH', 'XLA_FLAGS', 'JAX_PLATFORMS'}, seen
  assert {'PATH', 'HOME', 'PIP_DEFAULT_TIMEOUT'} <= set(seen)
  assert seen['MMJAX_RAW_DATA_DIR'] == str(raw)
  assert seen['TFDS_DATA_DIR'] != '/prebuilt'  # the session's own directory
  assert seen['MMJAX_COMPILATION_CACHE'] != '/elsewhere'  # likewise
  # A script a test starts imports the conftest too, and keeps its variables.
  child = subprocess.run([sys.executable, '-c', 'import os, tests.conftest; '
                          'print(os.environ["XLA_FLAGS"])'], cwd=REPO, env=env,
                         capture_output=True, text=True, check=False, timeout=120)
  assert child.stdout.strip() == '--xla_force_host_platform_device_count=4', child.stderr


def test_build_command_is_the_tfds_cli_build_command():
  """`tfds build` (whose console script needs TensorFlow) parses into the same class."""
  import tensorflow_datasets  # pylint: disable=import-outside-toplevel
  cli = pathlib.Path(tensorflow_datasets.__file__).parent / 'scripts' / 'cli' / 'main.py'
  assert "'build': build.Args" in cli.read_text(encoding='utf-8')
  assert build.tfds_build.Args.__module__ == 'tensorflow_datasets.scripts.cli.build'


def _pytest_ini():
  import configparser  # pylint: disable=import-outside-toplevel
  ini = configparser.ConfigParser()
  ini.read(REPO / 'pytest.ini')
  return ini


def test_the_suite_runs_in_workers_that_share_one_data_dir(request, tmp_path_factory):
  """README (Tests): one pytest-xdist worker per core, at most 4, a test file per worker; the
  workers share the session's TFDS data dir (mmjax builds under a file lock)."""
  ini = _pytest_ini()
  addopts = ini['pytest']['addopts'].split()
  assert {'-n', 'auto', '--maxprocesses=4', '--dist=loadfile'} <= set(addopts), addopts
  assert addopts[addopts.index('-n') + 1] == 'auto'
  # As the README's command runs it: in workers, no --tfds-data-dir.
  if os.environ.get('PYTEST_XDIST_WORKER') and not request.config.getoption('tfds_data_dir'):
    shared = tmp_path_factory.getbasetemp().parent / 'tfds'
    assert os.environ['TFDS_DATA_DIR'] == str(shared)


def test_parallel_workers_share_one_tfds_dir_and_one_compilation_cache(
    tfds_data_dir, compilation_cache, tmp_path_factory):
  """docs/performance.md: one compilation cache for the session, shared by the workers (the
  README's command runs them) as the TFDS data is."""
  import jax  # pylint: disable=import-outside-toplevel
  assert jax.config.jax_compilation_cache_dir == compilation_cache
  assert os.environ['MMJAX_COMPILATION_CACHE'] == compilation_cache
  base = tmp_path_factory.getbasetemp()
  session = base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base
  for path in (tfds_data_dir, compilation_cache):
    assert pathlib.Path(path).parent == session, (path, base)


def test_the_readme_command_runs_the_slow_tests_and_not_slow_leaves_them_out():
  """README (Tests): the long end-to-end checks are marked `slow`; the README's command (and so
  CI) runs them, and `-m "not slow"` leaves them out. A misspelt mark is an error, not a test that
  silently stays in the quick loop."""
  ini = _pytest_ini()
  addopts = ini['pytest']['addopts'].split()
  assert '--strict-markers' in addopts and '-m' not in addopts, addopts
  assert ini['pytest']['markers'].strip().startswith('slow:')
  readme = (REPO / 'README.md').read_text(encoding='utf-8')
  command = readme.split('## Tests')[1].split('```bash\n')[1].splitlines()[0]
  assert command.endswith('python -m pytest'), command
  assert 'python -m pytest -m "not slow"' in readme
  proc = run_python(['-m', 'pytest', '-n', '0', '--collect-only', '-m', 'slow',
                     'tests/test_avmnist.py', 'tests/test_configs.py', 'tests/test_train.py'],
                    timeout=240)
  assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
  slow = {line.split('[')[0] for line in proc.stdout.splitlines() if '::' in line}
  assert {'tests/test_avmnist.py::test_two_builds_identical',
          'tests/test_configs.py::test_config_trains_on_synthetic_data',
          'tests/test_train.py::test_one_and_four_devices_agree'} <= slow, sorted(slow)
  assert 'tests/test_configs.py::test_the_issue_configs_exist' not in slow
  assert 'tests/test_avmnist.py::test_missing_raw_dir' not in slow


def test_every_metric_docs_metrics_md_names_is_logged(tmp_path):
  """docs/metrics.md's first column against the metrics.jsonl of a real (tiny) run."""
  from mmjax.training import train  # pylint: disable=import-outside-toplevel
  from tests.conftest import tiny_config  # pylint: disable=import-outside-toplevel
  table = [l for l in (REPO / 'docs' / 'metrics.md').read_text().splitlines()
           if l.startswith('| ') and ': `' in l]
  named = [(row.split('|')[1].split(':')[0].strip(), re.findall(r'`([^`]+)`', row.split('|')[1]))
           for row in table]
  train.train_and_evaluate(tiny_config(num_train_steps=2, log_every_steps=1), str(tmp_path))
  lines = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  keys = {split: set().union(*(l for l in lines if l['split'] == split))
          for split in {l['split'] for l in lines}}
  checked = 0
  for split, fields in named:
    for field in fields:
      if '<' in field:
        pattern = re.compile(re.sub(r'<[^>]+>', r'[^/]+', re.escape(field).replace(
            r'\<', '<').replace(r'\>', '>')) + '$')
        targets = keys.values() if split == 'any' else [keys[split]]
        assert any(any(pattern.match(k) for k in t) for t in targets), (split, field)
      else:
        targets = [k for s, k in keys.items() if s != 'train'] if split == 'any evaluator' else \
            [keys[split]]
        assert all(field in t for t in targets), (split, field, targets)
      checked += 1
  assert checked >= 15
