"""One LISTEN connection per process, shared by everything in it that waits for a NOTIFY.

agentboard announces on two channels (``CHANNELS``, the one place their names are):

* ``EVENTS_CHANNEL``: the event store NOTIFYs it on every commit to the log
  (eventsourcing's recorder, on its events table's name). Projection runners and the
  relay wake on it.
* ``VIEWS_CHANNEL``: every page a live view commits says ``"<view> <position>"`` here,
  from the page's own transaction (projections/engine/view.py). Processes that read the
  views without running them (the API) learn how far each view is from it.

A part of the process subscribes a callback to a channel; the listener LISTENs to the
channels someone subscribed to, on one connection, and calls each callback on its own
thread with the payload, or with None when it (re)connects: what was committed while
nobody listened has to be looked for. Callbacks must be quick (set an event, note a
position).

LISTEN alone is not enough: a connection can go silent (a dropped TCP session, a proxy)
without an error. So whoever subscribes also polls, at least every second or so; when a
poll finds what no notification announced, it calls ``missed``, and the listener
reconnects if it has heard nothing for a while.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql
from tenacity import wait_exponential

from domain.application import ExecutionService
from projections.engine.restarts import run_until_stopped

log = logging.getLogger(__name__)

EVENTS_CHANNEL = f"{ExecutionService.name.lower()}_events"  # the events table's name
VIEWS_CHANNEL = "agentboard_views"
CHANNELS = (EVENTS_CHANNEL, VIEWS_CHANNEL)
RECONNECT_BACKOFF = (0.1, 5.0)
QUIET_SECONDS = 1.0  # heard nothing for this long: a poll that found news means it is silent

Callback = Callable[[str | None], object]  # what it returns is ignored


class Listener:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.connections = 0
        self.notifications = 0
        self._subscribers: dict[str, tuple[Callback, ...]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._reconnect = threading.Event()
        self._thread = threading.Thread(target=self._run, name="listener", daemon=True)
        self._last_heard = time.monotonic()

    def subscribe(self, channel: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(payload)`` on every NOTIFY on ``channel``, and ``callback(None)``
        each time the listener starts listening to it; returns what unsubscribes."""
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}: one of {', '.join(CHANNELS)}")
        with self._lock:
            self._subscribers[channel] = (*self._subscribers.get(channel, ()), callback)

        def unsubscribe() -> None:
            with self._lock:
                left = tuple(c for c in self._subscribers.get(channel, ()) if c is not callback)
                self._subscribers[channel] = left

        return unsubscribe

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def missed(self) -> None:
        """A poll found what nobody announced: the connection may have gone silent."""
        if time.monotonic() - self._last_heard > QUIET_SECONDS:
            log.warning("LISTEN missed a commit; reconnecting")
            self._reconnect.set()

    def _tell(self, channel: str, payload: str | None) -> None:
        for callback in self._subscribers.get(channel, ()):
            try:
                callback(payload)
            except Exception:  # one subscriber's bug must not deafen the others
                log.exception("a subscriber of %s failed", channel)

    def _run(self) -> None:
        # whatever stops it, subscribers must not lose their wake-ups: listen again after a
        # backoff
        backoff = wait_exponential(multiplier=RECONNECT_BACKOFF[0], max=RECONNECT_BACKOFF[1])
        run_until_stopped(self._listen, self._stopping, backoff, self._failed)

    def _failed(self, error: BaseException, pause: float) -> None:
        log.warning(
            "LISTEN failed (%s); retrying in %.1fs", error, pause,
            exc_info=not isinstance(error, psycopg.Error),  # a bug: show where
        )  # fmt: skip

    def _listen(self) -> None:
        self._reconnect.clear()
        with psycopg.connect(
            self.database_url, autocommit=True, connect_timeout=5,
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
        ) as conn:  # fmt: skip
            self.connections += 1
            listening: set[str] = set()
            while not self._stopping.is_set() and not self._reconnect.is_set():
                # A channel subscribed to since the last turn. (psycopg keeps what arrives
                # on the other channels during this statement for the next notifies().)
                with self._lock:
                    wanted = set(self._subscribers)
                for channel in sorted(wanted - listening):
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    listening.add(channel)
                    self._last_heard = time.monotonic()
                    self._tell(channel, None)  # whatever was committed before we listened
                for notice in conn.notifies(timeout=0.25, stop_after=1):
                    self.notifications += 1
                    self._last_heard = time.monotonic()
                    self._tell(notice.channel, notice.payload)
