"""Worker reports arrive here over NATS request/reply: a ``nats.micro`` service on
``agentboard.cmd.<command>`` in a queue group, so every API process can answer, and each
report reaches exactly one. Each report goes through the group-commit writer like any
other command; the reply says what it produced, or names the refusal."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from uuid import UUID

from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from domain.application import ExecutionService
from domain.execution.errors import DomainError
from domain.execution.wire import (
    BATCH,
    WORKER_COMMANDS,
    decode_batch,
    decode_command,
    encode_error,
    encode_result,
    error_reply,
    result_reply,
)
from infra.worker_auth import ReportAuth, ReportRefused, check_serves, scoped
from infra.writer import GroupCommitWriter

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "agentboard.cmd"
QUEUE_GROUP = "agentboard-commands"


class CommandService:
    def __init__(
        self, nc: Client, service: ExecutionService, writer: GroupCommitWriter, auth: ReportAuth
    ) -> None:
        self.nc = nc
        self.service = service
        self.writer = writer
        self.auth = auth
        self._micro: Service | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._micro = await add_service(
            self.nc,
            name="agentboard-commands",
            version="1.0.0",
            description="worker reports to the agentboard command side",
        )
        group = self._micro.add_group(name=SUBJECT_PREFIX, queue_group=QUEUE_GROUP)
        for name in WORKER_COMMANDS:
            await group.add_endpoint(name=name, handler=self._handler(name))
        await group.add_endpoint(name=BATCH, handler=self._in_a_task(self._batch))
        await group.add_endpoint(name="state", handler=self._in_a_task(self._state))
        await group.add_endpoint(name="whoami", handler=self._in_a_task(self._whoami))

    async def stop(self) -> None:
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._micro is not None:
            await self._micro.stop()
            self._micro = None

    def _in_a_task(
        self, handle: Callable[[Request], Coroutine[Any, Any, None]]
    ) -> Callable[[Request], Awaitable[None]]:
        # nats-py awaits a subscription's callback before it hands over the next message;
        # answering in a task of its own lets concurrent reports share one group commit.
        async def dispatch(request: Request) -> None:
            task = asyncio.create_task(handle(request))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

        return dispatch

    async def _batch(self, request: Request) -> None:
        """Several reports of one run, applied in their order: they are handed to the writer
        together, so they share a group commit; each gets its own reply."""
        try:
            principal = await self.auth.principal(request.headers)
            commands = [scoped(principal, command) for command in decode_batch(request.data)]
        except (DomainError, ReportRefused) as refusal:
            await request.respond(encode_error(refusal))
            return
        outcomes = await self.writer.send_all(commands)
        replies = []
        for command, outcome in zip(commands, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, DomainError):
                    log.error("worker command %s failed", type(command).__name__,
                              exc_info=outcome)  # fmt: skip
                replies.append(error_reply(outcome))
            else:
                replies.append(result_reply(outcome))
        await request.respond(json.dumps({"ok": True, "replies": replies}).encode())

    def _handler(self, name: str) -> Callable[[Request], Awaitable[None]]:
        async def handle(request: Request) -> None:
            try:
                principal = await self.auth.principal(request.headers)
                command = scoped(principal, decode_command(name, request.data))
                result = await self.writer.send(command)
            except (DomainError, ReportRefused) as refusal:
                await request.respond(encode_error(refusal))
                return
            except Exception as error:
                log.exception("worker command %s failed", name)
                await request.respond(encode_error(error))
                return
            await request.respond(encode_result(result, card=name == "pick_up"))

        return self._in_a_task(handle)

    async def _state(self, request: Request) -> None:
        try:
            principal = await self.auth.principal(request.headers)
            execution_id = UUID(request.data.decode())
            state = await asyncio.to_thread(self.service.state, execution_id)
            check_serves(principal, execution_id, state.tenant, state.worker_queue)
        except (ValueError, DomainError, ReportRefused) as error:
            await request.respond(encode_error(error))
            return
        await request.respond(
            json.dumps(
                {
                    "ok": True,
                    "status": state.status,
                    "lease": state.lease,
                    "cancel_requested": state.cancel_requested,
                    "attempt": state.attempt,
                    "answer": state.answer,
                }
            ).encode()
        )

    async def _whoami(self, request: Request) -> None:
        """The key's tenant, role and queues: a worker asks once as it starts."""
        try:
            principal = await self.auth.principal(request.headers)
        except ReportRefused as refusal:
            await request.respond(encode_error(refusal))
            return
        every = principal.of_deployment
        await request.respond(
            json.dumps(
                {"ok": True, "tenant": principal.tenant, "role": principal.role.value,
                 "every_tenant": every, "queues": principal.queues}
            ).encode()
        )  # fmt: skip
