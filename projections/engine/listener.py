"""One LISTEN connection per process that wakes every runner when the log grows.

PostgreSQL NOTIFYs the events table's channel on every commit to it. LISTEN alone is
not enough: a connection can go silent (a dropped TCP session, a proxy) without an
error, and eventsourcing's subscription has no fallback. So runners also poll at
least every ``poll_interval``; when a poll finds events the listener did not announce,
the runner calls ``missed`` and the listener reconnects.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from psycopg import sql
from tenacity import wait_exponential

from projections.engine.restarts import run_until_stopped

log = logging.getLogger(__name__)

RECONNECT_BACKOFF = (0.1, 5.0)


class Listener:
    def __init__(self, database_url: str, channel: str) -> None:
        self.database_url = database_url
        self.channel = channel
        self.connections = 0
        self.notifications = 0
        self._wakeups: list[threading.Event] = []
        self._stopping = threading.Event()
        self._reconnect = threading.Event()
        self._thread = threading.Thread(target=self._run, name="projections-listener", daemon=True)
        self._last_heard = time.monotonic()

    def wakeup(self) -> threading.Event:
        """An event set on every commit to the log; the runner clears it."""
        event = threading.Event()
        self._wakeups.append(event)
        return event

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def missed(self) -> None:
        """A runner found events nobody announced: this connection may have gone silent."""
        if time.monotonic() - self._last_heard > 1.0:
            log.warning("LISTEN %s missed a commit; reconnecting", self.channel)
            self._reconnect.set()

    def _wake_all(self) -> None:
        self._last_heard = time.monotonic()
        for event in self._wakeups:
            event.set()

    def _run(self) -> None:
        # whatever stops it, views must not lose their wake-ups: listen again after a backoff
        backoff = wait_exponential(multiplier=RECONNECT_BACKOFF[0], max=RECONNECT_BACKOFF[1])
        run_until_stopped(self._listen, self._stopping, backoff, self._failed)

    def _failed(self, error: BaseException, pause: float) -> None:
        log.warning(
            "LISTEN %s failed (%s); retrying in %.1fs", self.channel, error, pause,
            exc_info=not isinstance(error, psycopg.Error),  # a bug: show where
        )  # fmt: skip

    def _listen(self) -> None:
        self._reconnect.clear()
        with psycopg.connect(
            self.database_url, autocommit=True, connect_timeout=5,
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
        ) as conn:  # fmt: skip
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self.connections += 1
            self._wake_all()  # whatever was committed while we were not listening
            while not self._stopping.is_set() and not self._reconnect.is_set():
                for _ in conn.notifies(timeout=0.25, stop_after=1):
                    self.notifications += 1
                    self._wake_all()
