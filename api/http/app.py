"""The Litestar application: the composition of routes, auth, errors and background services."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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

from api.http.artifacts import download_artifact
from api.http.audit import AuditController
from api.http.auth import KeyAuthentication
from api.http.bulk import bulk
from api.http.errors import exception_handlers, is_refusal, problem_details_config
from api.http.executions import ExecutionController
from api.http.keys import KeyController
from api.http.metrics import count_requests, metrics, view_positions
from api.http.page import PUBLIC_PATTERNS, page_router
from api.http.queries import QueryController
from api.http.streams import board_stream, live_hub
from infra.bootstrap import Container
from infra.services import BackgroundServices, LocalProjections, LocalRelay, LocalWorker
from projections.engine.control import Control

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


def create_app(
    container: Container, *, background: bool = True, worker_queue: str | None = None,
    worker_key: str | None = None, projections_process: bool = False, relay_process: bool = False,
) -> Litestar:  # fmt: skip
    """The HTTP app; with ``background`` it also runs the relay, the lease monitor and the
    command service for workers for as long as it serves, with ``worker_queue`` a worker
    process on that queue (reporting with ``worker_key``), and with ``projections_process``
    and ``relay_process`` the projections and the relay in processes of their own."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        services = BackgroundServices(container, relay=not relay_process)
        relay = LocalRelay(container.database_url, container.nats_url) if relay_process else None
        worker = (
            LocalWorker(container.nats_url, worker_key or "", worker_queue)
            if worker_queue
            else None
        )
        projections = LocalProjections(container.database_url) if projections_process else None
        hub = live_hub(container)
        if projections is not None:
            await projections.start()  # first: it catches up while the rest starts
        if background:
            await services.start()
        if relay is not None:
            await relay.start()
        if worker is not None:
            await worker.start()
        await hub.start()
        app.state.services, app.state.hub = services, hub
        try:
            yield
        finally:
            await hub.stop()
            if worker is not None:
                await worker.stop()  # first: it reports to the services below
            await services.stop()
            if relay is not None:
                await relay.stop()  # after the last writes; the rest go on its next start
            if projections is not None:
                await projections.stop()

    auth = DefineMiddleware(
        KeyAuthentication,
        exclude=["^/healthz", "^/readyz", "^/metrics", "^/schema", *PUBLIC_PATTERNS],
    )
    return Litestar(
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
            page_router(),
        ],
        state=State({"container": container, "key_store": container.keys}),
        lifespan=[lifespan],
        logging_config=None,  # ours (infra/logs.py): JSON lines with request ids
        after_exception=[log_unexpected],
        exception_handlers=exception_handlers(),
        middleware=[count_requests, auth],
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
