"""A small Server-Sent Events reader for tests: a thread reads the stream into a queue."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    event: str
    id: int | None
    data: Any


class SseReader:
    """Reads ``GET url`` as SSE until closed; ``next`` takes events in order."""

    def __init__(self, base_url: str, path: str, key: str, last_event_id: int | None = None):
        headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.events: queue.Queue[Event | None] = queue.Queue()
        self.status: int | None = None
        self.content_type: str | None = None
        self.comments: list[str] = []
        self._ready = threading.Event()
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10, read=60))
        self._thread = threading.Thread(target=self._read, args=(path, headers), daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise TimeoutError(f"no answer from {path}")

    def _read(self, path: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", path, headers=headers) as response:
                self.status = response.status_code
                self.content_type = response.headers.get("content-type", "").split(";")[0]
                self._ready.set()
                if response.status_code != 200:
                    response.read()
                    return
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if line.startswith(":"):
                        self.comments.append(line[1:].strip())
                    elif line == "":
                        if "data" in fields:
                            self.events.put(
                                Event(
                                    fields.get("event", "message"),
                                    int(fields["id"]) if "id" in fields else None,
                                    json.loads(fields["data"]),
                                )
                            )
                        fields = {}
                    else:
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
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
