"""A worker's presence: what it holds, in the ``agentboard_workers`` KV bucket (TTL 10 s).

The lease monitor reads the bucket to tell a lost worker from a busy one (docs/workers.md).
Presence is announced every few seconds and at once after a change; changes are coalesced,
one put in flight carrying every change made while the previous one travelled, so no run
waits for a round-trip (with the whole map as JSON) at its start and end. A worker that dies
before its claim is announced leaves it to the lease monitor's board scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from nats.js.kv import KeyValue

log = logging.getLogger(__name__)

PRESENCE_EVERY_SECONDS = 2.0


class Presence:
    def __init__(
        self, bucket: KeyValue, worker_id: str, describe: Callable[[], dict[str, Any]]
    ) -> None:
        self.bucket = bucket
        self.worker_id = worker_id
        self.describe = describe
        self._changed = asyncio.Event()
        self._done = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def changed(self) -> None:
        """What the worker holds changed: announce it soon, without waiting here."""
        self._changed.set()

    async def stop(self) -> None:
        """A last announcement, then the key goes. Not by cancel alone: on 3.11 a cancel that
        meets a reply inside nats-py's ``wait_for`` is lost, and the loop would go on."""
        self._done = True
        self._changed.set()
        if self._task is not None:
            _, still = await asyncio.wait({self._task}, timeout=PRESENCE_EVERY_SECONDS + 5)
            for task in still:
                task.cancel()
        with contextlib.suppress(Exception):
            await self.bucket.delete(self.worker_id)

    async def _run(self) -> None:
        while not self._done:
            self._changed.clear()
            await self._announce()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PRESENCE_EVERY_SECONDS):
                    await self._changed.wait()

    async def _announce(self) -> None:
        try:
            await self.bucket.put(self.worker_id, json.dumps(self.describe()).encode())
        except Exception as error:  # NATS may be reconnecting
            log.warning("presence update failed: %r", error)
