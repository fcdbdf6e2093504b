"""Process supervision: the role processes ``agentboard up`` runs beside its API.

Each is an ``agentboard <role>`` subcommand in a process of its own (``relay``,
``projections run``, ``worker``), started with the parent's environment plus the URLs and
key it needs, dying with the parent, and started again when it exits unasked.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path

from infra.processes import die_with_parent
from infra.settings import child_environment

log = logging.getLogger(__name__)

RESTART_AFTER_SECONDS = (1.0, 30.0)  # a child process that exits: first pause, longest
STEADY_SECONDS = 60.0  # up this long, a child that exits is restarted after the first pause
EXIT_CONFIGURATION = 2  # `agentboard` refusing its input or configuration (api/cli/client.py)


class LocalProcess:
    """An ``agentboard`` subcommand in a process beside the API, stopped by the API when it
    stops, and dying with it if the API is killed. One that exits unasked (a crash, a kill,
    the OOM killer) is started again, after a pause that doubles while it keeps exiting;
    except on exit code 2, its own refusal of its configuration, which a restart would
    only repeat."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.command = [str(Path(sys.executable).parent / "agentboard"), *args]
        self.name = " ".join(args[:2])
        self.env = child_environment(env)
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False
        self._started_at = 0.0
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._spawn()
        self._watcher = asyncio.create_task(self._restart_when_it_exits())

    async def _spawn(self) -> None:
        # its own session: Ctrl-C reaches `up`, which stops it in its turn
        self.process = await asyncio.create_subprocess_exec(
            *self.command, env=self.env, start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )  # fmt: skip
        self._started_at = time.monotonic()

    async def _restart_when_it_exits(self) -> None:
        delay = RESTART_AFTER_SECONDS[0]
        while self.process is not None:
            code = await self.process.wait()
            if self._stopping:
                return
            if code == EXIT_CONFIGURATION:
                log.error("%s exited refusing its configuration; not restarting it", self.name)
                return
            if time.monotonic() - self._started_at > STEADY_SECONDS:
                delay = RESTART_AFTER_SECONDS[0]  # it had been running well
            log.warning("%s exited (code %s); starting it again in %.0fs", self.name, code, delay)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            await self._spawn()
            self.restarts += 1
            delay = min(delay * 2, RESTART_AFTER_SECONDS[1])

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
