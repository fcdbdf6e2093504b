"""The ``agentboard`` command (DESIGN §7): ``up``, the process roles (``api``, ``relay``,
``projections run``, ``worker``: thin verbs over infra/roles.py), ``exec``, ``execution``,
``projections``, ``keys``, ``webhooks``, ``audit``.

Only typer and the verb modules are imported to build the command; a verb imports what it
needs when it runs: httpx and rich for the verbs that talk to the API, the server's code
(PostgreSQL, NATS, eventsourcing, Litestar) for ``up``, ``worker``, ``relay`` and
``projections``. So ``--help`` and ``execution list`` start in a fraction of a second
(docs/cli.md, "Start time"; tests/unit/test_cli_start.py holds it).
"""

from __future__ import annotations

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
from api.cli.webhooks import webhooks_cli

if TYPE_CHECKING:
    from infra.settings import Settings

cli = root_group("agentboard: the system of record for agentic task executions.")


def _logging(settings: Settings) -> None:
    import logging  # noqa: PLC0415 - the verbs that print only do without

    from infra.logs import configure_logging  # noqa: PLC0415

    configure_logging(logging.INFO, text=settings.log_format == "text")


@contextmanager
def _configured() -> Iterator[None]:
    """A role or tool that lacks its configuration: one line saying which, and exit 2."""
    from infra.settings import Unconfigured  # noqa: PLC0415 - pydantic-settings

    try:
        yield
    except Unconfigured as missing:
        fail(str(missing), EXIT_USAGE)


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

    settings = _settings()
    _logging(settings)
    serve_stack(settings)


@cli.command("api")
def api_command() -> None:
    """Run the HTTP API and the board.

    What `agentboard up` runs in its own process, with the command service for workers and
    the lease monitor, on AGENTBOARD_DATABASE_URL and AGENTBOARD_NATS_URL (else the servers
    of the stack `up` runs here). It serves on AGENTBOARD_HTTP_HOST and AGENTBOARD_HTTP_PORT
    and makes the event store's tables if they are missing. A deployment runs the relay, the
    projections and workers beside it. SIGTERM stops it.

    \b
    Example:
      AGENTBOARD_DATABASE_URL=postgresql://... AGENTBOARD_NATS_URL=nats://... agentboard api
    """
    from api.cli.stack import serve_api  # noqa: PLC0415 - the whole server

    settings = _settings()
    _logging(settings)
    with _configured():
        serve_api(settings)


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

    from infra import roles  # noqa: PLC0415
    from workers.client import CommandRefused  # noqa: PLC0415

    settings = _settings()
    _logging(settings)
    with _configured():
        role = roles.worker(settings, queue or [], concurrency=concurrency, api_key=api_key)
    try:
        asyncio.run(roles.run_until_signalled(role))
    except CommandRefused as refusal:
        fail(f"the command service refused this worker: {refusal.detail}", EXIT_USAGE)


@cli.command()
def relay() -> None:
    """Publish every stored event to NATS, and work to the workers.

    What `agentboard up` runs beside the API, from AGENTBOARD_DATABASE_URL to
    AGENTBOARD_NATS_URL (else those of the stack `up` runs here). One relay is active per
    database; others wait. SIGTERM stops it.
    """
    import asyncio  # noqa: PLC0415 - the relay's runtime: NATS, the store

    from infra import roles  # noqa: PLC0415

    settings = _settings()
    _logging(settings)
    with _configured():
        role = roles.relay(settings)
    asyncio.run(roles.run_until_signalled(role))


projections_cli = verb_group("Read models: status, rebuild, skip.")
cli.add_typer(projections_cli, name="projections")


@contextmanager
def _store(settings: Settings) -> Iterator[tuple[Any, str]]:
    """The event store of the configured database, or of the running local stack. Never
    starts servers: a second embedded PostgreSQL on the same data would stop the first."""
    from infra.bootstrap import open_store  # noqa: PLC0415 - eventsourcing, psycopg

    with _configured(), open_store(settings) as store:
        yield store.service, store.database_url


@projections_cli.command("run")
def projections_run() -> None:
    """Keep every view up to date.

    What `agentboard up` runs beside the API, on AGENTBOARD_DATABASE_URL (else that of the
    stack `up` runs here). SIGTERM stops it.

    \b
    Example:
      AGENTBOARD_DATABASE_URL=postgresql://... agentboard projections run
    """
    import asyncio  # noqa: PLC0415 - the runners: psycopg, eventsourcing

    from infra import roles  # noqa: PLC0415

    settings = _settings()
    _logging(settings)
    with _configured():
        role = roles.projections(settings)
    asyncio.run(roles.run_until_signalled(role))


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
cli.add_typer(webhooks_cli, name="webhooks")


def main() -> None:
    cli()


@cli.callback()
def _root() -> None:
    """agentboard: the system of record for agentic task executions."""
