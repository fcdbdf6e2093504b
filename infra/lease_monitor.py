"""The lease monitor: notices lost workers and stalled executions.

Workers keep a key in the ``agentboard_workers`` KV bucket (TTL 10 s) that lists the
executions they hold with each one's lease and last heartbeat. Once a second the monitor
reads the bucket and

- expires the leases a vanished worker held (the execution is requeued, or fails with
  ``worker_lost`` when its attempts are spent: the aggregate's retry policy decides);
- fails with reason ``timeout`` an execution whose heartbeat is older than its
  ``heartbeat_timeout_seconds``.

A stale lease (the execution moved on meanwhile) is refused by the aggregate and ignored.
A worker missing from the bucket's listing is asked for by its key before it is presumed
lost: nats-py lists keys through a fresh ordered consumer, which on a busy machine can end
its listing before the first key arrives, and an empty listing once made every live
worker's leases expire (a blocked execution was requeued and run again, issue #21).
A blocked execution is held like any other: its worker's presence keeps its lease.
The monitor remembers what each worker held since it started; executions held by a worker
that died while no monitor was running are found every ten seconds by a scan of the board
(``held_elsewhere``): held, quiet for 20 s, and their worker gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from domain.execution import commands as c
from domain.execution.errors import DomainError
from domain.execution.state import CommandResult
from domain.execution.values import FailureReason
from infra.nats import PRESENCE_TTL_SECONDS

log = logging.getLogger(__name__)

Send = Callable[[c.Command], Awaitable[CommandResult]]
HeartbeatTimeout = Callable[[UUID], Awaitable[float | None]]
# (execution, worker, last change) of every execution the board says a worker holds
HeldExecutions = Callable[[], Awaitable[Sequence[tuple[UUID, str | None, datetime]]]]
CurrentLease = Callable[[UUID], Awaitable[int]]
CHECK_EVERY_SECONDS = 1.0
SCAN_EVERY_CHECKS = 10
# A claim is announced within milliseconds; a card quiet this long without its worker
# alive was held by a worker that died while no monitor watched.
ORPHAN_AFTER = timedelta(seconds=PRESENCE_TTL_SECONDS * 2)


class LeaseMonitor:
    def __init__(
        self,
        bucket: KeyValue,
        send: Send,
        heartbeat_timeout: HeartbeatTimeout,
        held_elsewhere: HeldExecutions | None = None,
        current_lease: CurrentLease | None = None,
    ) -> None:
        self.bucket = bucket
        self.send = send
        self.heartbeat_timeout = heartbeat_timeout
        self.held_elsewhere = held_elsewhere
        self.current_lease = current_lease
        self.checks = 0
        self.held: dict[str, dict[str, dict[str, Any]]] = {}  # worker -> execution -> entry
        self.expired = 0
        self.timed_out = 0

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.check()
            except Exception:
                log.exception("lease monitor check failed")
            try:
                await asyncio.wait_for(stopping.wait(), CHECK_EVERY_SECONDS)
            except TimeoutError:
                continue

    async def check(self) -> None:
        alive = await self._alive()
        self.checks += 1
        if self.checks % SCAN_EVERY_CHECKS == 1:
            await self._expire_orphans(alive)
        for worker_id in set(self.held) - set(alive):
            still_there = await self._present(worker_id)
            if still_there is not None:  # the listing missed it, not the bucket
                alive[worker_id] = still_there
                continue
            for execution_id, entry in self.held.pop(worker_id).items():
                # a run that ended since the worker last announced refuses this: not counted
                if await self._tell(c.ExpireLease(UUID(execution_id), int(entry["lease"]))):
                    self.expired += 1
                    log.warning("worker %s lost: expired lease of %s", worker_id, execution_id)
        now = time.time()
        for worker_id, executions in alive.items():
            self.held[worker_id] = executions
            for execution_id, entry in executions.items():
                limit = await self.heartbeat_timeout(UUID(execution_id))
                if limit is not None and now - float(entry["heartbeat_at"]) > limit:
                    timed_out = await self._tell(
                        c.Fail(
                            UUID(execution_id), int(entry["lease"]),
                            f"no heartbeat for {limit:g}s", FailureReason.TIMEOUT,
                        )
                    )  # fmt: skip
                    self.timed_out += timed_out

    async def _expire_orphans(self, alive: dict[str, dict[str, dict[str, Any]]]) -> None:
        if self.held_elsewhere is None or self.current_lease is None:
            return
        now = datetime.now(UTC)
        for execution_id, worker_id, changed_at in await self.held_elsewhere():
            if worker_id in alive or worker_id in self.held or now - changed_at < ORPHAN_AFTER:
                continue
            if worker_id is not None and await self._present(worker_id) is not None:
                continue
            lease = await self.current_lease(execution_id)
            if await self._tell(c.ExpireLease(execution_id, lease)):
                self.expired += 1
                log.warning(
                    "execution %s held by vanished worker %s: lease expired",
                    execution_id, worker_id,
                )  # fmt: skip

    async def _alive(self) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            keys = await self.bucket.keys()
        except NoKeysError:
            return {}
        alive = {}
        for key in keys:
            try:
                entry = await self.bucket.get(key)
            except KeyNotFoundError:  # expired between keys() and get()
                continue
            if entry.value:
                alive[key] = json.loads(entry.value).get("executions", {})
        return alive

    async def _present(self, worker_id: str) -> dict[str, dict[str, Any]] | None:
        """The executions a worker holds, read by its own key (no listing involved); None
        when its key is gone."""
        try:
            entry = await self.bucket.get(worker_id)
        except KeyNotFoundError:  # expired, or deleted as the worker stopped
            return None
        if not entry.value:
            return None
        executions: dict[str, dict[str, Any]] = json.loads(entry.value).get("executions", {})
        return executions

    async def _tell(self, command: c.Command) -> bool:
        """Whether ``command`` changed anything."""
        try:
            result = await self.send(command)
        except DomainError as refusal:  # the execution moved on: nothing to do
            log.debug("lease monitor: %s", refusal)
            return False
        return result.recorded > 0
