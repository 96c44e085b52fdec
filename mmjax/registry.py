"""Name → class registries, so configs choose components by name (big_vision style).

A registry lives in its package's base module; each member module registers into it and the
package's `__init__` imports the members, so the arrows point one way (package → member → base).
"""

from typing import Callable, Generic, TypeVar

from mmjax.errors import UserError

T = TypeVar('T')


class Registry(Generic[T]):
  """A named collection of components; `get` of an unknown name lists the valid ones."""

  def __init__(self, kind: str):
    self.kind = kind
    self._items: dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    def add(item: T) -> T:
      if name in self._items:
        raise ValueError(f'{self.kind} {name!r} is registered twice')
      self._items[name] = item
      return item
    return add

  def get(self, name: str, where: str = '') -> T:
    if name not in self._items:
      field = f' ({where})' if where else ''
      raise UserError(f'unknown {self.kind} {name!r}{field}; valid names: {", ".join(self.names())}')
    return self._items[name]

  def names(self) -> list[str]:
    return sorted(self._items)

  def __contains__(self, name: str) -> bool:
    return name in self._items
