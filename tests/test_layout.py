"""The layers' imports point one way: no import cycle among mmjax's modules (a package registers its
members in its `__init__` instead of a module importing them at the bottom of a file), every
import points to the importer's layer or one below it (README's Layout), and mmjax never imports
the scripts and configs built on it. Functions stay short, and each config field has one reader."""

import ast
import re

from tests.conftest import REPO


def _module_name(path) -> str:
  name = '.'.join(path.relative_to(REPO).with_suffix('').parts)
  return name.removesuffix('.__init__')


def _imports(path, modules, module_level_only=True) -> set[str]:
  tree = ast.parse(path.read_text(encoding='utf-8'))
  nodes = tree.body if module_level_only else list(ast.walk(tree))
  found = set()
  for node in nodes:
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      found |= {node.module} | {f'{node.module}.{a.name}' for a in node.names}
  return {m for m in found if m in modules} if modules is not None else found


def _graph() -> dict[str, set[str]]:
  paths = {_module_name(p): p for p in (REPO / 'mmjax').rglob('*.py')}
  return {name: _imports(path, paths) - {name} for name, path in paths.items()}


def _cycles(graph) -> list[list[str]]:
  """Every cycle found by a depth-first walk from each module (each reported once)."""
  found = set()

  def walk(node, stack):
    for dep in sorted(graph.get(node, ())):
      if dep in stack:
        cycle = stack[stack.index(dep):]
        found.add(tuple(cycle[cycle.index(min(cycle)):] + cycle[:cycle.index(min(cycle))]))
      elif len(stack) < len(graph):
        walk(dep, stack + [dep])

  for start in graph:
    walk(start, [start])
  return [list(c) for c in sorted(found)]


def test_no_import_cycle_among_mmjax_modules():
  assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle():
  """objectives imported contrastive at its bottom to register it, and contrastive imports
  objectives: the walk reports that pair."""
  graph = {'mmjax.objectives': {'mmjax.contrastive'}, 'mmjax.contrastive': {'mmjax.objectives'},
           'mmjax.training.train': {'mmjax.objectives'}}
  assert _cycles(graph) == [['mmjax.contrastive', 'mmjax.objectives']]


# README's Layout, bottom to top: a module may import its own layer and those below it.
LAYERS = (
    ('infrastructure', ('mmjax', 'mmjax.errors', 'mmjax.registry', 'mmjax.parallel',
                        'mmjax.workdir', 'mmjax.writers', 'mmjax.checkpoint', 'mmjax.compilation',
                        'mmjax.preemption', 'mmjax.profiling', 'mmjax.plot', 'mmjax.health',
                        'mmjax.optim', 'mmjax.pid', 'mmjax.rng')),
    ('models and data', ('mmjax.models', 'mmjax.data', 'mmjax.corrupt')),
    ('paradigms', ('mmjax.objectives', 'mmjax.evaluators')),
    ('run loop', ('mmjax.training',)),
    ('entry points', ('mmjax.main', 'mmjax.cli')),
)


def _layer(module: str) -> int | None:
  """The index in LAYERS of `module`'s layer: a package's name covers its submodules."""
  for level, (_, members) in enumerate(LAYERS):
    if module in members or any(module.startswith(p + '.') for p in members if p != 'mmjax'):
      return level
  return None


def _upward_imports(graph) -> list[tuple[str, str]]:
  return sorted((m, dep) for m, deps in graph.items() for dep in deps
                if _layer(dep) > _layer(m))


def test_every_module_has_a_layer_and_imports_none_above_it():
  graph = _graph()
  assert [m for m in graph if _layer(m) is None] == []
  assert _upward_imports(graph) == []


def test_the_layer_check_finds_an_import_from_above():
  """An objective that imported the trainer's steps would be reported."""
  graph = {'mmjax.objectives.distill': {'mmjax.training.steps', 'mmjax.checkpoint'},
           'mmjax.training.steps': {'mmjax.objectives'}}
  assert _upward_imports(graph) == [('mmjax.objectives.distill', 'mmjax.training.steps')]


def test_mmjax_never_imports_experiments_or_configs():
  for path in (REPO / 'mmjax').rglob('*.py'):
    upward = {m for m in _imports(path, None, module_level_only=False)
              if m.split('.')[0] in ('experiments', 'configs', 'tests')}
    assert not upward, (path, upward)


