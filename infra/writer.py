"""Group commit: one writer thread takes every command waiting at that moment and
commits them in one transaction, then answers each caller.

Batches form by themselves: while one transaction is being written, the next
callers queue up, so a lone command waits for nobody and a crowd shares one commit.
Async callers await a future and never block their event loop.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future

from domain.application import ExecutionService
from domain.commands import Command
from domain.state import CommandResult

log = logging.getLogger(__name__)

_STOP = object()


class WriterStopped(RuntimeError):
    """The writer no longer takes commands (the process is shutting down)."""


class GroupCommitWriter:
    def __init__(self, service: ExecutionService, *, max_batch: int = 1000) -> None:
        self.service = service
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[Command, Future[CommandResult]] | object] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="group-commit-writer", daemon=True)
        self._stopped = False
        self.batches = 0
        self.commands = 0

    def start(self) -> GroupCommitWriter:
        self.service.send = self.execute
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finish every command already queued, then stop."""
        if self._stopped:
            return
        self._stopped = True
        self._queue.put(_STOP)
        self._thread.join()
        self.service.send = self.service.process_one

    def submit(self, command: Command) -> Future[CommandResult]:
        if self._stopped:
            raise WriterStopped("the command writer has stopped")
        future: Future[CommandResult] = Future()
        self._queue.put((command, future))
        return future

    def execute(self, command: Command) -> CommandResult:
        return self.submit(command).result()

    async def send(self, command: Command) -> CommandResult:
        return await asyncio.wrap_future(self.submit(command))

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[tuple[Command, Future[CommandResult]]] = []
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

    def _commit(self, batch: list[tuple[Command, Future[CommandResult]]]) -> None:
        self.batches += 1
        self.commands += len(batch)
        try:
            outcomes = self.service.process([command for command, _ in batch])
        except Exception as error:
            log.exception("group commit of %d commands failed", len(batch))
            for _, future in batch:
                future.set_exception(error)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
