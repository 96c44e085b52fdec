"""The command line's parsing and its errors: every mistake a user can fix in a flag, an override
or a config file ends as one `mmjax: error: ...` line on stderr with exit status 1, instead of
absl's usage text or a traceback; and `--help`'s text (`usage`).

ml_collections raises bare KeyError/AttributeError/TypeError for bad `--config.*` overrides and
defers a config file's loading error to its first use; the functions here turn each into a line
that names the flag and the fix.
"""

import ast
import importlib
import pathlib
import re
import sys

from absl import flags

FLAGS = flags.FLAGS

# Config fields that were renamed or replaced: {old dotted name: what replaces it}. An override
# of an old name gets one line naming the replacement, not a guess at a similar field.
RENAMED_FIELDS = {
    'eval_every_steps': 'evals.validation.every_steps',
}

# Config files import their neighbours as `configs.<name>`; the repository's configs package is
# importable from any working directory, after the caller's own paths (a local `configs` wins).
REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


def make_configs_importable() -> None:
  if (REPOSITORY / 'configs' / '__init__.py').exists() and str(REPOSITORY) not in sys.path:
    sys.path.append(str(REPOSITORY))


def fail(message: str):
  sys.exit(f'mmjax: error: {message}')


def gist(text: str) -> str:
  """A possibly multi-line message (flag help, a traceback) on one line: first and last lines."""
  lines = [l.strip() for l in str(text).splitlines() if l.strip()]
  if not lines:
    return ''
  head = lines[0].rstrip(':')
  if len(lines) == 1:
    return head
  tail = re.sub(r'^[\w.]*(Error|Exception): ', '', lines[-1])
  return f'{head}: {tail}'


def _config_arg(argv) -> str | None:
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      return arg.split('=', 1)[1]
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _unknown_field(argv, error) -> str:
  """ml_collections raises a bare KeyError/AttributeError for `--config.<unknown>`: name the flag
  and the valid fields at that level."""
  while error.args and isinstance(error.args[0], Exception):  # AttributeError(KeyError(...))
    error = error.args[0]
  text = str(error.args[0]) if error.args else str(error)
  name = text.splitlines()[0].strip('\'"\\')
  hint = re.search(r'Did you mean "([^"]+)"', text)
  for arg in argv[1:]:
    path = arg.split('=', 1)[0].lstrip('-').split('.')
    if path[0] != 'config' or name not in path[1:]:
      continue
    field = '.'.join(path[1:])
    if field in RENAMED_FIELDS:
      return (f'--{".".join(path)}: no such config field; it was replaced by '
              f'--config.{RENAMED_FIELDS[field]}')
    if hint:
      return f'--{".".join(path)}: no such config field; did you mean {hint.group(1)}?'
    parent = '.'.join(path[1:path.index(name)])
    node = _file_value(argv, parent)
    if not node.keys():  # e.g. modality_dropout, {} by default: set the dict whole
      return (f'--{".".join(path)}: no such config field; config.{parent} is empty in this '
              f"config: set it whole, e.g. '--config.{parent}={{\"{name}\": VALUE}}'")
    return (f'--{".".join(path)}: no such config field; fields there: '
            f'{", ".join(sorted(node.keys()))}')
  return f'--config={_config_arg(argv)}: cannot load it ({type(error).__name__}: {name})'


def check_override_types(argv) -> None:
  """ml_collections takes any sequence for a tuple field (`hidden=abc` → ('abc',)); a tuple whose
  items have another type than the config file's would fail deep in the model."""
  overrides = FLAGS['config'].override_values
  if not overrides:
    return
  for path, value in overrides.items():
    node = _file_value(argv, path)
    if not isinstance(node, (tuple, list)) or not node:
      continue
    want = {type(v) for v in node}
    if not all(type(v) in want or (float in want and type(v) is int) for v in value):
      names = '/'.join(sorted(t.__name__ for t in want))
      fail(f'--config.{path}={value!r}: expected a tuple of {names} like {tuple(node)!r}')


def _file_value(argv, path: str):
  """The value of config field `path` as the config file (without overrides) sets it."""
  node = FLAGS['config'].parser.parse(_config_arg(argv))
  for key in filter(None, path.split('.')):
    node = node[key]
  return node


def _flag_error(argv, error) -> str:
  message = gist(error)
  required = re.search(r'Flag --(\w+) must have a value other than None', message)
  if required:
    return f'{message.rstrip(".")}; give --{required.group(1)}=<value>'
  override = re.match(r'flag --config\.([\w.]+)=', message)
  if override:
    try:
      value = _file_value(argv, override.group(1))
      return (f'{message}; --config.{override.group(1)} takes a value of type '
              f'{type(value).__name__}, e.g. {value!r}')
    except Exception:  # pylint: disable=broad-except  (no better hint than the message itself)
      pass
  return f'{message}; see --helpfull'


