"""A webhook receiver for tests: a local HTTP server in a thread that records every POST
and answers as the test says (a status, or no answer at all)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def message(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


Answer = Callable[[Received, int], int | None]
"""The status to answer the n-th request (from 0) with; None: hang until the server stops."""


class Receiver:
    def __init__(self, answer: Answer | None = None) -> None:
        self.answer: Answer = answer or (lambda received, n: 200)
        self.received: list[Received] = []
        self.changed = threading.Condition()
        self.stopped = threading.Event()

    def record(self, received: Received) -> int | None:
        with self.changed:
            n = len(self.received)
            self.received.append(received)
            self.changed.notify_all()
        return self.answer(received, n)

    def wait_for(self, done: Callable[[list[Received]], bool], timeout: float = 20.0) -> None:
        """Until ``done(received so far)``; fails the test after ``timeout`` seconds."""
        with self.changed:
            if not self.changed.wait_for(lambda: done(self.received), timeout):
                raise AssertionError(f"receiver got {len(self.received)} requests: not enough")


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            received = Received({k.lower(): v for k, v in self.headers.items()},
                                self.rfile.read(length))  # fmt: skip
            status = receiver.record(received)
            if status is None:
                receiver.stopped.wait()
                return
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def receiving(receiver: Receiver, port: int = 0) -> Iterator[str]:
    """Serve ``receiver`` on 127.0.0.1 (on ``port``, else a free one); yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(receiver))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    finally:
        receiver.stopped.set()
        server.shutdown()
        server.server_close()


def verify(secret: str, received: Received) -> bool:
    """Standard Webhooks' check, written from the specification (not with the library
    that signs): HMAC-SHA256 over ``id.timestamp.body`` keyed by the secret's bytes."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{received.headers['webhook-id']}.{received.headers['webhook-timestamp']}."
    digest = hmac.new(key, signed.encode() + received.body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(digest).decode()
    return any(hmac.compare_digest(expected, given)
               for given in received.headers["webhook-signature"].split())  # fmt: skip
