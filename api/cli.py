"""The ``agentboard`` command: ``up``, ``worker``, ``keys`` so far."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
import uvicorn

from api.app import create_app
from api.client import ApiClient
from infra.bootstrap import STACK_FILE, open_stack, write_stack_file
from infra.keys import KeyStore, Role, ensure_admin_key
from infra.settings import Settings

cli = typer.Typer(
    name="agentboard",
    help="agentboard: the system of record for agentic task executions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
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
    AGENTBOARD_NATS_URL point elsewhere), with one worker on the queue `default`.
    Ctrl-C or SIGTERM stops everything cleanly."""
    _logging()
    settings = Settings()
    with open_stack(settings) as container:
        config = uvicorn.Config(
            create_app(container, worker_queue="default"),
            host=settings.http_host,
            port=settings.http_port,
            log_level="info",
            lifespan="on",
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


QueueOption = Annotated[
    list[str] | None, typer.Option("--queue", "-q", help="a queue to take work from (repeatable)")
]


@cli.command()
def worker(
    queue: QueueOption = None,
    concurrency: Annotated[int, typer.Option(min=1, max=1000)] = 4,
) -> None:
    """Run a worker with the built-in agents (shell, script). SIGTERM drains it."""
    from workers.agents import BUILTIN_AGENTS  # noqa: PLC0415
    from workers.runtime import Worker  # noqa: PLC0415

    _logging()
    settings = Settings()
    nats_url = settings.nats_url or _stack_nats_url(settings)
    queues = tuple(queue or ["default"])
    runner = Worker(nats_url, queues, dict(BUILTIN_AGENTS), concurrency=concurrency)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runner.stop)
        await runner.run()

    asyncio.run(main())


def _stack_nats_url(settings: Settings) -> str:
    try:
        stack = json.loads((settings.data_dir / STACK_FILE).read_text())
    except (OSError, ValueError):
        typer.echo(
            "no NATS to connect to: set AGENTBOARD_NATS_URL, or start the stack with "
            "`agentboard up` (it writes its URLs to <data dir>/stack.json)",
            err=True,
        )
        raise typer.Exit(2) from None
    url: str = stack["nats_url"]
    return url


keys_cli = typer.Typer(help="API keys.", no_args_is_help=True)
cli.add_typer(keys_cli, name="keys")

UrlOption = Annotated[str | None, typer.Option("--url", help="the API (AGENTBOARD_URL)")]
KeyOption = Annotated[str | None, typer.Option("--api-key", help="an API key (AGENTBOARD_API_KEY)")]


@keys_cli.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="the tenant the key belongs to")],
    role: Annotated[Role, typer.Option(help="viewer, operator, worker or admin")],
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Make an API key (needs an admin key). The key is printed once; keep it."""
    api = ApiClient(Settings(), url, api_key)
    created = api.call("POST", "/v1/keys", json={"tenant": tenant, "role": role.value})
    typer.echo(created["key"])


def main() -> None:
    cli()


@cli.callback()
def _root() -> None:
    """agentboard: the system of record for agentic task executions."""
