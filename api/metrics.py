"""GET /metrics in the Prometheus text format: what an operator graphs and alerts on."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

import anyio
from litestar import Request, get
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.response import Response
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from infra.bootstrap import Container
from infra.nats import BANDS, WORK_STREAM, work_consumer
from infra.services import BackgroundServices

REQUESTS: Counter[tuple[str, str, int]] = Counter()
LATENCY_SECONDS: dict[tuple[str, str], float] = defaultdict(float)


def count_requests(app: ASGIApp) -> ASGIApp:
    """Middleware: requests by route and status, and the time they took."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            route = str(scope.get("path_template") or "unmatched")
            method = str(scope.get("method", "GET"))
            REQUESTS[(method, route, status)] += 1
            LATENCY_SECONDS[(method, route)] += time.perf_counter() - started

    return middleware


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
    metric("agentboard_http_request_seconds_total", "counter", "time spent answering", [
        (f'{{method="{m}",route="{r}"}}', t) for (m, r), t in LATENCY_SECONDS.items()
    ])  # fmt: skip
    writer = container.writer
    metric("agentboard_commands_total", "counter", "commands through the group-commit writer",
           [("", writer.commands)])  # fmt: skip
    metric("agentboard_command_commits_total", "counter", "group commits", [("", writer.batches)])
    stored = await anyio.to_thread.run_sync(container.service.recorder.max_notification_id)
    metric(
        "agentboard_events_stored", "gauge", "last position of the event log", [("", stored or 0)]
    )
    if services is not None and services.relay is not None:
        relay = services.relay
        metric("agentboard_relay_position", "gauge", "last position published to NATS",
               [("", relay.position)])  # fmt: skip
        metric("agentboard_relay_lag", "gauge", "events stored but not yet published",
               [("", max((stored or 0) - relay.position, 0) if relay.active else 0)])  # fmt: skip
    if services is not None and services.monitor is not None:
        metric("agentboard_leases_expired_total", "counter", "leases expired for lost workers",
               [("", services.monitor.expired)])  # fmt: skip
    if services is not None and services.nc is not None:
        depths = await _queue_depths(services, services.relay_queues())
        metric("agentboard_queue_depth", "gauge", "work waiting per queue and band", [
            (f'{{queue="{q}",band="{b}"}}', n) for (q, b), n in depths.items()
        ])  # fmt: skip
    return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


async def _queue_depths(
    services: BackgroundServices, queues: set[str]
) -> dict[tuple[str, str], float]:
    if services.nc is None:
        return {}
    js = services.nc.jetstream()
    depths: dict[tuple[str, str], float] = {}
    for queue in sorted(queues):
        for band in BANDS:
            try:
                info = await js.consumer_info(WORK_STREAM, work_consumer(queue, band))
            except Exception:  # noqa: S112 - a queue not created yet has no depth to report
                continue
            depths[(queue, band)] = info.num_pending or 0
    return depths
