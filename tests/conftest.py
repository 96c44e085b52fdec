"""Shared test setup: built datasets go to a per-session temporary TFDS_DATA_DIR, never ../shared."""

import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# Resolved once, here, against the directory pytest started in (the README runs it from the
# repository root with MMJAX_RAW_DATA_DIR=../shared/data); the absolute path is put back so that
# links made from it and subprocesses started elsewhere see the same folder.
RAW_DATA_DIR = pathlib.Path(os.path.abspath(os.path.expanduser(
    os.environ.get('MMJAX_RAW_DATA_DIR') or REPO.parent / 'shared' / 'data')))
if os.environ.get('MMJAX_RAW_DATA_DIR'):
  os.environ['MMJAX_RAW_DATA_DIR'] = str(RAW_DATA_DIR)
# Runs started by tests write nothing to ~/.cache; see `compilation_cache` below. A script a test
# started (tests/scripts) imports this module too, and keeps the session's cache it was given.
os.environ.setdefault('MMJAX_COMPILATION_CACHE', 'off')


def clear_shell_environment():
  """The README's test command passes on a fresh machine whatever the shell that runs it has set:
  what JAX, XLA, TFDS, mmjax or a child Python would read from the environment (a forced device
  count, a platform, a prebuilt TFDS_DATA_DIR, a PYTHONPATH) is cleared before a test module
  imports JAX. The raw data's location is the one input the command gives; a prebuilt TFDS data
  dir is an explicit option (`--tfds-data-dir`). Only pytest's own process does this: scripts
  that tests start import this module too, with the variables their test gave them."""
  for name in list(os.environ):
    if (name.startswith(('JAX_', 'XLA_', 'TFDS_', 'MMJAX_')) or name == 'PYTHONPATH') and (
        name != 'MMJAX_RAW_DATA_DIR'):
      del os.environ[name]


def has_raw_data() -> bool:
  """Whether RAW_DATA_DIR holds the raw MNIST and FSDD folders the real-data tests read."""
  return all((RAW_DATA_DIR / d).is_dir() for d in ('mnist', 'fsdd/recordings'))


# Marks a test of the real data: skipped without it, which a wrong MMJAX_RAW_DATA_DIR cannot
# cause (pytest_configure stops the suite instead).
needs_raw_data = pytest.mark.skipif(
    not has_raw_data(), reason=f'raw MNIST/FSDD data not found at {RAW_DATA_DIR}: set '
    'MMJAX_RAW_DATA_DIR to a folder holding mnist/*.gz and fsdd/recordings/*.wav')


def pytest_configure(config):  # pylint: disable=unused-argument
  if os.environ.get('MMJAX_RAW_DATA_DIR') and not has_raw_data():
    # A wrong path would otherwise skip every test of the real data, and the suite would pass.
    raise pytest.UsageError(
        f'MMJAX_RAW_DATA_DIR={RAW_DATA_DIR} holds no mnist/ and fsdd/recordings/ folders: point it '
        'at the raw data (../shared/data from the repository root), or unset it')
  clear_shell_environment()
  os.environ['MMJAX_COMPILATION_CACHE'] = 'off'  # until the session's own cache (below)


def pytest_addoption(parser):
  parser.addoption('--tfds-data-dir', default=None,
                   help='Read (and build missing) TFDS datasets here instead of in a temporary '
                        'directory of the session.')


def _session_dir(tmp_path_factory, name: str) -> str:
  """A temporary directory of the whole session: with parallel workers (pytest-xdist), the one
  above each worker's own."""
  if not os.environ.get('PYTEST_XDIST_WORKER'):
    return str(tmp_path_factory.mktemp(name))
  shared = tmp_path_factory.getbasetemp().parent / name
  shared.mkdir(exist_ok=True)
  return str(shared)


@pytest.fixture(scope='session', autouse=True)
def temporary_files(tmp_path_factory):
  """The session's processes (workers and the scripts tests start) make their temporary files in
  pytest's temporary directory, which pytest prunes, not in the system's: TFDS leaves an empty
  `tmp*tfds` folder there each time it opens a dataset that is not built yet."""
  path = _session_dir(tmp_path_factory, 'tmp')
  os.environ['TMPDIR'] = path
  tempfile.tempdir = path
  return path


