"""How far each view is, and waiting until one gets somewhere: the one protocol the read
side is given (``ViewProgress``), and the one implementation of the waiting (``Positions``).

Two things know where the views are. In the process that runs them, the supervisor
hears it from its runners (projections/engine/supervisor.py); in any other process (the
API under ``agentboard up``) a reader hears what the views announce
(projections/engine/positions.py). Both move a ``Positions`` forward and answer with it,
so whoever waits (read-your-writes, the live streams, the audit export, ``/readyz``)
waits the same way and need not know where the views run: the composition root
(infra/bootstrap.py) hands it one or the other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Protocol

from projections.engine.errors import UnknownView


class ViewProgress(Protocol):
    names: list[str]

    def position(self, view: str) -> int:
        """The last log position ``view`` has applied (``UnknownView`` for a name we do
        not know)."""
        ...

    def positions(self) -> dict[str, int]: ...

    def wait_for(self, view: str, position: int, timeout: float) -> bool:
        """Block until ``view`` has applied ``position``; False if ``timeout`` seconds
        pass first."""
        ...


class Positions:
    """Each view's position, moved forward only, and a condition to wait on."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        self._positions = dict.fromkeys(self.names, 0)
        self._changed = threading.Condition()

    def position(self, view: str) -> int:
        if view not in self._positions:
            raise UnknownView(view, self.names)
        return self._positions[view]

    def positions(self) -> dict[str, int]:
        return dict(self._positions)

    def wait_for(self, view: str, position: int, timeout: float) -> bool:
        self.position(view)
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._positions[view] < position:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def advance(self, view: str, position: int) -> bool:
        """``view`` has applied ``position``; True if that is news. (A tracking position
        never goes back, so neither does this: an old announcement is ignored.)"""
        with self._changed:
            if view not in self._positions or position <= self._positions[view]:
                return False
            self._positions[view] = position
            self._changed.notify_all()
            return True
