"""The layers' imports point one way: no import cycle among mmjax's modules (a registry names the
modules that register into it instead of importing them at the bottom of a file), and mmjax never
imports the scripts and configs built on it."""

import ast

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
           'mmjax.train': {'mmjax.objectives'}}
  assert _cycles(graph) == [['mmjax.contrastive', 'mmjax.objectives']]


def test_mmjax_never_imports_experiments_or_configs():
  for path in (REPO / 'mmjax').rglob('*.py'):
    upward = {m for m in _imports(path, None, module_level_only=False)
              if m.split('.')[0] in ('experiments', 'configs', 'tests')}
    assert not upward, (path, upward)
