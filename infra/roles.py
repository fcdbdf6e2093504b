"""The process roles (DESIGN §11), each built here from Settings, each with start and stop.

=============== ===================== ====================================================
role            command               runs
=============== ===================== ====================================================
api             ``agentboard api``    the HTTP API and the board (api/http/app.py, whose
                                      lifespan starts and stops this role), the command
                                      side (group-commit writer), the read side, the
                                      command service for worker reports, the lease
                                      monitor, the audit anchors, and the webhooks
                                      service (one active per database)
relay           ``agentboard relay``  the relay: every stored event to NATS (one active
                                      per database, the others wait)
projections     ``agentboard          every view's runner
                projections run``
worker          ``agentboard worker`` a worker with the built-in agents
up              ``agentboard up``     embedded servers where unset, the api role in this
                                      process and one process of each other role beside
                                      it, started again when one dies (infra/children.py)
=============== ===================== ====================================================

A role started on its own connects to ``AGENTBOARD_DATABASE_URL`` and
``AGENTBOARD_NATS_URL``, or to the local stack's servers (infra/servers.py). The
conductor and the scheduler are roles to come, built here the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, cast

from eventsourcing.postgres import PostgresDatastore
from nats.aio.client import Client

from domain.application import ExecutionService
from infra.bootstrap import READER_CACHE_SIZE, Container, bootstrap, event_store
from infra.children import LocalProjections, LocalRelay, LocalWorker
from infra.eventstore import ensure_schema
from infra.keys import ensure_admin_key, ensure_worker_key
from infra.local_keys import WORKER_KEY_FILE, read_key_file
from infra.nats import connect, ensure_topology
from infra.relay import Relay
from infra.servers import Servers, database_url, located_servers, nats_url, running_servers
from infra.servers import stack_file as announced
from infra.services import BackgroundServices, supervised
from infra.settings import Settings, Unconfigured
from infra.webhooks.service import WebhookService
from projections.engine.listener import Listener
from projections.engine.registry import (
    AnyProjection,
    ProjectionFactory,
    ProjectionOptions,
    datastore_for,
    make_projection,
    view_names,
)
from projections.engine.supervisor import ProjectionSupervisor

if TYPE_CHECKING:
    from workers.runtime import Worker

UP_WORKER_QUEUE = "default"  # the queue of the worker `agentboard up` runs
TRACES = "traces"  # the runner exporting traces (infra/traces.py), when tracing is on


class NoWorkerKey(Unconfigured):
    """A worker has no key of role worker to report with."""


class Part(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Role(ABC):
    """Start, stop, and (``async with``) both; a start that fails stops what it began."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None:
        """Stop what runs; safe after a start that failed half way."""

    async def ended(self) -> None:
        """Return when the role ends on its own (its ``stop`` then says why); most never do."""
        await asyncio.Event().wait()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


# -- api ---------------------------------------------------------------------------------


@dataclass
class ApiRole(Role):
    """What an API process runs beside HTTP. ``parts`` start in order (the services among
    them) and stop in reverse; under ``up`` they include the other roles' processes."""

    container: Container
    services: BackgroundServices
    webhooks: WebhookService
    parts: list[Part] = field(default_factory=list)

    async def start(self) -> None:
        for part in self.parts:
            await part.start()

    async def stop(self) -> None:
        for part in reversed(self.parts):
            await part.stop()


@contextmanager
def api(settings: Settings) -> Iterator[ApiRole]:
    """``agentboard api``: the configured servers (or the local stack's); the event store's
    tables are made if missing, so a deployment's first API process migrates."""
    servers = located_servers(settings)
    ensure_schema(servers.database_url, settings)
    with _api(settings, servers) as role:
        role.parts = [role.services, role.webhooks]
        yield role


@dataclass
class Stack:
    api: ApiRole
    http_url: str
    admin_key: str
    """Of tenant ``default``, kept in ``<data dir>/admin.key`` for the CLI."""


@contextmanager
def stack(settings: Settings) -> Iterator[Stack]:
    """``agentboard up``: embedded servers unless configured, the api role, and a process
    each of projections, relay and a worker on ``default``; ``<data dir>/stack.json`` says
    where it all is while it runs."""
    with running_servers(settings) as servers, _api(settings, servers) as role:
        keys = role.container.keys
        worker_key = ensure_worker_key(settings.data_dir, keys)
        role.parts = [
            LocalProjections(servers.database_url),  # first: it catches up while the rest starts
            role.services,
            role.webhooks,
            LocalRelay(servers.database_url, servers.nats_url),
            LocalWorker(servers.nats_url, worker_key, UP_WORKER_QUEUE),  # stopped first: it
        ]  # reports to the services, and finishes what it holds
        http_url = f"http://{settings.http_host}:{settings.http_port}"
        with announced(settings, servers, http_url):
            yield Stack(role, http_url, ensure_admin_key(settings.data_dir, keys))


