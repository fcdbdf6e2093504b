"""`agentboard up`: the whole stack in this process and two children (projections, a worker)."""

from __future__ import annotations

import gc
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import typer
import uvicorn

from api.cli.client import EXIT_USAGE, fail
from api.http.app import create_app
from infra.bootstrap import open_stack, write_stack_file
from infra.keys import KeyStore, ensure_admin_key, ensure_worker_key
from infra.settings import Settings


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after its own shutdown, which would kill us before
    the writer, NATS and PostgreSQL are stopped in order; this one just returns. It says
    the stack is up only once the API listens (``on_listening``)."""

    on_listening: Callable[[], None] = staticmethod(lambda: None)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.on_listening()

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
    # The port first: taken, nothing is started, and no key is made for another server.
    listening = http_socket(settings.http_host, settings.http_port)
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

        def say_it_is_up() -> None:
            typer.echo(f"agentboard is up: {http_url}/")
            typer.echo(f"sign in to the board: {http_url}/#key={key}")

        server.on_listening = say_it_is_up
        try:
            server.run(sockets=[listening])  # returns on Ctrl-C or SIGTERM, after draining
        finally:
            stack_file.unlink(missing_ok=True)
    typer.echo("agentboard stopped")


def http_socket(host: str, port: int) -> socket.socket:
    """The API's socket, bound before anything starts (as uvicorn binds it); a port another
    process holds ends `up` at once with what to do about it (exit code 2)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        fail(
            f"cannot listen on {host}:{port} ({error.strerror}): another program (another "
            "agentboard?) holds it; stop it, or set AGENTBOARD_HTTP_PORT to a free port",
            EXIT_USAGE,
        )
    return sock
