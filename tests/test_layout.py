"""The layers' imports point one way: no import cycle among mmjax's modules (a package registers its
members in its `__init__` instead of a module importing them at the bottom of a file), every
import points to the importer's layer or one below it (README's Layout), and mmjax never imports
the scripts and configs built on it."""

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
