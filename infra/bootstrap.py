"""The composition root: everything agentboard runs is built here, from Settings.

This module builds the command side and the read side (``bootstrap``) and the event store
a tool opens (``open_store``); ``infra/roles.py`` builds each process role from them
(``api``, ``relay``, ``projections run``, ``worker``, and ``up``, which runs them all).
``api/``, the CLI and the tests call these, never wire on their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cachetools import LRUCache

from domain.application import ExecutionService
from infra.eventstore import eventsourcing_env
from infra.keys import KeyStore
from infra.servers import database_url as database_url_of
from infra.settings import Settings
from infra.webhooks.store import WebhookStore
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

READER_CACHE_SIZE = 1_000  # executions a process that only reads keeps in memory


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
    webhooks: WebhookStore = field(init=False)
    """Webhook endpoints and their deliveries (infra/webhooks/)."""
    _closed: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.keys = KeyStore(self.database_url)
        self.webhooks = WebhookStore(self.database_url)

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
    service = event_store(settings, database_url, cache_size=settings.writer_cache_size)
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


def event_store(settings: Settings, database_url: str, *, cache_size: int) -> ExecutionService:
    """The event store of ``database_url`` (its tables must exist: ``ensure_schema``),
    keeping up to ``cache_size`` executions in memory."""
    env = eventsourcing_env(database_url, settings, create_table=False)
    return ExecutionService(env, cache=LRUCache(cache_size) if cache_size else None)


@dataclass
class Store:
    service: ExecutionService
    database_url: str


@contextmanager
def open_store(settings: Settings) -> Iterator[Store]:
    """The event store of the configured database, or of the running local stack, for a
    tool that reads or repairs it (``projections status``, ``rebuild``, ``skip``). Never
    starts servers; raises ``NoServers`` when there is nothing to open."""
    url = database_url_of(settings)
    service = event_store(settings, url, cache_size=READER_CACHE_SIZE)
    try:
        yield Store(service, url)
    finally:
        service.close()
