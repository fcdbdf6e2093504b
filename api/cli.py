"""The ``agentboard`` command. At this stage: ``up``."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import typer
import uvicorn

from api.app import create_app
from infra.bootstrap import open_stack, write_stack_file
from infra.settings import Settings

cli = typer.Typer(
    name="agentboard",
    help="agentboard: the system of record for agentic task executions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after its own shutdown, which would kill us before
    the writer, NATS and PostgreSQL are stopped in order; this one just returns."""

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


@cli.command()
def up() -> None:
    """Start the whole stack on embedded PostgreSQL and NATS (unless AGENTBOARD_DATABASE_URL /
    AGENTBOARD_NATS_URL point elsewhere). Ctrl-C or SIGTERM stops everything cleanly."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings()
    with open_stack(settings) as container:
        config = uvicorn.Config(
            create_app(container),
            host=settings.http_host,
            port=settings.http_port,
            log_level="info",
            lifespan="on",
        )
        server = _Server(config)
        http_url = f"http://{settings.http_host}:{settings.http_port}"
        stack_file = write_stack_file(settings, container, http_url)
        typer.echo(f"agentboard is up: {http_url}/")
        try:
            server.run()  # returns on Ctrl-C or SIGTERM, after draining requests
        finally:
            stack_file.unlink(missing_ok=True)
    typer.echo("agentboard stopped")


def main() -> None:
    cli()


@cli.callback()
def _root() -> None:
    """agentboard: the system of record for agentic task executions."""
