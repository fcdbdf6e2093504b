"""GET /metrics in the Prometheus text format: what an operator graphs and alerts on."""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from bisect import bisect_left
from collections import Counter, defaultdict
from typing import Any

import anyio
from litestar import Request, get
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.response import Response
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from infra.bootstrap import Container
from infra.logs import request_id
from infra.nats import BANDS
from infra.relay import relay_position
from infra.services import BackgroundServices

log = logging.getLogger("agentboard.http")

REQUESTS: Counter[tuple[str, str, int]] = Counter()
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DURATIONS: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0] * (len(BUCKETS) + 2))
"""Per route: a count per bucket (not cumulative), then +Inf, then the sum of seconds."""
STREAMS = ("/v1/board/stream",)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# A request id made here: random per process, then a serial (unique, and cheaper than uuid4).
_PROCESS, _SERIAL = secrets.token_hex(12), itertools.count()


def count_requests(app: ASGIApp) -> ASGIApp:
    """Middleware: a request id (the caller's ``X-Request-ID`` or a new one) in the logs and
    the response; requests by route and status; their durations as a histogram; one log
    line per request."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.match(given) else f"{_PROCESS}{next(_SERIAL):08x}"
        token = request_id.set(rid)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            route = str(scope.get("path_template") or "unmatched")
            method = str(scope.get("method", "GET"))
            REQUESTS[(method, route, status)] += 1
            if not (route in STREAMS or "follow=true" in scope.get("query_string", b"").decode()):
                _observe(DURATIONS[(method, route)], seconds)
            log.info(
                "%s %s %d", method, scope["path"], status,
                extra={"route": route, "status": status, "ms": round(seconds * 1000, 2)},
            )  # fmt: skip
            request_id.reset(token)

    return middleware


def _observe(histogram: list[float], seconds: float) -> None:
    histogram[bisect_left(BUCKETS, seconds)] += 1
    histogram[-1] += seconds


def _histogram_lines(name: str) -> list[str]:
    lines = [f"# HELP {name} HTTP request durations by route (streams excluded)",
             f"# TYPE {name} histogram"]  # fmt: skip
    for (method, route), counts in sorted(DURATIONS.items()):
        labels = f'method="{method}",route="{route}"'
        total = 0.0
        for bound, count in zip([*BUCKETS, "+Inf"], counts[:-1], strict=True):
            total += count
            lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {total:g}')
        lines.append(f"{name}_sum{{{labels}}} {counts[-1]:g}")
        lines.append(f"{name}_count{{{labels}}} {total:g}")
    return lines


@get("/metrics", operation_id="metrics", media_type="text/plain; version=0.0.4")
async def metrics(request: Request[Any, Any, State]) -> Response[str]:
    container: Container = request.app.state.container
    services: BackgroundServices | None = getattr(request.app.state, "services", None)
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

    metric("agentboard_http_requests_total", "counter", "HTTP requests by route and status", [
        (f'{{method="{m}",route="{r}",status="{s}"}}', n) for (m, r, s), n in REQUESTS.items()
    ])  # fmt: skip
    lines.extend(_histogram_lines("agentboard_http_request_duration_seconds"))
    writer = container.writer
    metric("agentboard_commands_total", "counter", "commands through the group-commit writer",
           [("", writer.commands)])  # fmt: skip
    metric("agentboard_command_commits_total", "counter", "group commits", [("", writer.batches)])
    stored = await anyio.to_thread.run_sync(container.service.recorder.max_notification_id)
    metric(
        "agentboard_events_stored", "gauge", "last position of the event log", [("", stored or 0)]
    )
    metric("agentboard_projection_lag", "gauge", "events stored but not yet in a view", [
        (f'{{view="{name}"}}', max((stored or 0) - position, 0))
        for name, position in view_positions(container).items()
    ])  # fmt: skip
    hub = request.app.state.get("hub")
    if hub is not None:
        metric("agentboard_sse_clients", "gauge", "connected live-stream clients",
               [("", hub.clients)])  # fmt: skip
        metric("agentboard_sse_messages_total", "counter", "board messages sent to clients",
               [("", hub.delivered)])  # fmt: skip
    if services is not None:
        relayed = await _relay_position(container, services)
        metric("agentboard_relay_position", "gauge", "last position published to NATS",
               [("", relayed)])  # fmt: skip
        metric("agentboard_relay_lag", "gauge", "events stored but not yet published",
               [("", max((stored or 0) - relayed, 0))])  # fmt: skip
    if services is not None and services.monitor is not None:
        metric("agentboard_leases_expired_total", "counter", "leases expired for lost workers",
               [("", services.monitor.expired)])  # fmt: skip
    if services is not None and services.nc is not None:
        depths = await _queue_depths(container, await services.work_queues())
        metric("agentboard_queue_depth", "gauge", "work waiting per queue and band", [
            (f'{{queue="{q}",band="{b}"}}', n) for (q, b), n in depths.items()
        ])  # fmt: skip
    return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


def view_positions(container: Container) -> dict[str, int]:
    return {name: container.views.position(name) for name in container.views.names}


async def _relay_position(container: Container, services: BackgroundServices) -> int:
    """Where the relay is: its own count when it runs here, else its tracking record."""
    relay = services.relay
    if relay is not None and relay.active:
        return relay.position
    return await anyio.to_thread.run_sync(relay_position, container.read_models.datastore)


async def _queue_depths(container: Container, queues: set[str]) -> dict[tuple[str, str], float]:
    """Pending executions per queue and band, from the board (cancelled work is not waiting)."""
    waiting = await anyio.to_thread.run_sync(container.read_models.board.waiting)
    every = sorted(queues | {queue for queue, _ in waiting})
    return {(queue, band): waiting.get((queue, band), 0) for queue in every for band in BANDS}
