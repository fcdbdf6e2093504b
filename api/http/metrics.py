"""GET /metrics in the Prometheus text format: what an operator graphs and alerts on.

prometheus-client writes the exposition (escaping label values, formatting numbers). Each
app has a registry of its own (tests run several apps in one process): the request
counter and latency histogram that the middleware below feeds, and ``StackCollector``,
which reads the rest at scrape time (writer counts, log position, lags, queue depths).
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
from litestar import Request, get
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.response import Response
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from infra.bootstrap import Container
from infra.logs import request_id
from infra.nats import BANDS
from infra.relay import relay_position
from infra.services import BackgroundServices
from infra.tracecontext import parse_traceparent, trace_id

log = logging.getLogger("agentboard.http")

# no `_created` series beside each counter and histogram: nobody graphs them
disable_created_metrics()  # type: ignore[no-untyped-call]
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STREAMS = ("/v1/board/stream",)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# A request id made here: random per process, then a serial (unique, and cheaper than uuid4).
_PROCESS, _SERIAL = secrets.token_hex(12), itertools.count()


class RequestMetrics:
    """Requests by route and status, and their durations by route (streams excluded), in
    the app's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "agentboard_http_requests", "HTTP requests by route and status",
            ["method", "route", "status"], registry=registry,
        )  # fmt: skip
        self.durations = Histogram(
            "agentboard_http_request_duration_seconds",
            "HTTP request durations by route (streams excluded)",
            ["method", "route"], buckets=BUCKETS, registry=registry,
        )  # fmt: skip

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """A request id (the caller's ``X-Request-ID`` or a new one) in the logs and the
        response; requests by route and status; their durations as a histogram; one log
        line per request."""

        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500
            headers = dict(scope["headers"])
            given = headers.get(b"x-request-id", b"").decode("latin-1")
            rid = given if _REQUEST_ID.match(given) else f"{_PROCESS}{next(_SERIAL):08x}"
            token = request_id.set(rid)
            parent = parse_traceparent(headers.get(b"traceparent", b"").decode("latin-1"))
            trace = trace_id.set(f"{parent.trace_id:032x}" if parent is not None else None)

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    message["headers"] = [
                        *message.get("headers", []), (b"x-request-id", rid.encode())
                    ]  # fmt: skip
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                seconds = time.perf_counter() - started
                route = str(scope.get("path_template") or "unmatched")
                method = str(scope.get("method", "GET"))
                self.requests.labels(method, route, str(status)).inc()
                if not (route in STREAMS or b"follow=true" in scope.get("query_string", b"")):
                    self.durations.labels(method, route).observe(seconds)
                log.info(
                    "%s %s %d", method, scope["path"], status,
                    extra={"route": route, "status": status, "ms": round(seconds * 1000, 2)},
                )  # fmt: skip
                request_id.reset(token)
                trace_id.reset(trace)

        return middleware


@dataclass(frozen=True, slots=True)
class Reading:
    """What the stack reports at one scrape; what does not run in this process is None."""

    commands: int
    commits: int
    stored: int
    view_positions: dict[str, int]
    sse_clients: int | None = None
    sse_messages: int | None = None
    relay_position: int | None = None
    leases_expired: int | None = None
    queue_depths: dict[tuple[str, str], int] = field(default_factory=dict)


class StackCollector:
    """A prometheus-client collector of what is read at scrape time."""

    def __init__(self, read: Callable[[], Reading]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        now = self.read()
        yield CounterMetricFamily(
            "agentboard_commands", "commands through the group-commit writer", now.commands
        )
        yield CounterMetricFamily("agentboard_command_commits", "group commits", now.commits)
        yield GaugeMetricFamily(
            "agentboard_events_stored", "last position of the event log", now.stored
        )
        lag = GaugeMetricFamily(
            "agentboard_projection_lag", "events stored but not yet in a view", labels=["view"]
        )
        for view, position in now.view_positions.items():
            lag.add_metric([view], max(now.stored - position, 0))
        yield lag
        if now.sse_clients is not None:
            yield GaugeMetricFamily(
                "agentboard_sse_clients", "connected live-stream clients", now.sse_clients
            )
        if now.sse_messages is not None:
            yield CounterMetricFamily(
                "agentboard_sse_messages", "board messages sent to clients", now.sse_messages
            )
        if now.relay_position is not None:
            yield GaugeMetricFamily(
                "agentboard_relay_position", "last position published to NATS", now.relay_position
            )
            yield GaugeMetricFamily(
                "agentboard_relay_lag", "events stored but not yet published",
                max(now.stored - now.relay_position, 0),
            )  # fmt: skip
        if now.leases_expired is not None:
            yield CounterMetricFamily(
                "agentboard_leases_expired", "leases expired for lost workers", now.leases_expired
            )
        if now.queue_depths:
            depth = GaugeMetricFamily(
                "agentboard_queue_depth",
                "work waiting per queue and band",
                labels=["queue", "band"],
            )
            for (queue, band), waiting in now.queue_depths.items():
                depth.add_metric([queue, band], waiting)
            yield depth


@get("/metrics", operation_id="metrics", media_type=CONTENT_TYPE_PLAIN_0_0_4)
async def metrics(request: Request[Any, Any, State]) -> Response[bytes]:
    # in a worker thread: the collector reads PostgreSQL, and NATS through this event loop
    registry: CollectorRegistry = request.app.state.metrics_registry
    text = await anyio.to_thread.run_sync(generate_latest, registry)
    return Response(text, media_type=CONTENT_TYPE_PLAIN_0_0_4)


def read_stack(state: State) -> Reading:
    """The reading of one scrape (in a worker thread of the app's event loop)."""
    container: Container = state.container
    services: BackgroundServices | None = state.get("services")
    hub = state.get("hub")
    relay: int | None = None
    depths: dict[tuple[str, str], int] = {}
    if services is not None:
        if services.relay is not None and services.relay.active:
            relay = services.relay.position  # its own count when it runs here
        else:
            relay = relay_position(container.read_models.datastore)
        if services.nc is not None:
            depths = _queue_depths(container, anyio.from_thread.run(services.work_queues))
    monitor = services.monitor if services is not None else None
    return Reading(
        commands=container.writer.commands,
        commits=container.writer.batches,
        stored=container.service.recorder.max_notification_id() or 0,
        view_positions=view_positions(container),
        sse_clients=hub.clients if hub is not None else None,
        sse_messages=hub.delivered if hub is not None else None,
        relay_position=relay,
        leases_expired=monitor.expired if monitor is not None else None,
        queue_depths=depths,
    )


def view_positions(container: Container) -> dict[str, int]:
    return {name: container.views.position(name) for name in container.views.names}


def _queue_depths(container: Container, queues: set[str]) -> dict[tuple[str, str], int]:
    """Pending executions per queue and band, from the board: cancelled work is not waiting
    (JetStream's count of undelivered messages kept it until a worker dropped it)."""
    waiting = container.read_models.board.waiting()
    every = sorted(queues | {queue for queue, _ in waiting})
    return {(queue, band): waiting.get((queue, band), 0) for queue in every for band in BANDS}
