"""Where each view is, for a process that reads the views but does not run them (the API).

Every page a live view commits announces itself on ``VIEWS_CHANNEL`` (``"<view>
<position>"``, a NOTIFY in the page's own transaction, so delivered on its commit:
projections/engine/view.py). This reader hears the announcements through the process's
listener, and re-reads the tracking positions every second (and whenever the listener
starts listening again), so a notification lost while its connection was down costs at
most a second; when that re-read finds a view further than announced, the listener may
have gone silent, and is told so.

It is a ``ViewProgress`` like the supervisor: ``wait_for`` is what read-your-writes, the
live streams and the audit export wait on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from eventsourcing.postgres import PostgresDatastore

from projections.engine.listener import VIEWS_CHANNEL, Listener
from projections.engine.progress import Positions
from projections.engine.registry import make_projection, view_names

log = logging.getLogger(__name__)

RESYNC_SECONDS = 1.0


class ViewPositions(Positions):
    def __init__(
        self, database_url: str, datastore: PostgresDatastore, names: list[str] | None = None,
        *, listener: Listener | None = None,
    ) -> None:  # fmt: skip
        """``listener``: the process's own, shared (else this reader makes and runs one)."""
        super().__init__(names or view_names())
        self.datastore = datastore
        self._owns_listener = listener is None
        self.listener = listener or Listener(database_url)
        self._unsubscribe: Callable[[], None] | None = None
        self._resync_now = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="view-positions", daemon=True)

    def start(self) -> ViewPositions:
        self._unsubscribe = self.listener.subscribe(VIEWS_CHANNEL, self._heard)
        self._resync()  # after subscribing: nothing announced in between is lost
        if self._owns_listener:
            self.listener.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._resync_now.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._owns_listener:
            self.listener.stop()
        if self._thread.is_alive():
            self._thread.join(5)

    def _heard(self, payload: str | None) -> None:
        """On the listener's thread: an announcement, or None when it starts listening
        (then what was announced before is read back, on this reader's thread)."""
        if payload is None:
            self._resync_now.set()
            return
        view, _, position = payload.partition(" ")
        if position.isdigit():
            self.advance(view, int(position))

    def _resync(self) -> bool:
        """Read every view's tracking position; True if one was further than announced."""
        found = False
        for name in self.names:
            try:
                found |= self.advance(name, make_projection(name, self.datastore).view.position())
            except Exception as error:  # e.g. its tables are not there yet
                log.debug("view %s position unknown: %s", name, error)
        return found

    def _run(self) -> None:
        while not self._stopping.is_set():
            asked = self._resync_now.wait(RESYNC_SECONDS)
            self._resync_now.clear()
            if self._stopping.is_set():
                return
            if self._resync() and not asked:
                self.listener.missed()
