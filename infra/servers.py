"""Where PostgreSQL and NATS are: started embedded (``agentboard up``), or found.

A role started on its own connects to ``AGENTBOARD_DATABASE_URL`` and
``AGENTBOARD_NATS_URL``; left unset, to the servers of the stack that ``agentboard up``
runs on this data dir, as its ``<data dir>/stack.json`` says. Only ``up`` starts servers:
a second embedded PostgreSQL on the same data would stop the first.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra.embedded import EmbeddedNats, EmbeddedPostgres
from infra.eventstore import ensure_schema
from infra.settings import STACK_FILE, Settings, Unconfigured

log = logging.getLogger(__name__)


class NoServers(Unconfigured):
    """Nothing to connect to: the setting is unset and no local stack is running."""


@dataclass(frozen=True)
class Servers:
    database_url: str
    nats_url: str


def database_url(settings: Settings) -> str:
    """The configured database, else the local stack's."""
    return settings.database_url or _from_stack_file(
        settings, "database_url", "no database: set AGENTBOARD_DATABASE_URL"
    )


def nats_url(settings: Settings) -> str:
    """The configured NATS, else the local stack's."""
    return settings.nats_url or _from_stack_file(
        settings, "nats_url", "no NATS to connect to: set AGENTBOARD_NATS_URL"
    )


def located_servers(settings: Settings) -> Servers:
    return Servers(database_url(settings), nats_url(settings))


def _from_stack_file(settings: Settings, name: str, missing: str) -> str:
    try:
        url = json.loads((settings.data_dir / STACK_FILE).read_text())[name]
    except (OSError, ValueError, KeyError, TypeError):
        raise NoServers(
            f"{missing}, or start the stack with `agentboard up` "
            f"(it writes its URLs to {settings.data_dir / STACK_FILE})"
        ) from None
    if not isinstance(url, str):
        raise NoServers(f"{settings.data_dir / STACK_FILE} names no {name}")
    return url


@contextmanager
def running_servers(settings: Settings) -> Iterator[Servers]:
    """The configured servers, starting embedded ones for those left unset, with the event
    store's schema in place; stops what it started, NATS first, PostgreSQL last."""
    with ExitStack() as stack:
        database = settings.database_url
        if database is None:
            postgres = EmbeddedPostgres(settings.data_dir, fsync=settings.embedded_postgres_fsync)
            database = postgres.start()
            stack.callback(postgres.stop)
            log.info("embedded PostgreSQL at %s", database)
        nats = settings.nats_url
        if nats is None:
            embedded = EmbeddedNats(settings.data_dir)
            nats = embedded.start()
            stack.callback(embedded.stop)
            log.info("embedded NATS at %s", nats)
        created = ensure_schema(database, settings)
        log.info("event store schema %s", "created" if created else "already present")
        yield Servers(database, nats)


@contextmanager
def stack_file(settings: Settings, servers: Servers, http_url: str) -> Iterator[Path]:
    """``<data dir>/stack.json`` while the stack runs: tells other local tools (roles started
    on their own, the CLI, tests) where its servers are."""
    path = settings.data_dir / STACK_FILE
    path.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "http_url": http_url,
                "database_url": servers.database_url,
                "nats_url": servers.nats_url,
            }
        )
    )
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
