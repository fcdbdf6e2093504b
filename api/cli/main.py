"""The ``agentboard`` command (DESIGN §7): ``up``, ``init``, the process roles (``api``,
``relay``, ``projections run``, ``conductor``, ``worker``: thin verbs over infra/roles.py),
``exec``, ``execution``, ``pipeline``, ``projections``, ``keys``, ``webhooks``, ``stats``,
``audit``.

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
from api.cli.pipelines import pipeline_cli
from api.cli.stats import stats_cli
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
    from pydantic import ValidationError  # noqa: PLC0415

    from infra.settings import Settings, Unconfigured  # noqa: PLC0415

    try:
        return Settings()
    except Unconfigured as bad:  # a value we cannot use: the message names the variable
        fail(str(bad), EXIT_USAGE)
    except ValidationError as error:
        first = error.errors()[0]
        name = "AGENTBOARD_" + str(first["loc"][0]).upper() if first["loc"] else "a setting"
        where = ".".join(str(part) for part in first["loc"][1:])
        fail(f"{name}{f' ({where})' if where else ''}: {first['msg']}", EXIT_USAGE)


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


@cli.command()
def init() -> None:
    """Prepare a deployment whose roles run as processes of their own: the event store's
    tables and every view's on AGENTBOARD_DATABASE_URL, the NATS streams, bucket and object
    store on AGENTBOARD_NATS_URL (when set), and the first admin key of tenant `default`,
    printed once on standard output (a store that has one gets none). Safe to run again and
    while the roles run.

    \b
    Example:
      AGENTBOARD_DATABASE_URL=postgresql://... AGENTBOARD_NATS_URL=nats://n1:4222,nats://n2:4222 \\
        agentboard init > admin.key"""
    from infra.initialize import initialize  # noqa: PLC0415 - the store, NATS

    settings = _settings()
    _logging(settings)
    with _configured():
        done = initialize(settings)
    typer.echo(
        f"schema {'created' if done.created_schema else 'already present'}; NATS streams "
        f"{'in place' if done.nats else 'not made (AGENTBOARD_NATS_URL is unset)'}",
        err=True,
    )
    if done.admin_key is None:
        typer.echo("an admin key of tenant default exists already: none made", err=True)
        return
    typer.echo("the first admin key of tenant default (shown this once):", err=True)
    typer.echo(done.admin_key)


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
    agent: Annotated[
        list[str] | None,
        typer.Option("--agent", "-a", help="NAME=module:callable, an agent of yours (repeatable)"),
    ] = None,
    api_key: KeyOption = None,
) -> None:
    """Run a worker with the built-in agents and yours.

    The agents are shell and script, those installed packages declare under the entry-point
    group agentboard.agents, and those given with --agent (docs/agents.md); one that does
    not load stops it at once (exit 2). The queues are those given (default: `default`). SIGTERM
    drains it. It reports with a key of role worker: --api-key, else AGENTBOARD_API_KEY, else
    the local stack's <data dir>/worker.key. A key of tenant default serves every tenant; a
    key of another tenant only that tenant's executions.

    \b
    Examples:
      agentboard worker --queue gpu --concurrency 8
      AGENTBOARD_API_KEY=ab_... agentboard worker --queue gpu --queue cpu
      agentboard worker --agent triage=my_agents.triage:run
    """
    import asyncio  # noqa: PLC0415 - the worker's runtime: NATS, the agents

    from infra import roles  # noqa: PLC0415
    from workers.client import CommandRefused  # noqa: PLC0415
    from workers.loading import AgentNotLoaded  # noqa: PLC0415

    settings = _settings()
    _logging(settings)
    with _configured():
        try:
            role = roles.worker(
                settings, queue or [], concurrency=concurrency, api_key=api_key, agents=agent or ()
            )
        except AgentNotLoaded as error:
            fail(str(error), EXIT_USAGE)
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


@cli.command()
def conductor() -> None:
    """Move pipelines on: dispatch each step as its items reach it.

    What `agentboard up` runs beside the API, on AGENTBOARD_DATABASE_URL (else the
    stack's). One conductor is active per database; others wait. SIGTERM stops it.
    """
    import asyncio  # noqa: PLC0415 - the conductor's runtime: the stores

    from infra import roles  # noqa: PLC0415

    settings = _settings()
    _logging(settings)
    with _configured():
        role = roles.conductor(settings)
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
cli.add_typer(pipeline_cli, name="pipeline")
cli.add_typer(stats_cli, name="stats")


def main() -> None:
    cli()  # a bad AGENTBOARD_* value is one line and exit 2: see _settings and _configured


@cli.callback()
def _root() -> None:
    """agentboard: the system of record for agentic task executions."""
