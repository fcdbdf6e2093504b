"""The composition root: everything agentboard runs is built here, from Settings.

``api/``, ``workers/``, the CLI and the tests all call ``bootstrap`` (or ``open_stack``,
which first starts the embedded servers that the settings leave unset).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from domain.application import ExecutionService
from infra.embedded import EmbeddedNats, EmbeddedPostgres
from infra.eventstore import ensure_schema, eventsourcing_env
from infra.settings import Settings
from infra.writer import GroupCommitWriter
from projections import ProjectionOptions, ProjectionSupervisor, start_projections

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    database_url: str
    nats_url: str
    service: ExecutionService
    writer: GroupCommitWriter
    projections: ProjectionSupervisor | None = None
    _closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.projections is not None:
            self.projections.stop()  # first: its runners read through the service
        self.writer.stop()
        self.service.close()


def bootstrap(
    settings: Settings, *, database_url: str, nats_url: str, run_projections: bool = False
) -> Container:
    """Wire the command side against servers that are already running; with
    ``run_projections`` also keep the read models up to date in this process."""
    env = eventsourcing_env(database_url, settings, create_table=False)
    service = ExecutionService(env, cache_size=settings.writer_cache_size)
    writer = GroupCommitWriter(service, max_batch=settings.writer_max_batch).start()
    projections = (
        start_projections(service, database_url, ProjectionOptions()) if run_projections else None
    )
    return Container(settings, database_url, nats_url, service, writer, projections)


@dataclass
class Servers:
    database_url: str
    nats_url: str


@contextmanager
def running_servers(settings: Settings) -> Iterator[Servers]:
    """The configured servers, starting embedded ones for those left unset; stops what it
    started, NATS first, PostgreSQL last."""
    with ExitStack() as stack:
        database_url = settings.database_url
        if database_url is None:
            postgres = EmbeddedPostgres(settings.data_dir, fsync=settings.embedded_postgres_fsync)
            database_url = postgres.start()
            stack.callback(postgres.stop)
            log.info("embedded PostgreSQL at %s", database_url)
        nats_url = settings.nats_url
        if nats_url is None:
            nats = EmbeddedNats(settings.data_dir)
            nats_url = nats.start()
            stack.callback(nats.stop)
            log.info("embedded NATS at %s", nats_url)
        created = ensure_schema(database_url, settings)
        log.info("event store schema %s", "created" if created else "already present")
        yield Servers(database_url, nats_url)


STACK_FILE = "stack.json"


def write_stack_file(settings: Settings, container: Container, http_url: str) -> Path:
    """Tell other local tools (workers, the CLI, tests) where the running stack is."""
    path = settings.data_dir / STACK_FILE
    path.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "http_url": http_url,
                "database_url": container.database_url,
                "nats_url": container.nats_url,
            }
        )
    )
    return path


@contextmanager
def open_stack(settings: Settings) -> Iterator[Container]:
    with running_servers(settings) as servers:
        container = bootstrap(
            settings,
            database_url=servers.database_url,
            nats_url=servers.nats_url,
            run_projections=True,
        )
        try:
            yield container
        finally:
            container.close()