@pytest.fixture(scope='session', autouse=True)
def tfds_data_dir(request, tmp_path_factory):
  """Every test builds TFDS data into one session directory, or `--tfds-data-dir`. Parallel
  workers (pytest-xdist) share the directory: mmjax builds a dataset under a file lock, so the
  first worker that needs one builds it and the others wait for it."""
  given = request.config.getoption('tfds_data_dir')
  path = os.path.abspath(given) if given else _session_dir(tmp_path_factory, 'tfds')
  os.environ['TFDS_DATA_DIR'] = path
  return path


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent compilation cache for the session, in a temporary directory shared by the
  parallel workers like the TFDS data: a program that one test compiled, in any worker or in a
  subprocess, loads in the next (most tests train the same few configs). A load that meets an
  entry still being written fails, and JAX compiles instead. Tests of the cache itself give their
  own directory."""
  path = _session_dir(tmp_path_factory, 'jax_cache')
  os.environ['MMJAX_COMPILATION_CACHE'] = path
  from mmjax import compilation  # pylint: disable=import-outside-toplevel
  compilation.enable_cache(path)
  return path


def full_suite_only(*values, id=None):  # pylint: disable=redefined-builtin
  """A parametrized case that only the whole suite runs (marked slow): the quick loop keeps one or
  a few cases of each family, the README's command runs them all."""
  return pytest.param(*values, id=id, marks=pytest.mark.slow)


def override(config, **overrides):
  """Sets dotted fields: override(config, **{'optimizer.name': 'sgd'})."""
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def small_config(variant: str = 'synthetic', **overrides):
  """A configs/late_fusion.py:<variant> config shrunk for fast tests."""
  from configs import late_fusion  # pylint: disable=import-outside-toplevel
  config = late_fusion.get_config(variant)
  config.batch_size = 16
  config.num_train_steps = 8
  config.log_every_steps = 4
  config.evals.validation.every_steps = 8
  config.checkpoint_every_steps = 4
  return override(config, **overrides)


def _python(args, env_extra, timeout) -> dict:
  """subprocess arguments of `python ARGS` from the repository root, killed after `timeout` s."""
  return {'args': ['timeout', '-k', '10', str(timeout), sys.executable, *args], 'cwd': REPO,
          'env': dict(os.environ, PYTHONPATH=str(REPO), **(env_extra or {}))}


def run_python(args, env_extra=None, timeout=300):
  """`python ARGS` in a subprocess from the repository root, killed after `timeout` seconds."""
  return subprocess.run(**_python(args, env_extra, timeout), capture_output=True, text=True,
                        check=False)


def start_python(args, env_extra=None, timeout=300, **popen):
  """The same process as `run_python`, started and not waited for (`popen`: Popen's options)."""
  return subprocess.Popen(**_python(args, env_extra, timeout), **popen)


def tree_digest(path) -> dict:
  """{relative path: sha256, or 'dir'} of everything under `path` ({} if it does not exist)."""
  root = pathlib.Path(path)
  digest = lambda p: 'dir' if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
  return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob('*'))}


def tiny_config(**overrides):
  """tests/scripts/tiny_config.py (image + audio, 4-channel CNNs) with `overrides`."""
  from tests.scripts import tiny_config as tiny  # pylint: disable=import-outside-toplevel
  config = tiny.get_config()
  return override(config, **overrides)


@pytest.fixture
def small_disk(tmp_path):
  """mount(size) → a fresh tmpfs of `size` (e.g. '2m') under tmp_path; grow(path, size) enlarges
  it. Unmounted afterwards; the test is skipped where mounting is not permitted."""
  mounted = []

  def mount(size: str) -> pathlib.Path:
    path = tmp_path / f'disk{len(mounted)}'
    path.mkdir()
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
      pytest.skip(f'cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode})')
    mounted.append(path)
    return path

  def grow(path, size: str) -> None:
    subprocess.run(['mount', '-o', f'remount,size={size}', str(path)], check=True)

  yield mount, grow
  for path in mounted:
    subprocess.run(['umount', '-l', str(path)], check=False)
