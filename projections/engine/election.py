"""One active runner per view across processes (DESIGN §11): each ``projections run``
process runs a view only while it holds that view's PostgreSQL advisory lock.

One connection per process holds the locks of the views it runs. Every ``every`` seconds
it tries to take the locks it lacks and checks that it is alive (``SELECT 1``, with TCP
keepalives): a process that dies, or loses that connection, loses its locks with it, and
another process takes them within a second or so and runs those views from their
tracking positions. A runner's page transaction checks the view's position anyway
(``PositionMoved``), so two runners at once, for the moment between a lost connection and
its runner noticing, neither lose nor repeat an update; the election only stops them
contending.

Each term of a view is a ``threading.Event``, set when the term ends (the lock lost, or the
election stopped): the runner follows the log until it is set.
"""

from __future__ import annotations

import logging
import threading
import zlib
from typing import Any

import psycopg
from tenacity import wait_exponential

from projections.engine.restarts import run_until_stopped

log = logging.getLogger(__name__)

VIEW_LOCKS = 0x61627677  # the advisory locks' first key ("abvw"); the second: the view's
TRY_LOCK = "SELECT pg_try_advisory_lock(%s, %s)"
CHECK_EVERY_SECONDS = 1.0
RECONNECT_BACKOFF = (0.2, 5.0)


def view_lock(name: str) -> int:
    """The second key of ``name``'s advisory lock: a stable 32-bit signed number."""
    return zlib.crc32(name.encode()) - 2**31


class ViewElection:
    def __init__(
        self, database_url: str, names: list[str], *, every: float = CHECK_EVERY_SECONDS
    ) -> None:
        self.database_url = database_url
        self.names = list(names)
        self.every = every
        self._terms: dict[str, threading.Event | None] = dict.fromkeys(self.names)
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="view-election", daemon=True)

    def start(self) -> ViewElection:
        self._thread.start()
        return self

    def end_terms(self) -> None:
        """End every term now (runners stop) but keep the locks until ``stop``: a process
        stopping records its views stopped before another takes them over."""
        with self._changed:
            for term in self._terms.values():
                if term is not None:
                    term.set()
            self._changed.notify_all()

    def stop(self) -> None:
        self._stopping.set()
        self.end_terms()
        self._thread.join(timeout=10)

    def holds(self, name: str) -> bool:
        term = self._terms[name]
        return term is not None and not term.is_set()

    def wait_term(self, name: str, stopping: threading.Event) -> threading.Event | None:
        """Block until this process holds ``name``'s lock; the event that ends the term, or
        None once ``stopping`` is set."""
        with self._changed:
            while not stopping.is_set():
                term = self._terms[name]
                if term is not None and not term.is_set():
                    return term
                self._changed.wait(0.5)
        return None

    # -- the connection that holds the locks ---------------------------------------------

    def _run(self) -> None:
        backoff = wait_exponential(multiplier=RECONNECT_BACKOFF[0], max=RECONNECT_BACKOFF[1])
        run_until_stopped(self._hold, self._stopping, backoff, self._failed)

    def _failed(self, error: BaseException, pause: float) -> None:
        log.warning("view election lost its connection (%s); again in %.1fs", error, pause)

    def _hold(self) -> None:
        try:
            with psycopg.connect(
                self.database_url, autocommit=True, connect_timeout=5,
                keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
            ) as conn:  # fmt: skip
                while not self._stopping.is_set():
                    for name in self.names:
                        if self._terms[name] is None and self._take(conn, name):
                            self._begin(name)
                    conn.execute("SELECT 1")  # alive, and with it every lock it holds
                    self._stopping.wait(self.every)
        finally:
            self._end_all()  # the connection, and every lock, is gone

    def _take(self, conn: psycopg.Connection[Any], name: str) -> bool:
        row = conn.execute(TRY_LOCK, (VIEW_LOCKS, view_lock(name))).fetchone()
        return bool(row and row[0])

    def _begin(self, name: str) -> None:
        log.info("view %s: this process runs it", name)
        with self._changed:
            self._terms[name] = threading.Event()
            self._changed.notify_all()

    def _end_all(self) -> None:
        with self._changed:
            for name, term in self._terms.items():
                if term is not None:
                    term.set()
                    self._terms[name] = None
            self._changed.notify_all()
