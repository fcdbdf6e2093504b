"""The asynchronous services an API process runs beside HTTP: the NATS topology, the
command service for worker reports, the relay and the lease monitor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from uuid import UUID

from nats.aio.client import Client
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    wait_exponential,
)

from domain.application import ExecutionService
from infra.audit_anchor import AnchorPublisher
from infra.bootstrap import Container
from infra.command_service import CommandService
from infra.lease_monitor import CurrentLease, HeartbeatTimeout, HeldExecutions, LeaseMonitor
from infra.nats import WORK_STREAM, connect, ensure_topology, workers_bucket
from infra.processes import die_with_parent
from infra.relay import Relay
from infra.worker_auth import ReportAuth

log = logging.getLogger(__name__)

RESTART_AFTER_SECONDS = (1.0, 30.0)  # a child process that exits: first pause, longest
STEADY_SECONDS = 60.0  # up this long, a child that exits is restarted at once
EXIT_CONFIGURATION = 2  # `agentboard` refusing its input or configuration (api/cli/client.py)


class ExitedUnasked(Exception):
    """A child process of `agentboard up` exited without being asked."""

    def __init__(self, code: int) -> None:
        super().__init__(f"code {code}")
        self.code = code


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
            relay = self.relay = Relay(container.service, self.nc, container.database_url)
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


async def run_relay(
    service: ExecutionService, nats_url: str, database_url: str, stopping: asyncio.Event
) -> None:
    """The relay alone (``agentboard relay``): one of them is active per database."""
    nc = await connect(nats_url, "agentboard relay")
    try:
        await ensure_topology(nc.jetstream())
        relay = Relay(service, nc, database_url)
        await supervised("relay", lambda: relay.run(stopping), stopping)
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()


class LocalProcess:
    """An ``agentboard`` subcommand in a process beside the API, stopped by the API when it
    stops, and dying with it if the API is killed. One that exits unasked (a crash, a kill,
    the OOM killer) is started again, after a pause that doubles while it keeps exiting
    (at once after a steady run); except on exit code 2, its own refusal of its
    configuration, which a restart would only repeat."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.command = [str(Path(sys.executable).parent / "agentboard"), *args]
        self.name = " ".join(args[:2])
        self.env = {**os.environ, **env}
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False
        self._started_at = 0.0
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._spawn()
        self._watcher = asyncio.create_task(self._restart_when_it_exits())

    async def _spawn(self) -> asyncio.subprocess.Process:
        # its own session: Ctrl-C reaches `up`, which stops it in its turn
        self.process = await asyncio.create_subprocess_exec(
            *self.command, env=self.env, start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )  # fmt: skip
        self._started_at = time.monotonic()
        return self.process

    async def _restart_when_it_exits(self) -> None:
        def exited(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning("%s exited (%s); starting it again in %.0fs",
                        self.name, error, state.upcoming_sleep)  # fmt: skip

        restarts = AsyncRetrying(
            retry=retry_if_exception_type(ExitedUnasked),
            wait=wait_exponential(
                multiplier=RESTART_AFTER_SECONDS[0], max=RESTART_AFTER_SECONDS[1]
            ),
            before_sleep=exited,
        )
        while await restarts(self._until_it_exits):
            continue  # it had run steadily: again at once, and the pauses start over

    async def _until_it_exits(self) -> bool:
        """Start it unless it runs, and wait for it to exit: True if it ran steadily (start it
        again), False if asked to stop or refusing its configuration (leave it), else raise
        ``ExitedUnasked`` (start it again after a pause)."""
        if self._stopping:
            return False
        process = self.process
        if process is None or process.returncode is not None:
            process = await self._spawn()
            self.restarts += 1
        code = await process.wait()
        if self._stopping:
            return False
        if code == EXIT_CONFIGURATION:
            log.error("%s exited refusing its configuration; not restarting it", self.name)
            return False
        if time.monotonic() - self._started_at > STEADY_SECONDS:
            log.warning(
                "%s exited (code %s) after a steady run; starting it again", self.name, code
            )
            return True
        raise ExitedUnasked(code)

    async def stop(self, timeout: float = 60) -> None:
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class LocalWorker(LocalProcess):
    """A worker process beside the API (``agentboard up`` runs one on ``default``). It is
    stopped before the services it reports to, so it can finish what it holds."""

    def __init__(
        self, nats_url: str, api_key: str, queue: str = "default", concurrency: int = 4
    ) -> None:
        args = ["worker", "--queue", queue, "--concurrency", str(concurrency)]
        super().__init__(args, {"AGENTBOARD_NATS_URL": nats_url, "AGENTBOARD_API_KEY": api_key})


class LocalRelay(LocalProcess):
    """The relay in its own process (``agentboard relay``): publishing every stored event
    does not compete with the API's requests for one event loop."""

    def __init__(self, database_url: str, nats_url: str) -> None:
        env = {"AGENTBOARD_DATABASE_URL": database_url, "AGENTBOARD_NATS_URL": nats_url}
        super().__init__(["relay"], env)


class LocalProjections(LocalProcess):
    """The projections in their own process (``agentboard projections run``): their work
    does not compete with the API's requests for one interpreter."""

    def __init__(self, database_url: str) -> None:
        super().__init__(["projections", "run"], {"AGENTBOARD_DATABASE_URL": database_url})
