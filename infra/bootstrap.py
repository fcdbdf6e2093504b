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
from infra.keys import KeyStore
from infra.settings import STACK_FILE, Settings
from infra.writer import GroupCommitWriter
from projections.engine.listener import Listener
from projections.engine.positions import ViewPositions
from projections.engine.progress import ViewProgress
from projections.engine.registry import ProjectionOptions, datastore_for
from projections.engine.supervisor import (
    ProjectionSupervisor,
    create_view_tables,
    start_projections,
)
from projections.views.read_models import ReadModels

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    database_url: str
    nats_url: str
    service: ExecutionService
    writer: GroupCommitWriter
    read_models: ReadModels
    listener: Listener
    """The process's one LISTEN connection: the views' runners or their reader, and the
    relay when it runs here, wake on it."""
    projections: ProjectionSupervisor | None = None
    keys: KeyStore = field(init=False)
    """API keys, one store per process: the HTTP API and the command service for workers
    share what it remembers, so a key revoked here is refused by both at once."""
    _closed: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.keys = KeyStore(self.database_url)

    @property
    def views(self) -> ViewProgress:
        """Where each view is (``position``, ``wait_for``): the supervisor itself when the
        projections run in this process, else what their process announces."""
        return self.read_models.progress

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.projections is not None:
            self.projections.stop()  # first: its runners read through the service
        elif isinstance(self.views, ViewPositions):
            self.views.stop()
            self.read_models.datastore.close()
        self.listener.stop()
        self.writer.stop()
        self.service.close()


def bootstrap(
    settings: Settings, *, database_url: str, nats_url: str, run_projections: bool = False
) -> Container:
    """Wire the command side and the read side against servers that are already running;
    with ``run_projections`` also keep the read models up to date in this process (else
    another process does: ``agentboard projections run``)."""
    env = eventsourcing_env(database_url, settings, create_table=False)
    service = ExecutionService(env, cache_size=settings.writer_cache_size)
    writer = GroupCommitWriter(service, max_batch=settings.writer_max_batch).start()
    listener = Listener(database_url).start()
    if run_projections:
        supervisor = start_projections(service, database_url, ProjectionOptions(), listener)
        return Container(
            settings, database_url, nats_url, service, writer, supervisor.read_models, listener,
            supervisor,
        )  # fmt: skip
    datastore = datastore_for(database_url)
    create_view_tables(datastore)
    views = ViewPositions(database_url, datastore, listener=listener).start()
    read_models = ReadModels.build(service, datastore, views)
    return Container(settings, database_url, nats_url, service, writer, read_models, listener)


def run_projections(settings: Settings, database_url: str) -> ProjectionSupervisor:
    """The projections of a stack, in this process (each page they commit announces
    itself to the API's readers: projections/engine/positions.py)."""
    env = eventsourcing_env(database_url, settings, create_table=False)
    service = ExecutionService(env, cache_size=1_000)  # it only reads
    options = ProjectionOptions()
    datastore = datastore_for(database_url, pool_size=options.pool_size)
    supervisor = ProjectionSupervisor(
        service, datastore, database_url=database_url, options=options
    )
    return supervisor.start()


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
def open_stack(settings: Settings, *, run_projections: bool = True) -> Iterator[Container]:
    with running_servers(settings) as servers:
        container = bootstrap(
            settings,
            database_url=servers.database_url,
            nats_url=servers.nats_url,
            run_projections=run_projections,
        )
        try:
            yield container
        finally:
            container.close()
