"""`agentboard up`: the whole stack in this process and two children (projections, a worker)."""

from __future__ import annotations

import gc
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import typer
import uvicorn

from api.http.app import create_app
from infra.bootstrap import open_stack, write_stack_file
from infra.keys import KeyStore, ensure_admin_key, ensure_worker_key
from infra.settings import Settings


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after its own shutdown, which would kill us before
    the writer, NATS and PostgreSQL are stopped in order; this one just returns."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        app: Any = self.config.app
        hub = app.state.get("hub")  # end live streams, or shutdown waits on them
        if hub is not None:
            hub.close_all()
        super().handle_exit(sig, frame)

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve_stack(settings: Settings) -> None:
    """Embedded servers unless configured, the API with its background services, the
    projections process and a worker on `default`, until Ctrl-C or SIGTERM."""
    with open_stack(settings, run_projections=False) as container:
        # Start-up made many long-lived objects; a full collection walking them pauses every
        # thread (≈200 ms with a warm writer cache): keep them out of its way.
        gc.collect()
        gc.freeze()
        worker_key = ensure_worker_key(settings.data_dir, KeyStore(container.database_url))
        config = uvicorn.Config(
            create_app(
                container,
                worker_queue="default",
                worker_key=worker_key,
                projections_process=True,
                relay_process=True,
            ),
            host=settings.http_host,
            port=settings.http_port,
            log_level="info",
            log_config=None,  # our handlers: JSON lines with request ids
            access_log=False,  # the API logs each request itself
            lifespan="on",
            loop="uvloop",  # C event loop and HTTP parser: the pure-Python ones cost
            http="httptools",  # the API about half its CPU under load
            timeout_graceful_shutdown=5,  # then live streams are cut; clients resume
        )
        server = _Server(config)
        http_url = f"http://{settings.http_host}:{settings.http_port}"
        stack_file = write_stack_file(settings, container, http_url)
        key = ensure_admin_key(settings.data_dir, KeyStore(container.database_url))
        typer.echo(f"agentboard is up: {http_url}/")
        typer.echo(f"sign in to the board: {http_url}/#key={key}")
        try:
            server.run()  # returns on Ctrl-C or SIGTERM, after draining requests
        finally:
            stack_file.unlink(missing_ok=True)
    typer.echo("agentboard stopped")
