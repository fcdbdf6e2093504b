"""A small Server-Sent Events reader for tests: a thread reads the stream (httpx-sse) into a
queue."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import connect_sse


@dataclass
class Event:
    event: str
    id: int | None
    data: Any


class SseReader:
    """Reads ``GET url`` as SSE until closed; ``next`` takes events in order."""

    def __init__(self, base_url: str, path: str, key: str, last_event_id: int | None = None):
        headers = {"Authorization": f"Bearer {key}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.events: queue.Queue[Event | None] = queue.Queue()
        self.status: int | None = None
        self.content_type: str | None = None
        self._ready = threading.Event()
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10, read=60))
        self._thread = threading.Thread(target=self._read, args=(path, headers), daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise TimeoutError(f"no answer from {path}")

    def _read(self, path: str, headers: dict[str, str]) -> None:
        try:
            with connect_sse(self._client, "GET", path, headers=headers) as source:
                response = source.response
                self.status = response.status_code
                self.content_type = response.headers.get("content-type", "").split(";")[0]
                self._ready.set()
                if response.status_code != 200:
                    response.read()
                    return
                for sse in source.iter_sse():
                    if sse.data:  # not a `retry:` or a keepalive (httpx-sse yields those too)
                        self.events.put(
                            Event(sse.event, int(sse.id) if sse.id else None, sse.json())
                        )
        except httpx.HTTPError:
            pass
        finally:
            self._ready.set()
            self.events.put(None)

    def next(self, timeout: float = 30) -> Event | None:
        """The next event, or None when the stream ended."""
        return self.events.get(timeout=timeout)

    def until(self, done: Callable[[Event], bool], timeout: float = 30) -> list[Event]:
        """Events up to and including the first for which ``done`` is true."""
        seen: list[Event] = []
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(max(0.1, deadline - time.monotonic()))
            if event is None:
                raise AssertionError(f"the stream ended before expected; saw {seen}")
            seen.append(event)
            if done(event):
                return seen

    def close(self) -> None:
        self._client.close()
