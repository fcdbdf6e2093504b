"""Where each view is, for a process that reads the views but does not run them (the API).

Every page a live view commits announces itself on the PostgreSQL channel
``agentboard_views`` (``"<view> <position>"``, a NOTIFY in the page's own transaction, so
delivered on its commit: projections/engine/view.py). A reader listens, and re-reads the tracking
positions every second, so a notification lost while its connection was down costs at most
a second.
``wait_for`` is what read-your-writes and the live streams wait on.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from eventsourcing.postgres import PostgresDatastore
from tenacity import wait_fixed

from projections.engine.errors import UnknownView
from projections.engine.registry import make_projection, view_names
from projections.engine.restarts import run_until_stopped
from projections.engine.view import ANNOUNCE_CHANNEL

log = logging.getLogger(__name__)

RESYNC_SECONDS = 1.0


class ViewPositions:
    def __init__(
        self, database_url: str, datastore: PostgresDatastore, names: list[str] | None = None
    ) -> None:
        self.database_url = database_url
        self.datastore = datastore
        self.names = names or view_names()
        self._positions = dict.fromkeys(self.names, 0)
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="view-positions", daemon=True)

    def start(self) -> ViewPositions:
        self._resync()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)

    def position(self, view: str) -> int:
        if view not in self._positions:
            raise UnknownView(view, self.names)
        return self._positions[view]

    def positions(self) -> dict[str, int]:
        return dict(self._positions)

    def wait_for(self, view: str, position: int, timeout: float) -> bool:
        """Block until ``view`` has applied ``position``; False if ``timeout`` passes first."""
        self.position(view)
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._positions[view] < position:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def _advance(self, view: str, position: int) -> None:
        with self._changed:
            if position > self._positions.get(view, -1):
                self._positions[view] = position
                self._changed.notify_all()

    def _resync(self) -> None:
        for name in self.names:
            try:
                self._advance(name, make_projection(name, self.datastore).view.position())
            except Exception as error:  # e.g. its tables are not there yet
                log.debug("view %s position unknown: %s", name, error)

    def _run(self) -> None:
        run_until_stopped(self._listen, self._stopping, wait_fixed(1), self._failed)

    def _failed(self, error: BaseException, pause: float) -> None:
        log.warning("view positions: %s; listening again in %.0f s", error, pause)

    def _listen(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(f"LISTEN {ANNOUNCE_CHANNEL}")
            self._resync()  # what was announced before LISTEN took effect
            while not self._stopping.is_set():
                for notice in conn.notifies(timeout=RESYNC_SECONDS):
                    view, _, position = notice.payload.partition(" ")
                    if view in self._positions and position.isdigit():
                        self._advance(view, int(position))
                self._resync()