def _split_items(spec: str) -> list[str]:
  """`spec` split at the commas outside brackets and quotes, so that a value may hold a tuple,
  a dict or a regex such as `a{2,3}`."""
  items, depth, quote, start = [], 0, '', 0
  for i, char in enumerate(spec):
    if quote:
      quote = '' if char == quote else quote
    elif char in '\'"':
      quote = char
    elif char in '([{':
      depth += 1
    elif char in ')]}':
      depth = max(depth - 1, 0)
    elif char == ',' and not depth:
      items.append(spec[start:i])
      start = i + 1
  return items + [spec[start:]]


def expand_config_arg(argv: list[str]) -> list[str]:
  """`--config=FILE.py:VARIANT,a.b=1,c=2` (big_vision's `key=value` list after the file) as
  `--config=FILE.py:VARIANT --config.a.b=1 --config.c=2`; the variant may be left out."""
  out = []
  for i, arg in enumerate(argv):
    value = arg[len('--config='):] if arg.startswith('--config=') else None
    if value is None and i > 0 and argv[i - 1] == '--config':
      value, out = arg, out[:-1]
    if value is None or ':' not in value:
      out.append(arg if value is None else f'--config={value}')
      continue
    path, _, spec = value.partition(':')
    items = [item for item in _split_items(spec) if item]
    variants = [item for item in items if '=' not in item]
    if len(variants) > 1:
      fail(f'--config={value}: one variant at most before the key=value items, got '
            f'{", ".join(variants)}')
    out.append(f'--config={path}' + (f':{variants[0]}' if variants else ''))
    out += [f'--config.{item}' for item in items if '=' in item]
  return out


def parse_flags(argv):
  """absl's parser, with every error as one `mmjax: error:` line instead of usage text."""
  # ml_collections finds `--config.*` overrides in sys.argv itself, so the expansion goes there.
  argv = sys.argv[:] = expand_config_arg(argv)
  try:
    return FLAGS(argv)
  except flags.Error as e:
    fail(_flag_error(argv, e))
  except (AttributeError, KeyError) as e:  # an override of a field the config lacks
    fail(_unknown_field(argv, e))
  except (TypeError, ValueError) as e:  # an override value the field cannot take
    fail(f'{gist(e)}; give a value of the type the config file uses')
  except (OSError, ImportError, SyntaxError) as e:  # an override loads the file, which fails
    fail(_cannot_load(e, _config_arg(argv)))


def load_config():
  """The config; ml_collections defers a config file's loading error to this first access."""
  try:
    config = FLAGS.config
    config.keys()  # a file that failed to load raises on first attribute access
    return config
  except (OSError, ImportError, SyntaxError) as e:
    fail(_cannot_load(e, FLAGS['config'].config_filename))


def _cannot_load(e: Exception, filename) -> str:
  detail = [l.strip() for l in str(e).splitlines() if l.strip()][-1]
  return (f'--config={filename}: cannot load it ({detail}); check the path and that it defines '
          'get_config()')


def _variants(path: pathlib.Path) -> str:
  """The variants a config file accepts, from the error its get_config gives an unknown one."""
  try:
    module = importlib.import_module(f'configs.{path.stem}')
    module.get_config('?')
  except ValueError as e:
    found = re.search(r'valid: (.+)$', str(e))
    if found:
      return found.group(1)
  except Exception:  # pylint: disable=broad-except  (help text only: leave the variants out)
    pass
  return ''


def usage(summary: str) -> str:
  """--help's text: how to run, the shipped configs with their variants, the override syntax."""
  lines = [summary.strip(), '',
           'usage: python -m mmjax.main --config=configs/NAME.py[:VARIANT][,FIELD=VALUE,...] '
           '--workdir=DIR [--config.FIELD=VALUE ...]', '',
           'Configs (the first variant is the default):']
  for path in sorted((REPOSITORY / 'configs').glob('*.py')):
    if path.stem in ('__init__', 'default'):
      continue
    doc = (ast.get_docstring(ast.parse(path.read_text(encoding='utf-8'))) or '').splitlines()
    summary = doc[0] + (' …' if len(doc) > 1 and doc[1] else '') if doc else ''
    lines.append(f'  {path.name:24}{summary}')
    variants = _variants(path)
    if variants:
      lines.append(f'  {"":24}variants: {variants}')
  lines += ['', 'Override any field with --config.FIELD=VALUE, dotted for nested fields',
            '(--config.optimizer.learning_rate=0.01), tuples as (32,), dicts as JSON',
            '(\'--config.modality_dropout={"image": 0.3}\'). Every field: configs/default.py.', '']
  return '\n'.join(lines)
