"""A runner keeps one view up to date: read a page after the view's position, apply it
in one transaction with its tracking record, repeat; sleep until LISTEN wakes it, or
``poll_interval`` passes, when there is nothing to read.

It holds no state that the database does not: after any error, a new runner starts
from the tracking position and neither loses nor repeats an update.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from projections.engine.control import Control
from projections.engine.errors import PositionMoved
from projections.engine.listener import Listener
from projections.engine.log import LogReader
from projections.engine.registry import AnyProjection

log = logging.getLogger(__name__)

OnPage = Callable[[str, int], None]


class ViewRunner:
    def __init__(
        self,
        projection: AnyProjection,
        reader: LogReader,
        control: Control,
        *,
        page_size: int,
        poll_interval: float,
        wakeup: threading.Event | None = None,
        listener: Listener | None = None,
        on_page: OnPage | None = None,
    ) -> None:
        self.projection = projection
        self.name = projection.name
        self.reader = reader
        self.control = control
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.wakeup = wakeup or threading.Event()
        self.listener = listener
        self.on_page = on_page or (lambda name, position: None)
        self.pages = 0

    def catch_up(self) -> int:
        """Apply every page stored so far; returns the view's position (tests, rebuilds)."""
        stop = threading.Event()
        return self._run(stop, until_caught_up=True)

    def run(self, stopping: threading.Event) -> None:
        """Follow the log until ``stopping`` is set. Raises whatever stops the view."""
        self._run(stopping, until_caught_up=False)

    def _run(self, stopping: threading.Event, *, until_caught_up: bool) -> int:
        skips = self.control.skips(self.name)
        position: int = self.projection.view.position()
        reported = False  # the position is reported once the view is past what stopped it
        woke_by_timer = False
        while not stopping.is_set():
            page = self.reader.read(position, self.page_size)
            if not page.size and not reported:  # caught up, nothing in the way
                self.on_page(self.name, position)
                reported = True
            if page.size:
                if woke_by_timer and self.listener is not None:
                    self.listener.missed()
                woke_by_timer = False
                try:
                    self.projection.process_page(page, skips)
                except PositionMoved as moved:
                    log.info("%s; following it from %d", moved, moved.found)
                    position = self.projection.view.position()
                    self.on_page(self.name, position)
                    reported = True
                    continue
                position = page.last
                self.pages += 1
                self.on_page(self.name, position)
                reported = True
                if page.size == self.page_size:
                    continue
            if until_caught_up:
                break
            woke_by_timer = not self.wakeup.wait(self.poll_interval)
            self.wakeup.clear()
        return position
