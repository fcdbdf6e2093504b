"""Group commit: one writer thread takes every command waiting at that moment and
commits them in one transaction, then answers each caller.

Batches form by themselves: while one transaction is being written, the next
callers queue up, so a lone command waits for nobody and a crowd shares one commit.
Async callers await a future and never block their event loop; their answers go
back to each event loop in one wake-up per batch, not one per command.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from domain.application import ExecutionService
from domain.execution.commands import Command
from domain.execution.state import CommandResult

log = logging.getLogger(__name__)

_STOP = object()


@dataclass(frozen=True, slots=True)
class _AsyncReply:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[CommandResult]


Reply = Future[CommandResult] | _AsyncReply


class WriterStopped(RuntimeError):
    """The writer no longer takes commands (the process is shutting down)."""


class GroupCommitWriter:
    def __init__(self, service: ExecutionService, *, max_batch: int = 1000) -> None:
        self.service = service
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[Command, Reply] | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="group-commit-writer", daemon=True)
        self._stopped = False
        self.batches = 0
        self.commands = 0

    def start(self) -> GroupCommitWriter:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finish every command already queued, then stop."""
        if self._stopped:
            return
        self._stopped = True
        self._queue.put(_STOP)
        self._thread.join()

    def submit(self, command: Command) -> Future[CommandResult]:
        if self._stopped:
            raise WriterStopped("the command writer has stopped")
        future: Future[CommandResult] = Future()
        self._queue.put((command, future))
        return future

    def execute(self, command: Command) -> CommandResult:
        """``send`` for a caller on a thread of its own: it waits for the batch's commit."""
        return self.submit(command).result()

    async def send(self, command: Command) -> CommandResult:
        if self._stopped:
            raise WriterStopped("the command writer has stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CommandResult] = loop.create_future()
        self._queue.put((command, _AsyncReply(loop, future)))
        return await future

    async def send_all(self, commands: Sequence[Command]) -> list[CommandResult | BaseException]:
        """Several commands, queued at once in their order, so they are applied in that order
        and usually share one commit; each outcome in its place (a refusal as its error)."""
        if self._stopped:
            raise WriterStopped("the command writer has stopped")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[CommandResult]] = []
        for command in commands:
            futures.append(loop.create_future())
            self._queue.put((command, _AsyncReply(loop, futures[-1])))
        return await asyncio.gather(*futures, return_exceptions=True)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[tuple[Command, Reply]] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)  # type: ignore[arg-type]
                if len(batch) >= self.max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[tuple[Command, Reply]]) -> None:
        self.batches += 1
        self.commands += len(batch)
        outcomes: list[CommandResult | BaseException]
        try:
            outcomes = list(self.service.process([command for command, _ in batch]))
        except Exception as error:
            log.exception("group commit of %d commands failed", len(batch))
            outcomes = [error] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[CommandResult], object]]]
        by_loop = defaultdict(list)
        for (_, reply), outcome in zip(batch, outcomes, strict=True):
            if isinstance(reply, _AsyncReply):
                by_loop[reply.loop].append((reply.future, outcome))
            elif isinstance(outcome, BaseException):
                reply.set_exception(outcome)
            else:
                reply.set_result(outcome)
        for loop, answers in by_loop.items():
            try:
                loop.call_soon_threadsafe(_answer, answers)
            except RuntimeError:  # that event loop has closed; nobody is waiting any more
                continue


def _answer(answers: list[tuple[asyncio.Future[CommandResult], object]]) -> None:
    for future, outcome in answers:
        if future.done():  # the caller gave up (cancelled)
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)  # type: ignore[arg-type]