def test_readme_layout_names_every_module_and_package_of_mmjax():
  text = (REPO / 'README.md').read_text(encoding='utf-8')
  block = text[text.index('## Layout'):].split('```')[1]
  tree = block[block.index('mmjax/'):block.index('configs/')]
  # The first column of each line of the tree (a line may list several modules, comma-separated).
  first_columns = [re.split(r'\s{2,}', line.strip())[0] for line in tree.splitlines()
                   if re.match(r'  \S', line)]
  named = {name for column in first_columns for name in column.split(', ') if name}
  present = {p.name + ('/' if p.is_dir() else '') for p in (REPO / 'mmjax').iterdir()
             if p.name != '__init__.py' and p.name != '__pycache__' and
             (p.suffix == '.py' or (p / '__init__.py').exists())}
  assert named == present


def test_no_function_in_mmjax_is_over_60_lines_or_7_parameters():
  """A function a newcomer can read in one sitting (`self` and `cls` not counted)."""
  found = []
  for path in sorted((REPO / 'mmjax').rglob('*.py')):
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
      if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        continue
      args = node.args
      names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
      count = len(names) + bool(args.vararg) + bool(args.kwarg) - (names[:1] in (['self'], ['cls']))
      lines = node.end_lineno - node.lineno + 1
      if lines > 60 or count > 7:
        found.append(f'{path.relative_to(REPO)}:{node.lineno} {node.name}: {lines} lines, '
                     f'{count} parameters')
  assert found == []


# Sub-configs whose leaves belong to different owners: each leaf is read by its owner, and the
# owners lie inside the package named here (each objective reads its own `objective` fields, the
# data package `dataset`'s; a task's `num_classes` is the model's heads, its `weight` the loss's).
READ_BY_LEAF = {'objective': ('mmjax.objectives',), 'dataset': ('mmjax.data',),
                'tasks': ('mmjax.models.model', 'mmjax.objectives.classification')}


def _config_reads(tree, fields) -> set[str]:
  """The top-level config fields a module reads: `<…config>.field`, `<…config>.get('field')` and
  `<…config>['field']`, where the object's name says it is a run's config (a distillation
  teacher's saved config is named `teacher`)."""
  def is_config(node):
    name = node.id if isinstance(node, ast.Name) else getattr(node, 'attr', '')
    return 'config' in name.lower() or name in ('teacher', 'student')

  read = set()
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)
        and node.attr in fields and is_config(node.value)):
      read.add(node.attr)
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and node.func.attr == 'get' and is_config(node.func.value) and node.args
          and isinstance(node.args[0], ast.Constant) and node.args[0].value in fields):
      read.add(node.args[0].value)
    elif (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
          and is_config(node.value) and isinstance(node.slice, ast.Constant)
          and node.slice.value in fields):
      read.add(node.slice.value)
  return read


def _readers() -> dict[str, set[str]]:
  from configs import default  # pylint: disable=import-outside-toplevel
  fields = set(default.get_config().keys())
  readers = {}
  for path in sorted((REPO / 'mmjax').rglob('*.py')):
    module = _module_name(path)
    if module == 'mmjax.training.config_checks':  # validates every field before a run starts
      continue
    for field in _config_reads(ast.parse(path.read_text(encoding='utf-8')), fields):
      readers.setdefault(field, set()).add(module)
  return readers


def test_each_config_field_is_read_in_one_module():
  """Renaming or changing a field touches its one reader (and config_checks); a field read in two
  modules is a contract between them that no one owns."""
  shared = {}
  for field, modules in _readers().items():
    owners = READ_BY_LEAF.get(field)
    if owners:
      modules = {m for m in modules if not any(m == o or m.startswith(o + '.') for o in owners)}
      if modules:
        shared[field] = sorted(modules)
    elif len(modules) > 1:
      shared[field] = sorted(modules)
  assert shared == {}


def test_the_reader_scan_finds_reads_through_attributes_get_and_subscripts():
  tree = ast.parse('def f(config, self, teacher):\n'
                   '  a = config.batch_size\n  b = self.config.get("seed")\n'
                   '  c = teacher["num_train_steps"]\n  config.evals = {}\n  d = cfg.seed\n')
  assert _config_reads(tree, {'batch_size', 'seed', 'num_train_steps', 'evals'}) == {
      'batch_size', 'seed', 'num_train_steps'}
