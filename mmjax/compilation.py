"""XLA compilation: how many times each jitted function compiled, and JAX's persistent cache.

A run compiles its train step and its eval step once each; `CompileLog` counts the compiles of
every function while it is active (from JAX's own compile events, so a cache load counts as one
compile, a jit cache hit as none).

The persistent compilation cache stores compiled executables on disk, so a rerun, a resume or an
eval-only run of the same config loads them instead of compiling again. `config.compilation_cache`
chooses where: 'auto' (the default) is `$MMJAX_COMPILATION_CACHE` if set, else
`$XDG_CACHE_HOME/mmjax/jax` (`~/.cache/mmjax/jax`); 'off' (here or in that variable) turns it
off; anything else is a directory.
"""

import collections
import os
import pathlib

from absl import logging
import jax
from jax import monitoring

from mmjax.errors import UserError

# The event JAX records around every XLA compile (or persistent-cache load), with `fun_name`.
_COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'
_CACHE_HIT_EVENT = '/jax/compilation_cache/cache_hits'
ENV = 'MMJAX_COMPILATION_CACHE'

_counts = collections.Counter()
_seconds = collections.Counter()
_cache_hits = [0]
_installed = [False]


def _on_duration(event, duration, **kwargs):
  if event == _COMPILE_EVENT:
    name = _short_name(str(kwargs.get('fun_name', '?')))
    _counts[name] += 1
    _seconds[name] += duration


def _on_event(event, **kwargs):
  del kwargs
  if event == _CACHE_HIT_EVENT:
    _cache_hits[0] += 1


def _short_name(fun_name: str) -> str:
  """'jit(train_step)' → 'train_step'."""
  return fun_name[4:-1] if fun_name.startswith('jit(') and fun_name.endswith(')') else fun_name


def _install():
  if not _installed[0]:
    monitoring.register_event_duration_secs_listener(_on_duration)
    monitoring.register_event_listener(_on_event)
    _installed[0] = True


class CompileLog:
  """Compiles per function name since it was created: `counts()`, `seconds()`, `cache_hits()`."""

  def __init__(self):
    _install()
    self._counts0, self._seconds0 = collections.Counter(_counts), collections.Counter(_seconds)
    self._hits0 = _cache_hits[0]

  def counts(self) -> dict[str, int]:
    return {k: v for k, v in (_counts - self._counts0).items() if v}

  def seconds(self) -> dict[str, float]:
    return {k: _seconds[k] - self._seconds0[k] for k in self.counts()}

  def cache_hits(self) -> int:
    """Executables loaded from the persistent cache instead of compiled."""
    return _cache_hits[0] - self._hits0

  def summary(self, names) -> str:
    counts, seconds = self.counts(), self.seconds()
    return ', '.join(f'{n} {counts.get(n, 0)}x ({seconds.get(n, 0.0):.1f}s)' for n in names)


def cache_dir(setting: str | None) -> str | None:
  """The persistent cache directory for a `config.compilation_cache` value; None when off."""
  setting = 'auto' if setting is None else str(setting).strip()
  if setting == 'auto':
    setting = os.environ.get(ENV, '').strip() or 'auto'
    if setting == 'auto':
      base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
      return os.path.join(base, 'mmjax', 'jax')
  if setting in ('off', ''):
    return None
  return os.path.abspath(os.path.expanduser(setting))


def enable_cache(setting: str | None) -> str | None:
  """Turns JAX's persistent compilation cache on (or leaves it off) as `setting` says; call it
  before anything is compiled. Returns the directory used, or None."""
  path = cache_dir(setting)
  if path is None:
    return None
  try:
    pathlib.Path(path).mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UserError(f'compilation_cache={path}: cannot create it ({e.strerror or e}); set '
                    f'--config.compilation_cache to a writable directory or to off') from None
  jax.config.update('jax_compilation_cache_dir', path)
  # Cache every executable, however quick to compile: the small ones add up at start-up.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  logging.info('persistent compilation cache: %s', path)
  return path