@contextmanager
def _api(settings: Settings, servers: Servers) -> Iterator[ApiRole]:
    container = bootstrap(settings, database_url=servers.database_url, nats_url=servers.nats_url)
    try:
        webhooks = WebhookService(settings, servers.database_url, container.service)
        yield ApiRole(container, BackgroundServices(container, relay=False), webhooks)
    finally:
        container.close()


# -- relay -------------------------------------------------------------------------------


class RelayRole(Role):
    def __init__(self, settings: Settings, servers: Servers) -> None:
        self.servers = servers
        self.service = event_store(settings, servers.database_url, cache_size=READER_CACHE_SIZE)
        self.stopping = asyncio.Event()
        self.nc: Client | None = None
        self.listener: Listener | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.nc = await connect(self.servers.nats_url, "agentboard relay")
        await ensure_topology(self.nc.jetstream())
        self.listener = Listener(self.servers.database_url).start()  # this process's one
        relay = Relay(self.service, self.nc, self.servers.database_url, listener=self.listener)
        self.task = asyncio.create_task(
            supervised("relay", lambda: relay.run(self.stopping), self.stopping)
        )

    async def stop(self) -> None:
        self.stopping.set()
        if self.task is not None:
            await self.task
        if self.listener is not None:
            await asyncio.to_thread(self.listener.stop)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
        self.service.close()


def relay(settings: Settings) -> RelayRole:
    """``agentboard relay``."""
    return RelayRole(settings, located_servers(settings))


# -- projections -------------------------------------------------------------------------


class ProjectionsRole(Role):
    """Every view's runner, in threads; each page they commit announces itself to the API
    processes' readers (projections/engine/positions.py)."""

    def __init__(self, settings: Settings, database: str) -> None:
        self.service = event_store(settings, database, cache_size=READER_CACHE_SIZE)
        options = ProjectionOptions()
        names, factory = view_names(), cast(ProjectionFactory, make_projection)
        if settings.tracing:  # every execution exported as a trace, by a runner of its own
            names, factory = [*names, TRACES], _with_traces(self.service)
        self.supervisor = ProjectionSupervisor(
            self.service, datastore_for(database, pool_size=options.pool_size),
            database_url=database, options=options, names=names, factory=factory,
        )  # fmt: skip
        self._started = False

    async def start(self) -> None:
        self._started = True
        await asyncio.to_thread(self.supervisor.start)

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await asyncio.to_thread(self.supervisor.stop)
        self.service.close()


def _with_traces(service: ExecutionService) -> ProjectionFactory:
    from infra.traces import otlp_exporter, traces_factory  # noqa: PLC0415 - when tracing only

    def history(execution_id: Any, version: int) -> list[Any]:
        return list(service.events.get(execution_id, lte=version))

    traces = traces_factory(history, otlp_exporter())

    def factory(name: str, datastore: PostgresDatastore, suffix: str) -> AnyProjection:
        if name == TRACES:
            return traces(name, datastore, suffix)
        return make_projection(name, datastore, suffix)

    return factory


def projections(settings: Settings) -> ProjectionsRole:
    """``agentboard projections run``."""
    return ProjectionsRole(settings, database_url(settings))


# -- worker ------------------------------------------------------------------------------


class WorkerRole(Role):
    """A worker; it ends on its own when the command service refuses its key (``stop``
    then raises ``CommandRefused``)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.worker.run())

    async def ended(self) -> None:
        if self.task is not None:
            await asyncio.wait({self.task})

    async def stop(self) -> None:
        self.worker.stop()  # it drains what it holds (workers/runtime.py)
        if self.task is not None:
            await self.task


def worker(
    settings: Settings, queues: Sequence[str], *, concurrency: int, api_key: str | None = None
) -> WorkerRole:
    """``agentboard worker``: the built-in agents; it reports with ``api_key``, else
    ``AGENTBOARD_API_KEY``, else the local stack's ``<data dir>/worker.key``."""
    from workers.agents import BUILTIN_AGENTS  # noqa: PLC0415 - an API process needs none
    from workers.runtime import Worker  # noqa: PLC0415

    key = api_key or settings.api_key or read_key_file(settings.data_dir / WORKER_KEY_FILE)
    if not key:
        raise NoWorkerKey(
            "a worker needs a key of role worker: --api-key or AGENTBOARD_API_KEY "
            "(agentboard keys create --tenant default --role worker)"
        )
    agents = dict(BUILTIN_AGENTS)
    found = nats_url(settings)
    return WorkerRole(
        Worker(found, tuple(queues or ["default"]), agents, concurrency=concurrency, api_key=key)
    )


# -- running one -------------------------------------------------------------------------


async def run_until_signalled(role: Role) -> None:
    """Start ``role``, run it until SIGINT or SIGTERM (or until it ends on its own), stop it."""
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled.set)
    async with role:
        waits = {asyncio.create_task(signalled.wait()), asyncio.create_task(role.ended())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
