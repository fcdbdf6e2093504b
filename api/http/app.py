"""The Litestar application: the composition of routes, auth, errors and background services."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from typing import TYPE_CHECKING

import anyio
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.problem_details import ProblemDetailsPlugin
from litestar.response import Response
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE
from litestar.types import Scope
from prometheus_client import CollectorRegistry

from api.http.artifacts import download_artifact
from api.http.audit import AuditController
from api.http.auth import KeyAuthentication
from api.http.bulk import bulk
from api.http.errors import exception_handlers, is_refusal, problem_details_config
from api.http.executions import ExecutionController
from api.http.keys import KeyController
from api.http.metrics import RequestMetrics, StackCollector, metrics, read_stack, view_positions
from api.http.page import PUBLIC_PATTERNS, page_router
from api.http.pipelines import PipelineController
from api.http.queries import QueryController
from api.http.streams import board_stream, live_hub
from api.http.webhooks import WebhookController
from infra.bootstrap import Container
from infra.services import BackgroundServices
from projections.engine.control import Control

if TYPE_CHECKING:
    from infra.roles import ApiRole

log = logging.getLogger("agentboard.api")

READY_MAX_LAG = 5_000  # events a view may be behind and the process still take traffic


@get("/healthz", operation_id="healthz", sync_to_thread=False)
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@get("/readyz", operation_id="readyz")
async def readyz(state: State) -> Response[dict[str, object]]:
    """Readiness: PostgreSQL answers, NATS is connected, and every view is running less
    than ``READY_MAX_LAG`` events behind the log."""
    container: Container = state.container
    checks: dict[str, dict[str, object]] = {}
    try:
        position = await anyio.to_thread.run_sync(container.service.recorder.max_notification_id)
        checks["postgres"] = {"ok": True, "position": position or 0}
    except Exception as error:
        checks["postgres"] = {"ok": False, "error": str(error)}
    services: BackgroundServices | None = state.get("services")
    nc = services.nc if services is not None else None
    checks["nats"] = {"ok": bool(nc is not None and nc.is_connected)}
    if checks["postgres"]["ok"]:
        head = int(checks["postgres"]["position"])  # type: ignore[call-overload]
        lag = {name: max(head - at, 0) for name, at in view_positions(container).items()}
        health = await anyio.to_thread.run_sync(Control(container.read_models.datastore).health)
        states = {name: health[name].state if name in health else "starting" for name in lag}
        checks["projections"] = {
            "ok": all(n < READY_MAX_LAG and states[v] == "running" for v, n in lag.items()),
            "lag": lag,
            "states": states,
        }
    ready = all(check.get("ok") for check in checks.values())
    return Response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else HTTP_503_SERVICE_UNAVAILABLE,
    )


async def log_unexpected(error: Exception, scope: Scope) -> None:
    """A failure that is not a refusal (those are problem+json 4xx): log it with its trace."""
    if not is_refusal(error):
        log.error("unexpected error on %s", scope.get("path"), exc_info=error)


def create_app(container: Container, *, role: ApiRole | None = None) -> Litestar:
    """The HTTP app over ``container``; with ``role`` (infra/roles.py) it also runs, for as
    long as it serves, what an API process runs beside HTTP (the command service for
    workers, the lease monitor, ...; under ``agentboard up`` the other roles' processes)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        hub = live_hub(container)
        async with role if role is not None else nullcontext():
            await hub.start()
            app.state.services = role.services if role is not None else None
            app.state.hub = hub
            try:
                yield
            finally:
                await hub.stop()

    auth = DefineMiddleware(
        KeyAuthentication,
        exclude=["^/healthz", "^/readyz", "^/metrics", "^/schema", *PUBLIC_PATTERNS],
    )
    registry = CollectorRegistry()  # the app's own: tests run several apps in one process
    requests = RequestMetrics(registry)
    app = Litestar(
        route_handlers=[
            healthz,
            readyz,
            metrics,
            ExecutionController,
            bulk,
            QueryController,
            board_stream,
            download_artifact,
            KeyController,
            AuditController,
            WebhookController,
            PipelineController,
            page_router(),
        ],
        state=State(
            {"container": container, "key_store": container.keys, "metrics_registry": registry}
        ),
        lifespan=[lifespan],
        logging_config=None,  # ours (infra/logs.py): JSON lines with request ids
        after_exception=[log_unexpected],
        exception_handlers=exception_handlers(),
        middleware=[requests.middleware, auth],
        plugins=[ProblemDetailsPlugin(problem_details_config())],
        openapi_config=OpenAPIConfig(
            title="agentboard",
            version="1.0.0",
            description="The system of record for agentic task executions.",
            path="/schema",
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(type="http", scheme="bearer", description="API key")
                }
            ),
            security=[{"apiKey": []}],
        ),
    )
    registry.register(StackCollector(lambda: read_stack(app.state)))
    if role is not None:  # webhook deliveries, counted where they are made
        for collector in role.webhooks.metrics.collectors():
            registry.register(collector)
    return app
