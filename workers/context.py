"""The context an agent runs in: each thing it does becomes a worker report.

Output is streamed live to ``AGENTBOARD_LOGS`` as it comes and stored coalesced:
chunks are gathered and recorded as one OutputAppended per half second (or 16 KiB).

A run sends one request at a time, in order. A tool call's start is written ahead (on
record before the tool acts); its result is deferred and travels with the run's next
report (``agentboard.cmd.batch``): two request/replies per tool call became one.

A person may block the execution at any moment. What the run already does goes on and is
recorded (output, the result of the running tool, its completion or failure); nothing
new starts: a tool call or a question is refused (``ExecutionBlocked``) and the run waits,
its slot given back and its heartbeat kept, until a person unblocks it, then goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from nats.aio.client import Client
from nats.js.object_store import ObjectStore

from domain.execution import commands as c
from domain.execution.answers import check_answer_schema
from domain.execution.errors import InvalidCommand
from domain.execution.values import FailureReason, InputKind, ToolOutcome
from infra.nats import log_subject
from workers.agent import AgentFailed, ExecutionInfo
from workers.client import CommandClient, CommandRefused

DEFER_SECONDS = 0.02  # a tool call's result waits this long for a report to travel with
FLUSH_EVERY_SECONDS = 0.5
FLUSH_AT_CHARS = 16 * 1024
POLL_WHILE_WAITING_SECONDS = 2.0
CHECK_STATE_EVERY_TICKS = 10  # every 5 s
log = logging.getLogger(__name__)

TERMINAL_OR_PENDING = ("completed", "failed", "cancelled", "pending")
BLOCKED_REFUSAL = "ExecutionBlocked"


class StopSignal(asyncio.Event):
    """An event that also calls back at once when set: a run's cancel and loss stop its
    agent's task through ``then`` (no watcher task per run, as with ``wait()``)."""

    def __init__(self) -> None:
        super().__init__()
        self._then: list[Callable[[], object]] = []

    def then(self, callback: Callable[[], object]) -> None:
        if self.is_set():
            callback()
        else:
            self._then.append(callback)

    def set(self) -> None:
        if not self.is_set():
            super().set()
            callbacks, self._then = self._then, []
            for callback in callbacks:
                callback()


class Slot(Protocol):
    """A worker's concurrency slot, which a run gives back while it waits for a person and
    takes back, without waiting, once the person lets it go on."""

    def give_back(self) -> None: ...

    def take_back(self) -> None: ...


class RunToolCall:
    def __init__(self, context: RunContext) -> None:
        self._context = context
        self.summary = ""

    async def output(self, text: str) -> None:
        await self._context.emit(text)  # a stream: its chunks carry their own line breaks


