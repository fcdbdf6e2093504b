"""The ``agentboard`` command (DESIGN §7): ``up``, ``worker``, ``exec``, ``execution``,
``projections``, ``audit``, ``keys``.

Only typer and the verb modules are imported to build the command; a verb imports what it
needs when it runs: httpx and rich for the verbs that talk to the API, the server's code
(PostgreSQL, NATS, eventsourcing, Litestar) for ``up``, ``worker``, ``relay`` and
``projections``. So ``--help`` and ``execution list`` start in a fraction of a second
(docs/cli.md, "Start time"; tests/unit/test_cli_start.py holds it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.cli.audit import audit_cli
from api.cli.bulk import add_bulk_commands
from api.cli.client import EXIT_USAGE, KeyOption, fail
from api.cli.executions import Output, OutputOption, exec_command, execution_cli
from api.cli.group import root_group, verb_group
from api.cli.keys import keys_cli

if TYPE_CHECKING:
    from infra.settings import Settings

cli = root_group("agentboard: the system of record for agentic task executions.")


def _logging() -> None:
    import logging  # noqa: PLC0415 - the verbs that print only do without

    from infra.logs import configure_logging  # noqa: PLC0415

    configure_logging(logging.INFO)


def _settings() -> Settings:
    """Every setting (pydantic-settings: a fifth of a second to import), for the verbs that
    run part of the server."""
    from infra.settings import Settings  # noqa: PLC0415

    return Settings()


@cli.command()
def up() -> None:
    """Start the whole stack.

    PostgreSQL and NATS run embedded (unless AGENTBOARD_DATABASE_URL or AGENTBOARD_NATS_URL
    point elsewhere), the API and the board in this process, the projections and the relay in
    processes of their own, and one worker on the queue `default`. It writes an admin key to
    <data dir>/admin.key, which the other verbs use, and prints a sign-in link to the board.
    Ctrl-C or SIGTERM stops everything cleanly; a second `up` reuses the data.

    \b
    Examples:
      agentboard up
      AGENTBOARD_HTTP_PORT=8080 AGENTBOARD_DATA_DIR=/srv/agentboard agentboard up
    """
    from api.cli.stack import serve_stack  # noqa: PLC0415 - the whole server

    _logging()
    serve_stack(_settings())


QueueOption = Annotated[
    list[str] | None, typer.Option("--queue", "-q", help="a queue to take work from (repeatable)")
]


@cli.command()
def worker(
    queue: QueueOption = None,
    concurrency: Annotated[int, typer.Option(min=1, max=1000)] = 4,
    api_key: KeyOption = None,
) -> None:
    """Run a worker with the built-in agents.

    The agents are shell and script; the queues are those given (default: `default`). SIGTERM
    drains it. It reports with a key of role worker: --api-key, else AGENTBOARD_API_KEY, else
    the local stack's <data dir>/worker.key. A key of tenant default serves every tenant; a
    key of another tenant only that tenant's executions.

    \b
    Examples:
      agentboard worker --queue gpu --concurrency 8
      AGENTBOARD_API_KEY=ab_... agentboard worker --queue gpu --queue cpu
    """
    import asyncio  # noqa: PLC0415 - the worker's runtime: NATS, the agents
    import signal  # noqa: PLC0415

    from infra.local_keys import WORKER_KEY_FILE, read_key_file  # noqa: PLC0415
    from workers.agents import BUILTIN_AGENTS  # noqa: PLC0415
    from workers.client import CommandRefused  # noqa: PLC0415
    from workers.runtime import Worker  # noqa: PLC0415

    _logging()
    settings = _settings()
    nats_url = settings.nats_url or _stack_nats_url(settings)
    key = api_key or settings.api_key or read_key_file(settings.data_dir / WORKER_KEY_FILE)
    if not key:
        fail(
            "a worker needs a key of role worker: --api-key or AGENTBOARD_API_KEY "
            "(agentboard keys create --tenant default --role worker)",
            EXIT_USAGE,
        )
    queues = tuple(queue or ["default"])
    runner = Worker(nats_url, queues, dict(BUILTIN_AGENTS), concurrency=concurrency, api_key=key)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runner.stop)
        await runner.run()

    try:
        asyncio.run(main())
    except CommandRefused as refusal:
        fail(f"the command service refused this worker: {refusal.detail}", EXIT_USAGE)


@cli.command(hidden=True)
def relay() -> None:
    """Publish every stored event to NATS.

    What `agentboard up` runs beside the API; one relay is active per database, others wait.
    SIGTERM stops it.
    """
    import asyncio  # noqa: PLC0415 - the relay's runtime: NATS, the store
    import signal  # noqa: PLC0415

    from infra.services import run_relay  # noqa: PLC0415

    _logging()
    settings = _settings()
    nats_url = settings.nats_url or _stack_nats_url(settings)
    with _store(settings) as (service, url):

        async def main() -> None:
            stopping = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stopping.set)
            await run_relay(service, nats_url, url, stopping)

        asyncio.run(main())


def _stack_nats_url(settings: Settings) -> str:
    from infra.settings import STACK_FILE  # noqa: PLC0415

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


projections_cli = verb_group("Read models: status, rebuild, skip.")
cli.add_typer(projections_cli, name="projections")


@contextmanager
def _store(settings: Settings) -> Iterator[tuple[Any, str]]:
    """The event store of the configured database, or of the running local stack. Never
    starts servers: a second embedded PostgreSQL on the same data would stop the first."""
    from domain.application import ExecutionService  # noqa: PLC0415 - eventsourcing, psycopg
    from infra.eventstore import eventsourcing_env  # noqa: PLC0415
    from infra.settings import STACK_FILE  # noqa: PLC0415

    url = settings.database_url
    if url is None:
        try:
            url = json.loads((settings.data_dir / STACK_FILE).read_text())["database_url"]
        except (OSError, ValueError, KeyError):
            fail(
                "no database: set AGENTBOARD_DATABASE_URL, or start the stack with `agentboard up`",
                EXIT_USAGE,
            )
    service = ExecutionService(eventsourcing_env(url, settings, create_table=False))
    try:
        yield service, url
    finally:
        service.close()


@projections_cli.command("run")
def projections_run() -> None:
    """Keep every view up to date.

    What `agentboard up` runs beside the API. SIGTERM stops it.

    \b
    Example:
      AGENTBOARD_DATABASE_URL=postgresql://... agentboard projections run
    """
    import signal  # noqa: PLC0415 - the runners: psycopg, eventsourcing
    import threading  # noqa: PLC0415

    from infra.bootstrap import run_projections  # noqa: PLC0415

    _logging()
    settings = _settings()
    with _store(settings) as (_, url):
        supervisor = run_projections(settings, url)
        stopping = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
        stopping.wait()
        supervisor.stop()


@projections_cli.command("status")
def projections_status(output: OutputOption = Output.TABLE) -> None:
    """Each view's state, position and lag.

    Also its restarts and last error, and the bad events a view was told to skip. Reads the
    database of the stack `up` runs here (or AGENTBOARD_DATABASE_URL).

    \b
    Examples:
      agentboard projections status
      agentboard projections status -o json | jq '.views[] | select(.lag > 0)'
    """
    from api.cli.projections import status_command  # noqa: PLC0415 - psycopg, eventsourcing

    with _store(_settings()) as (service, url):
        raise typer.Exit(status_command(service, url, as_json=output is Output.JSON))


@projections_cli.command("rebuild")
def projections_rebuild(
    name: Annotated[str | None, typer.Argument(help="one view; all when left out")] = None,
) -> None:
    """Rebuild a view, or all, from the log.

    Replays the log from position 0 into fresh tables and swaps them in, while the live views
    keep serving; every view, each in a process of its own, when no NAME is given.

    \b
    Examples:
      agentboard projections rebuild
      agentboard projections rebuild board
    """
    from api.cli.projections import rebuild_command  # noqa: PLC0415 - psycopg, eventsourcing

    with _store(_settings()) as (service, url):
        raise typer.Exit(rebuild_command(service, url, name))


@projections_cli.command("skip")
def projections_skip(
    name: Annotated[str, typer.Argument(help="the halted view")],
    position: Annotated[int, typer.Argument(help="the bad event's position")],
    reason: Annotated[str, typer.Option("--reason", help="why skipping it is right")],
) -> None:
    """Let a halted view go past a bad stored event.

    The skip is recorded, with the reason, and shown by `projections status`. The position is
    in the view's error.

    \b
    Example:
      agentboard projections skip board 1234 --reason 'a NUL in the prompt'
    """
    from api.cli.projections import skip_command  # noqa: PLC0415 - psycopg, eventsourcing

    with _store(_settings()) as (service, url):
        raise typer.Exit(skip_command(service, url, name, position, reason))


add_bulk_commands(execution_cli)
cli.add_typer(execution_cli, name="execution")
cli.add_typer(audit_cli, name="audit")
cli.command("exec")(exec_command)
cli.add_typer(keys_cli, name="keys")


def main() -> None:
    cli()


@cli.callback()
def _root() -> None:
    """agentboard: the system of record for agentic task executions."""
