"""How a worker reports: NATS request/reply to the command service (``agentboard.cmd.*``).

Transport failures (no responder yet, a timeout, a reconnect) are retried with backoff:
every worker report is idempotent (tool calls by call id, output by sequence, pick-ups
by claim token), so a retry never records twice. A refusal is raised as CommandRefused.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from uuid import UUID

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from domain.execution.commands import Command
from domain.execution.wire import BATCH, encode_batch, encode_command

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0


class CommandRefused(Exception):
    """The command side refused a report (``error`` names the domain error)."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.error = error
        self.detail = detail

    @property
    def lease_lost(self) -> bool:
        return self.error in ("LeaseLost", "InvalidTransition", "ExecutionNotFound")

    @property
    def key_refused(self) -> bool:
        """The worker's key, not the report, was refused (infra/worker_auth.py)."""
        return self.error in ("Unauthenticated", "Forbidden", "QueueNotAllowed")


class CommandClient:
    def __init__(self, nc: Client, api_key: str | None, *, retries: int = 30) -> None:
        self.nc = nc
        self.retries = retries
        # the command service checks it on every report (infra/worker_auth.py)
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else None

    async def send(self, command: Command) -> dict[str, Any]:
        name, payload = encode_command(command)
        reply = await self._request(f"agentboard.cmd.{name}", payload)
        if not reply.get("ok"):
            raise CommandRefused(str(reply.get("error")), str(reply.get("detail")))
        return reply

    async def send_all(self, commands: list[Command]) -> dict[str, Any]:
        """Several reports of one run in one request, applied in order; the reply to the
        last. A refusal of any of them raises (the first one)."""
        if len(commands) == 1:
            return await self.send(commands[0])
        reply = await self._request(f"agentboard.cmd.{BATCH}", encode_batch(commands))
        if not reply.get("ok"):
            raise CommandRefused(str(reply.get("error")), str(reply.get("detail")))
        replies: list[dict[str, Any]] = reply["replies"]
        for each in replies:
            if not each.get("ok"):
                raise CommandRefused(str(each.get("error")), str(each.get("detail")))
        return replies[-1]

    async def state(self, execution_id: UUID) -> dict[str, Any]:
        reply = await self._request("agentboard.cmd.state", str(execution_id).encode())
        if not reply.get("ok"):
            raise CommandRefused(str(reply.get("error")), str(reply.get("detail")))
        return reply

    async def whoami(self) -> dict[str, Any]:
        """The tenant and role of this worker's key, as the command service sees them."""
        reply = await self._request("agentboard.cmd.whoami", b"")
        if not reply.get("ok"):
            raise CommandRefused(str(reply.get("error")), str(reply.get("detail")))
        return reply

    async def _request(self, subject: str, payload: bytes) -> dict[str, Any]:
        def retrying(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning("%s: %r (attempt %d), retrying", subject, error, state.attempt_number)

        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type((TimeoutError, NoRespondersError, NatsTimeout)),
                stop=stop_after_attempt(self.retries),
                wait=wait_exponential(multiplier=0.05, max=2.0),  # 50 ms doubling to 2 s
                before_sleep=retrying,
            ):
                with attempt:
                    message = await self.nc.request(
                        subject, payload, timeout=REQUEST_TIMEOUT, headers=self.headers
                    )
        except RetryError:
            raise ConnectionError(f"no answer from the command service on {subject}") from None
        reply: dict[str, Any] = json.loads(message.data)
        return reply
