"""Runs one runner per view, restarts a runner that stops, and says how far each view is.

A runner that raises is logged and replaced after a backoff (0.1 s doubling to 30 s), or
at once if it had made progress (the backoff then starts over); the replacement resumes
from the view's tracking position. A bad stored event halts its view: the supervisor records
the error where ``agentboard projections status`` shows it, and keeps retrying slowly,
so recording a skip (or deploying code that knows the event) resumes the view.

It is a ``ViewProgress`` (projections/engine/progress.py): in this process, ``wait_for``
answers from what the runners report, without asking the database.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from eventsourcing.postgres import PostgresDatastore
from tenacity import wait_exponential

from domain.application import ExecutionService
from projections.engine.control import Control
from projections.engine.errors import BadEvent
from projections.engine.listener import EVENTS_CHANNEL, Listener
from projections.engine.log import LogReader
from projections.engine.progress import Positions
from projections.engine.registry import (
    ProjectionFactory,
    ProjectionOptions,
    datastore_for,
    make_projection,
    view_names,
)
from projections.engine.restarts import run_until_stopped
from projections.engine.runner import OnPage, ViewRunner
from projections.views.read_models import ReadModels

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ViewStatus:
    name: str
    state: str  # starting, running, halted, restarting, stopped
    position: int
    head: int
    lag: int  # events stored but not yet in this view
    error: str | None
    error_position: int | None
    restarts: int


@dataclass(slots=True)
class _Health:
    state: str = "starting"
    error: str | None = None
    error_position: int | None = None
    restarts: int = 0


class ProjectionSupervisor:
    def __init__(
        self,
        service: ExecutionService,
        datastore: PostgresDatastore,
        *,
        database_url: str,
        options: ProjectionOptions | None = None,
        names: list[str] | None = None,
        factory: ProjectionFactory = make_projection,
        on_page: OnPage | None = None,
        listener: Listener | None = None,
    ) -> None:
        """``listener``: the process's own, shared (else the supervisor makes and runs
        one)."""
        self.service = service
        self.datastore = datastore
        self.options = options or ProjectionOptions()
        self.names = names or view_names()
        self.factory = factory
        self.on_page = on_page
        self.control = Control(datastore)
        self._owns_listener = listener is None
        self.listener = listener or Listener(database_url)
        self.progress = Positions(self.names)
        self._health = {name: _Health() for name in self.names}
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.read_models = ReadModels.build(service, datastore, self)

    def create_tables(self) -> None:
        self.control.create_tables()
        for name in self.names:
            self.factory(name, self.datastore, "").view.create_table()

    def catch_up(self) -> dict[str, int]:
        """Bring every view up to the log's current end in this thread (no runners needed);
        returns their positions."""
        for name in self.names:
            self._on_page(name, self._runner(name, threading.Event()).catch_up())
        return self.progress.positions()

    def start(self) -> ProjectionSupervisor:
        self.create_tables()
        if self._owns_listener:
            self.listener.start()
        for name in self.names:
            thread = threading.Thread(
                target=self._supervise, args=(name,), name=f"projection-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._owns_listener:
            self.listener.stop()
        for thread in self._threads:
            thread.join(timeout)
        for name, health in self._health.items():
            health.state = "stopped"
            self.control.record_health(name, "stopped", restarts=health.restarts)
        self.datastore.close()

    # -- what callers ask ---------------------------------------------------------------

    def position(self, view: str) -> int:
        return self.progress.position(view)

    def positions(self) -> dict[str, int]:
        return self.progress.positions()

    def wait_for(self, view: str, position: int, timeout: float) -> bool:
        """Read-your-writes: block until ``view`` has applied ``position`` (a command's
        ``CommandResult.position``). False if ``timeout`` seconds pass first."""
        return self.progress.wait_for(view, position, timeout)

    def status(self) -> list[ViewStatus]:
        head = self.service.recorder.max_notification_id() or 0
        statuses = []
        positions = self.progress.positions()
        for name, health in self._health.items():
            position = positions[name]
            lag = max(head - position, 0)
            statuses.append(
                ViewStatus(
                    name=name,
                    state=health.state,
                    position=position,
                    head=head,
                    lag=lag,
                    error=health.error,
                    error_position=health.error_position,
                    restarts=health.restarts,
                )
            )
        return statuses

    def lag(self) -> dict[str, int]:
        return {status.name: status.lag for status in self.status()}

    # -- supervision ----------------------------------------------------------------------

    def _on_page(self, name: str, position: int) -> None:
        self.progress.advance(name, position)
        if self.on_page is not None:
            self.on_page(name, position)
        health = self._health[name]
        if health.state != "running":
            if health.state != "starting":
                log.info("view %s is running again at position %d", name, position)
            health.state, health.error, health.error_position = "running", None, None
            self.control.record_health(name, "running", restarts=health.restarts)

    def _runner(self, name: str, wakeup: threading.Event) -> ViewRunner:
        projection = self.factory(name, self.datastore, "")
        reader = LogReader(self.service.recorder, self.service.mapper, projection.decoded)
        return ViewRunner(
            projection, reader, self.control,
            page_size=self.options.page_size, poll_interval=self.options.poll_interval,
            wakeup=wakeup, listener=self.listener, on_page=self._on_page,
        )  # fmt: skip

    def _supervise(self, name: str) -> None:
        wakeup = threading.Event()
        unsubscribe = self.listener.subscribe(EVENTS_CHANNEL, lambda _: wakeup.set())
        backoff = wait_exponential(
            multiplier=self.options.min_backoff, max=self.options.max_backoff
        )
        try:
            run_until_stopped(
                lambda: self._run_view(name, wakeup), self._stopping, backoff,
                lambda error, pause: self._report(name, error, pause),
            )  # fmt: skip
        finally:
            unsubscribe()

    def _run_view(self, name: str, wakeup: threading.Event) -> None:
        runner = self._runner(name, wakeup)
        try:
            runner.run(self._stopping)
        except Exception as error:
            if not runner.pages:
                raise  # the next runner comes after a backoff
            self._report(name, error, 0.0)  # it made progress: the next one at once

    def _report(self, name: str, error: BaseException, pause: float) -> None:
        if isinstance(error, BadEvent):
            log.error("%s", error)
            self._failed(name, "halted", str(error), error.position)
        else:
            log.error("view %s failed; restarting in %.1fs", name, pause, exc_info=error)
            self._failed(name, "restarting", str(error), None)

    def _failed(self, name: str, state: str, error: str, position: int | None) -> None:
        health = self._health[name]
        health.state, health.error, health.error_position = state, error, position
        health.restarts += 1
        self.control.record_health(
            name, state, error=error, error_position=position, restarts=health.restarts
        )


def create_view_tables(datastore: PostgresDatastore) -> None:
    """Every view's tables (and the control tables), if missing: readers may query them
    before the process that runs the projections has started."""
    Control(datastore).create_tables()
    for name in view_names():
        make_projection(name, datastore, "").view.create_table()


def start_projections(
    service: ExecutionService,
    database_url: str,
    options: ProjectionOptions | None = None,
    listener: Listener | None = None,
) -> ProjectionSupervisor:
    """Create the views' tables if needed and keep every view up to date in threads."""
    options = options or ProjectionOptions()
    datastore = datastore_for(database_url, pool_size=options.pool_size)
    supervisor = ProjectionSupervisor(
        service, datastore, database_url=database_url, options=options, listener=listener
    )
    return supervisor.start()
