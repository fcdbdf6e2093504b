"""Serving HTTP: ``agentboard up`` (the whole stack: this process and its children) and
``agentboard api`` (the api role alone); infra/roles.py builds what each runs."""

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
from litestar import Litestar

from api.cli.client import EXIT_USAGE, fail
from api.http.app import create_app
from infra import roles
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
    """``agentboard up``: the stack infra/roles.py builds, served until Ctrl-C or SIGTERM.
    The port first: taken, nothing is started, and no key is made for another server; the
    stack is said to be up once the API listens."""
    listening = http_socket(settings.http_host, settings.http_port)
    with roles.stack(settings) as stack:
        _settle()
        app = create_app(stack.api.container, role=stack.api)

        def say_it_is_up() -> None:
            typer.echo(f"agentboard is up: {stack.http_url}/")
            typer.echo(f"sign in to the board: {stack.http_url}/#key={stack.admin_key}")

        _serve(app, settings, listening, say_it_is_up)
    typer.echo("agentboard stopped")


def serve_api(settings: Settings) -> None:
    """``agentboard api``: the api role on the configured servers, until Ctrl-C or SIGTERM."""
    listening = http_socket(settings.http_host, settings.http_port)
    with roles.api(settings) as api:
        _settle()
        _serve(create_app(api.container, role=api), settings, listening)


def _settle() -> None:
    # Start-up made many long-lived objects; a full collection walking them pauses every
    # thread (≈200 ms with a warm writer cache): keep them out of its way.
    gc.collect()
    gc.freeze()


def _serve(
    app: Litestar,
    settings: Settings,
    listening: socket.socket,
    on_listening: Callable[[], None] = lambda: None,
) -> None:
    """Serve HTTP on ``listening`` (bound to the configured host and port); returns on
    Ctrl-C or SIGTERM, after draining requests (the app's lifespan then stops its role)."""
    config = uvicorn.Config(
        app,
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
    server.on_listening = on_listening
    server.run(sockets=[listening])


def http_socket(host: str, port: int) -> socket.socket:
    """The API's socket, bound before anything starts (as uvicorn binds it); a port another
    process holds ends the command at once with what to do about it (exit code 2)."""
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
