"""The asynchronous services an API process runs beside HTTP: the NATS topology, the
command service for worker reports, the lease monitor, the audit anchors and (unless the
relay runs as a process of its own) the relay; and ``supervised``, which restarts a loop
that failed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import lru_cache
from uuid import UUID

from nats.aio.client import Client
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

from infra.audit_anchor import AnchorPublisher
from infra.bootstrap import Container
from infra.command_service import CommandService
from infra.lease_monitor import CurrentLease, HeartbeatTimeout, HeldExecutions, LeaseMonitor
from infra.nats import WORK_STREAM, connect, ensure_topology, workers_bucket
from infra.relay import Relay
from infra.worker_auth import ReportAuth

log = logging.getLogger(__name__)


class BackgroundServices:
    """With ``relay`` the relay runs here too; ``agentboard up`` runs it in a process of its
    own instead (``agentboard relay``), off the API's event loop."""

    def __init__(self, container: Container, *, relay: bool = True) -> None:
        self.container = container
        self.with_relay = relay
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.nc: Client | None = None
        self.relay: Relay | None = None
        self.monitor: LeaseMonitor | None = None
        self.commands: CommandService | None = None
        self.anchors: AnchorPublisher | None = None

    async def start(self) -> None:
        container = self.container
        self.nc = await connect(container.nats_url, "agentboard api")
        js = self.nc.jetstream()
        await ensure_topology(js)
        auth = ReportAuth(container.keys)
        self.commands = CommandService(self.nc, container.service, container.writer, auth)
        await self.commands.start()
        self.monitor = LeaseMonitor(
            await workers_bucket(js), container.writer.send, self._heartbeat_timeout(),
            *self._board_scan(),
        )  # fmt: skip
        monitor = self.monitor
        self.tasks = [
            asyncio.create_task(
                supervised("lease monitor", lambda: monitor.run(self.stopping), self.stopping)
            ),
        ]
        if self.with_relay:
            relay = self.relay = Relay(
                container.service, self.nc, container.database_url, listener=container.listener
            )
            self.tasks.append(
                asyncio.create_task(
                    supervised("relay", lambda: relay.run(self.stopping), self.stopping)
                )
            )
        self.anchors = AnchorPublisher(js, container.database_url)
        anchors = self.anchors
        self.tasks.append(
            asyncio.create_task(
                supervised("audit anchor", lambda: anchors.run(self.stopping), self.stopping)
            )
        )

    async def work_queues(self) -> set[str]:
        """The queues work has been published to (the default one at least): from the work
        stream's consumers, which the relay makes for each new queue, wherever it runs."""
        queues = {"default"}
        if self.nc is None:
            return queues
        with contextlib.suppress(Exception):  # NATS may be reconnecting: report what we know
            for info in await self.nc.jetstream().consumers_info(WORK_STREAM):
                name = info.name or ""
                if name.startswith("work-") and name.count("-") >= 2:
                    queues.add(name.removeprefix("work-").rsplit("-", 1)[0])
        return queues

    async def stop(self) -> None:
        self.stopping.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.commands is not None:
            await self.commands.stop()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    def _board_scan(self) -> tuple[HeldExecutions | None, CurrentLease | None]:
        board, service = self.container.read_models.board, self.container.service

        async def held() -> Sequence[tuple[UUID, str | None, datetime]]:
            return await asyncio.to_thread(board.held)

        async def lease(execution_id: UUID) -> int:
            return (await asyncio.to_thread(service.state, execution_id)).lease

        return held, lease

    def _heartbeat_timeout(self) -> HeartbeatTimeout:
        service = self.container.service

        @lru_cache(maxsize=10_000)
        def lookup(execution_id: UUID) -> float | None:
            return service.state(execution_id).heartbeat_timeout_seconds

        async def heartbeat_timeout(execution_id: UUID) -> float | None:
            return await asyncio.to_thread(lookup, execution_id)

        return heartbeat_timeout


async def supervised(
    name: str, run: Callable[[], Awaitable[None]], stopping: asyncio.Event
) -> None:
    """Run until stopped; after a failure (a NATS outage outlasting a publish timeout, a
    lost database connection) log it and start again from its tracked position, after a
    pause: 0.5 s doubling to 10 s while it keeps failing, over again after a clean return."""

    def failure(error: BaseException) -> bool:
        if isinstance(error, asyncio.CancelledError):
            task = asyncio.current_task()
            # this task being stopped, or else a future inside it cancelled (a timeout's): a
            # failure like any other, not a reason to stop relaying for good
            return not (stopping.is_set() or (task is not None and task.cancelling()))
        return isinstance(error, Exception)

    def restarting(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.error("%s failed; restarting in %.1fs", name, state.upcoming_sleep, exc_info=error)

    async def attempt() -> None:
        if not stopping.is_set():  # stopped during the pause: do not start again
            await run()

    restarts = AsyncRetrying(
        retry=retry_if_exception(failure),
        wait=wait_exponential(multiplier=0.5, max=10.0),
        stop=lambda _: stopping.is_set(),
        sleep=lambda seconds: _pause_unless(stopping, seconds),
        before_sleep=restarting,
        retry_error_callback=lambda _: None,  # it failed as it was being stopped
    )
    while not stopping.is_set():
        await restarts(attempt)


async def _pause_unless(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
