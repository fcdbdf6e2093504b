"""A bounded least-recently-used map: what a projection remembers between pages.

A projection's cache holds rows exactly as its last committed page left them, so the
next page need not read them back. It is only valid while nobody else writes the view:
the page transaction checks the tracking position, and any failure or moved position
clears the cache (``PageProjection.process_page``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def find(self, keys: Iterable[K]) -> tuple[dict[K, V], list[K]]:
        """The remembered values of ``keys``, and the keys it does not remember."""
        found: dict[K, V] = {}
        missing: list[K] = []
        for key in keys:
            value = self._items.get(key)
            if value is None:
                missing.append(key)
            else:
                self._items.move_to_end(key)
                found[key] = value
        return found, missing

    def remember(self, items: dict[K, V]) -> None:
        self._items.update(items)
        for key in items:
            self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def forget(self, keys: Iterable[K] = ()) -> None:
        for key in keys:
            self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()
