"""Name → class registries, so configs choose components by name (big_vision style).

A registry may name the modules that register into it (`providers`): they are imported on its
first lookup. The module defining the registry then never imports them, and they import it: the
arrows point one way (objectives ← contrastive), with no import at the bottom of a file.
"""

import importlib
from typing import Callable, Generic, TypeVar

from mmjax.errors import UserError

T = TypeVar('T')


class Registry(Generic[T]):
  """A named collection of components; `get` of an unknown name lists the valid ones."""

  def __init__(self, kind: str, providers: tuple[str, ...] = ()):
    self.kind = kind
    self._items: dict[str, T] = {}
    self._providers = providers

  def _load_providers(self) -> None:
    while self._providers:
      module, self._providers = self._providers[0], self._providers[1:]
      importlib.import_module(module)

  def register(self, name: str) -> Callable[[T], T]:
    def add(item: T) -> T:
      if name in self._items:
        raise ValueError(f'{self.kind} {name!r} is registered twice')
      self._items[name] = item
      return item
    return add

  def get(self, name: str, where: str = '') -> T:
    self._load_providers()
    if name not in self._items:
      field = f' ({where})' if where else ''
      raise UserError(f'unknown {self.kind} {name!r}{field}; valid names: {", ".join(self.names())}')
    return self._items[name]

  def names(self) -> list[str]:
    self._load_providers()
    return sorted(self._items)

  def __contains__(self, name: str) -> bool:
    self._load_providers()
    return name in self._items