class RunContext:
    def __init__(
        self,
        info: ExecutionInfo,
        tenant: str,
        lease: int,
        nc: Client,
        client: CommandClient,
        artifacts: ObjectStore,
        slot: Slot | None = None,
        worker_id: str = "",
        prices: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        self.slot = slot
        self.prices = prices or {}
        self._info = info
        self.tenant = tenant
        self.lease = lease
        self.nc = nc
        self.client = client
        self.artifacts = artifacts
        self.worker_id = worker_id
        self._cancelled = StopSignal()
        self.lost = StopSignal()  # the execution is no longer this run's: stop quietly
        self._answers: asyncio.Queue[Any] = asyncio.Queue()
        self._unblocked = asyncio.Event()  # a hint from the relay; the state decides
        self._tool_calls = 0
        self._buffer: list[str] = []
        self._buffered_chars = 0
        self._sequence = 0
        self._flush_lock = asyncio.Lock()
        self._deferred: list[c.Command] = []
        self._sending = asyncio.Lock()  # one request of this run at a time, in order
        self._deferred_sender: asyncio.Task[None] | None = None
        self.last_heartbeat = time.time()

    @property
    def execution(self) -> ExecutionInfo:
        return self._info

    @property
    def cancelled(self) -> StopSignal:
        return self._cancelled

    # -- control, from the relay (agentboard.control.<id>) or from polling ------------

    def on_control(self, message: dict[str, Any]) -> None:
        kind, data = message.get("type"), message.get("data", {})
        if kind == "CancelRequested":
            self._cancelled.set()
        elif kind == "InputProvided":
            self._answers.put_nowait(data.get("answer"))
        elif kind == "Unblocked":
            self._unblocked.set()
        elif kind in ("Failed", "Completed", "Cancelled", "LeaseExpired"):
            actor = message.get("actor") or {}
            if not (actor.get("kind") == "worker" and actor.get("id") == self.worker_id):
                self.lost.set()  # ended or taken elsewhere (a timeout, an operator, a monitor)

    def check_state(self, state: dict[str, Any]) -> None:
        if state.get("lease") != self.lease or state.get("status") in TERMINAL_OR_PENDING:
            self.lost.set()
        elif state.get("cancel_requested"):
            self._cancelled.set()

    # -- the agent's verbs ----------------------------------------------------------------

    @asynccontextmanager
    async def tool(self, name: str, arguments: dict[str, Any]) -> AsyncIterator[RunToolCall]:
        self._tool_calls += 1
        call_id = f"l{self.lease}-c{self._tool_calls}"
        # written ahead: the call is on record before the tool acts, even if the worker dies
        await self.report(c.RecordToolCall(self._info.id, self.lease, call_id, name, arguments))
        call = RunToolCall(self)
        started = time.monotonic()
        outcome = ToolOutcome.SUCCESS
        try:
            yield call
        except BaseException as error:
            outcome = ToolOutcome.FAILED
            if not call.summary:
                call.summary = str(error) or type(error).__name__
            raise
        finally:
            await self.flush()
            self.defer(
                c.FinishToolCall(
                    self._info.id, self.lease, call_id, outcome,
                    call.summary[:1000], time.monotonic() - started,
                )
            )  # fmt: skip

    async def say(self, text: str) -> None:
        """One message of the agent's: messages are kept apart by a line break."""
        if text and not text.endswith("\n"):
            text += "\n"
        await self.emit(text)

    async def emit(self, text: str) -> None:
        """Output as it comes (live at once, stored coalesced), exactly as given."""
        if not text:
            return
        self.last_heartbeat = time.time()
        live = json.dumps({"execution_id": str(self._info.id), "text": text}).encode()
        await self.nc.publish(log_subject(self.tenant, str(self._info.id)), live)
        self._buffer.append(text)
        self._buffered_chars += len(text)
        if self._buffered_chars >= FLUSH_AT_CHARS:
            await self.flush()

    async def ask(
        self,
        question: str,
        *,
        kind: str = InputKind.CLARIFICATION,
        schema: dict[str, Any] | None = None,
    ) -> Any:
        try:
            check_answer_schema(schema)
        except InvalidCommand as error:  # refused by the command side too: fail it here
            raise AgentFailed(str(error), FailureReason.AGENT_ERROR) from None
        await self.flush()
        asked = c.RequestInput(self._info.id, self.lease, question, InputKind(kind), schema)
        await self.report(asked)
        async with self._slot_given_back():  # nobody runs while a person thinks
            return await self._wait_for_answer()

    @asynccontextmanager
    async def _slot_given_back(self) -> AsyncIterator[None]:
        if self.slot is not None:
            self.slot.give_back()
        try:
            yield
        finally:
            if self.slot is not None:
                self.slot.take_back()

    async def _wait_for_answer(self) -> Any:
        while True:
            try:
                return await asyncio.wait_for(self._answers.get(), POLL_WHILE_WAITING_SECONDS)
            except TimeoutError:
                self.last_heartbeat = time.time()  # waiting for a person is not stalling
                state = await self.client.state(self._info.id)  # a control message may be lost
                if state.get("cancel_requested"):
                    self._cancelled.set()
                    raise asyncio.CancelledError from None
                if state.get("status") == "running" and state.get("lease") == self.lease:
                    return state.get("answer")

    async def usage(
        self, model: str, input_tokens: int, output_tokens: int, cost_usd: float | None = None
    ) -> None:
        """Recorded with the run's next report; a value the domain refuses raises
        ``ValueError`` here, before anything is sent. Without a cost, the worker's price
        table (``AGENTBOARD_PRICES``) gives one for a model it names."""
        if cost_usd is None:
            cost_usd = cost_of(self.prices, model, input_tokens, output_tokens)
        try:
            command = c.RecordUsage(self._info.id, self.lease, model, input_tokens,
                                    output_tokens, uuid.uuid4().hex, cost_usd)  # fmt: skip
        except InvalidCommand as error:
            raise ValueError(str(error)) from None
        self.defer(command)

    async def artifact(self, name: str, data: bytes, media_type: str = "text/plain") -> None:
        key = f"{self._info.id}/{name}"
        await self.artifacts.put(key, data)
        await self.report(
            c.AddArtifact(
                self._info.id, self.lease, name, media_type, len(data),
                hashlib.sha256(data).hexdigest(), key,
            )
        )  # fmt: skip

    # -- plumbing ------------------------------------------------------------------------

    async def report(self, command: c.Command) -> dict[str, Any]:
        """Send ``command`` after every report deferred before it, in one request, and wait
        for it to be stored; a refusal of any of them raises ``CommandRefused``."""
        self.last_heartbeat = time.time()
        while True:
            async with self._sending:
                commands, self._deferred = [*self._deferred, command], []
                try:
                    return await self.client.send_all(commands)
                except CommandRefused as refusal:
                    if refusal.error != BLOCKED_REFUSAL:
                        raise
                    # only a new tool call or question is refused so, and neither is ever
                    # deferred: the reports sent before it were recorded
            await self.wait_while_blocked()

    async def wait_while_blocked(self) -> None:
        """Pause the run until a person unblocks the execution (or it is cancelled or
        ended elsewhere: then this run's task is cancelled by its stop signals)."""
        log.info("execution %s is blocked: its run waits", self._info.id)
        async with self._slot_given_back():
            while True:
                self.last_heartbeat = time.time()  # blocked on purpose, not stalled
                self._unblocked.clear()
                state = await self.client.state(self._info.id)
                self.check_state(state)
                if state.get("status") != "blocked":
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._unblocked.wait(), POLL_WHILE_WAITING_SECONDS)

    def defer(self, command: c.Command) -> None:
        """Report ``command`` without waiting for it: with the run's next report, or on its
        own within ``DEFER_SECONDS``. The agent goes on at once, and a tool call's result
        travels and commits with what follows it (the next call, the completion). A worker
        that dies in that window leaves the call on record without its result."""
        self.last_heartbeat = time.time()
        self._deferred.append(command)
        if self._deferred_sender is None or self._deferred_sender.done():
            self._deferred_sender = asyncio.create_task(self._send_deferred_soon())

    async def _send_deferred_soon(self) -> None:
        await asyncio.sleep(DEFER_SECONDS)
        async with self._sending:
            commands, self._deferred = self._deferred, []
            if not commands:
                return
            try:
                await self.client.send_all(commands)
            except (CommandRefused, ConnectionError) as error:
                log.warning("execution %s: %s; stopping this run", self._info.id, error)
                self.lost.set()  # nobody awaits these reports: stop the run here

    def close(self) -> None:
        """The run is over: a deferred report left unsent belongs to a run that was stopped."""
        if self._deferred_sender is not None:
            self._deferred_sender.cancel()

    async def flush(self) -> None:
        async with self._flush_lock:
            if not self._buffer:
                return
            text, self._buffer, self._buffered_chars = "".join(self._buffer), [], 0
            self._sequence += 1
            await self.report(c.AppendOutput(self._info.id, self.lease, text, self._sequence))

    async def flush_periodically(self) -> None:
        """Store coalesced output; now and then, ask whether a cancel was requested (a control
        message can be lost while NATS reconnects)."""
        ticks = 0
        while True:
            await asyncio.sleep(FLUSH_EVERY_SECONDS)
            await self.flush()
            ticks += 1
            if ticks % CHECK_STATE_EVERY_TICKS == 0:
                self.check_state(await self.client.state(self._info.id))


def cost_of(
    prices: dict[str, tuple[float, float]], model: str, input_tokens: int, output_tokens: int
) -> float | None:
    """What the tokens cost by ``prices`` (US dollars per million input and output tokens),
    or ``None`` for a model it does not name (or counts that are not numbers)."""
    price = prices.get(model)
    if price is None or not isinstance(input_tokens, int) or not isinstance(output_tokens, int):
        return None
    return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000
