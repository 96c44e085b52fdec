"""setup.py declares what mmjax imports and nothing else; pytest.ini fails on mmjax deprecations."""

import ast
import importlib.metadata
import re
import runpy
import sys
import types
import warnings

import pytest

from tests.conftest import REPO

# Import name → distribution name, where they differ.
DISTRIBUTION = {'PIL': 'pillow', 'absl': 'absl-py', 'tensorflow_datasets': 'tensorflow-datasets',
                'orbax': 'orbax-checkpoint', 'ml_collections': 'ml-collections'}
# pytest-xdist is not imported: pytest.ini's addopts load it (-n auto).
TEST_ONLY = {'pytest', 'pytest-xdist', 'portpicker', 'librosa', 'dit'}
# Not imported by mmjax: TFDS imports it to build a dataset defined in a package, undeclared.
FOR_TFDS = {'importlib-resources'}
# Not imported by mmjax: jax's dependency, capped below a release slow to import (setup.py).
CAPPED = {'ml-dtypes'}


@pytest.fixture(scope='module')
def setup_kwargs():
  """The arguments setup.py passes to setuptools.setup (run with a stand-in setuptools)."""
  captured = {}
  stand_in = types.ModuleType('setuptools')
  stand_in.setup = lambda **kwargs: captured.update(kwargs)
  stand_in.find_packages = lambda **kwargs: []
  with pytest.MonkeyPatch.context() as mp:
    mp.setitem(sys.modules, 'setuptools', stand_in)
    mp.chdir(REPO)
    runpy.run_path(str(REPO / 'setup.py'))
  return captured


def _name(requirement: str) -> str:
  return re.split(r'[\[<>=!~; ]', requirement, maxsplit=1)[0].lower().replace('_', '-')


def _third_party_imports(*folders) -> set[str]:
  """Top-level modules imported by the .py files under `folders`, without the stdlib's and the
  repository's own."""
  own = {'mmjax', 'configs', 'tests', 'experiments'}
  found = set()
  for folder in folders:
    for path in (REPO / folder).rglob('*.py'):
      for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
          found |= {a.name.split('.')[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
          found.add(node.module.split('.')[0])
  return {m for m in found if m not in own and m not in sys.stdlib_module_names}


def _distributions(modules) -> set[str]:
  return {DISTRIBUTION.get(m, m).lower().replace('_', '-') for m in modules}


def test_install_requires_is_what_mmjax_and_its_scripts_import(setup_kwargs):
  """mmjax, its configs and the experiments/ scripts run on `pip install -e .` alone (the sweep
  and benchmark scripts once needed matplotlib and psutil from the test extra)."""
  required = {_name(r) for r in setup_kwargs['install_requires']}
  imported = _distributions(_third_party_imports('mmjax', 'experiments', 'configs'))
  assert required == imported | FOR_TFDS | CAPPED, (required ^ (imported | FOR_TFDS | CAPPED))
  assert 'array-record' not in required


def test_the_installed_ml_dtypes_is_the_capped_one(setup_kwargs):
  """ml_dtypes 0.7.0 adds a second to the start of every process that imports jax."""
  [cap] = [r for r in setup_kwargs['install_requires'] if _name(r) == 'ml-dtypes']
  assert cap.endswith(',<0.7'), cap
  major, minor = importlib.metadata.version('ml_dtypes').split('.')[:2]
  assert (int(major), int(minor)) < (0, 7)


def test_test_only_packages_are_in_the_test_extra(setup_kwargs):
  test_extra = {_name(r) for r in setup_kwargs['extras_require']['test']}
  required = {_name(r) for r in setup_kwargs['install_requires']}
  assert test_extra == TEST_ONLY and not test_extra & required
  # Everything the tests import (librosa only through importorskip) is installed by
  # `pip install -e '.[test]'`.
  used = _distributions(_third_party_imports('tests'))
  assert used <= required | test_extra, used - required - test_extra


def test_lower_bounds_are_not_only_the_newest_release(setup_kwargs):
  bounds = {_name(r): r for r in setup_kwargs['install_requires']}
  assert re.search(r'>=0\.10,<0\.13', bounds['jax'])
  for name in ('flax', 'optax', 'orbax-checkpoint', 'tensorflow-datasets', 'grain'):
    assert '>=' in bounds[name], bounds[name]
  assert {_name(r) for r in setup_kwargs['extras_require']['gcs']} == {
      'gcsfs', 'google-cloud-storage'}
  # The README's `tensorboard --logdir runs` needs TensorBoard, which nothing else installs.
  assert {_name(r) for r in setup_kwargs['extras_require']['tensorboard']} == {'tensorboard'}


def test_deprecations_from_mmjax_fail_and_others_stay_hidden():
  """pytest.ini turns a DeprecationWarning attributed to an mmjax module into an error."""
  with pytest.raises(DeprecationWarning, match='retired API'):
    warnings.warn_explicit('retired API', DeprecationWarning, 'mmjax/writers.py', 1,
                           module='mmjax.writers')
  # One raised inside a library is ignored: this line does not fail the test.
  warnings.warn_explicit('retired API', DeprecationWarning, 'somelib/x.py', 1, module='somelib.x')


def test_readme_states_the_bounds_setup_py_sets(setup_kwargs):
  text = (REPO / 'README.md').read_text(encoding='utf-8').split('## Install')[1].split('\n## ')[0]
  bounds = {_name(r): re.search(r'>=([\d.]+)', r).group(1) for r in setup_kwargs['install_requires']
            if '>=' in r}
  stated = {name: version for name, version in re.findall(r'\b([a-z][\w-]*) (\d+(?:\.\d+)+)\+', text)
            if name in bounds}
  assert set(stated) == {'flax', 'optax', 'orbax-checkpoint', 'grain', 'tensorflow-datasets'}
  assert all(bounds[name] == version for name, version in stated.items()), (stated, bounds)
  assert 'each below its next minor release, and tensorflow-datasets 4.9.10+ below 5' in ' '.join(
      text.split())
  caps = {_name(r): m.group(1) for r in setup_kwargs['install_requires']
          if (m := re.search(r'<([\d.]+)', r))}
  for name, version in stated.items():
    major, minor = version.split('.')[:2]
    assert caps[name] == ('5' if name == 'tensorflow-datasets' else f'{major}.{int(minor) + 1}')
  assert 'jax 0.10–0.12' in text and bounds['jax'] == '0.10'
  assert re.search(r'<0\.13', setup_kwargs['install_requires'][0])
