"""The worker: pulls work from JetStream, claims it with a lease, runs its agent, reports.

- **Pull, bounded.** One long-poll fetch per (queue, band) while the worker has room; what
  arrives waits in a small local buffer that is drained high band first. At most one
  message per band can be fetched beyond ``concurrency`` (it waits, kept alive).
- **Claim.** PickedUp with a claim token unique to this delivery; the message is then
  acknowledged: from here on the lease, not JetStream, says who holds the execution. A
  refused claim (cancelled, already held, unknown) acknowledges the message away; a
  malformed message is terminated; a retry whose ``not_before`` lies ahead is delayed.
- **Presence.** Every 2 s the worker writes ``<worker_id>`` to the ``agentboard_workers``
  KV bucket (TTL 10 s) with the executions it holds; the lease monitor expires the leases
  of a worker whose key has gone.
- **Input.** While an agent waits for an answer it gives back its slot.
- **Block.** A blocked run finishes what it is doing (its reports are recorded, and its
  completion or failure ends the block); it starts nothing new, and gives back its slot,
  until a person unblocks it (workers/context.py). It keeps its lease all along.
- **Cancel.** A control message cancels the agent's task at once; the worker confirms.
- **SIGTERM** stops taking work and lets running executions finish, for up to 10 s; what
  is still running then (or waiting for a person) is left to its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import FetchTimeoutError

from domain.execution import commands as c
from domain.execution.values import FailureReason
from infra.nats import (
    BANDS,
    WORK_STREAM,
    NatsOptions,
    artifacts_store,
    connect,
    control_subject,
    ensure_streams,
    ensure_work_consumers,
    work_consumer,
    workers_bucket,
)
from infra.replicas import replicas_for
from workers.agent import Agent, AgentFailed, ExecutionInfo, ToolFailed
from workers.client import CommandClient, CommandRefused
from workers.context import RunContext
from workers.presence import Presence

log = logging.getLogger(__name__)

FETCH_SECONDS = 5.0
PRIORITY_GRACE_SECONDS = 0.002
DRAIN_SECONDS = 10.0
OTHER_TENANT_DELAY_SECONDS = 5.0


class MalformedWork(ValueError):
    """A work message that is not what the relay publishes."""


@dataclass
class WorkerStats:
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    refused: int = 0


@dataclass
class Worker:
    nats_url: str
    queues: tuple[str, ...]
    agents: dict[str, Agent]
    concurrency: int = 4
    api_key: str | None = None
    """A key of role worker; one of the deployment's tenant (``default``) serves every tenant."""
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid4().hex[:8]}")
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    """US dollars per million input and output tokens, by model (``AGENTBOARD_PRICES``)."""
    stats: WorkerStats = field(default_factory=WorkerStats)
    nats: NatsOptions = field(default_factory=NatsOptions)
    """Credentials, TLS and replicas for ``nats_url``'s servers."""

    def __post_init__(self) -> None:
        self._running: dict[UUID, RunContext] = {}
        self._slots = asyncio.Semaphore(self.concurrency)
        self._busy = 0  # slots taken by runs (a run waiting for a person gives its slot back)
        self._owed = 0  # slots taken back by resumed runs, not yet paid for by a freed one
        self._buffer: asyncio.PriorityQueue[tuple[int, int, Msg]] = asyncio.PriorityQueue()
        self._arrivals = 0
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Work until ``stop()``; then drain the executions in hand."""
        self.nc: Client = await connect(self.nats_url, f"worker {self.worker_id}", self.nats)
        self.js: JetStreamContext = self.nc.jetstream()
        replicas = replicas_for(self.nc, self.nats.replicas)
        await ensure_streams(self.js, replicas)
        self.client = CommandClient(self.nc, self.api_key)
        try:
            identity = await self.client.whoami()
            _check_queues(self.queues, identity.get("queues"))
        except CommandRefused:
            await self.nc.close()
            raise
        self.tenant: str | None = None if identity["every_tenant"] else identity["tenant"]
        bucket = await workers_bucket(self.js, replicas)
        self.presence = Presence(bucket, self.worker_id, self._holding)
        self.artifacts = await artifacts_store(self.js, replicas)
        fetchers = []
        for queue in self.queues:
            await ensure_work_consumers(self.js, queue)
            for rank, band in enumerate(BANDS):
                sub = await self.js.pull_subscribe_bind(work_consumer(queue, band), WORK_STREAM)
                fetchers.append(asyncio.create_task(self._fetch_loop(sub, rank)))
        self.presence.start()
        dispatch = asyncio.create_task(self._dispatch_loop())
        log.info("worker %s on %s, concurrency %d", self.worker_id, self.queues, self.concurrency)
        await self._stopping.wait()
        for task in (*fetchers, dispatch):
            task.cancel()
        await asyncio.gather(*fetchers, dispatch, return_exceptions=True)
        await self._requeue_buffered()
        if self._tasks:
            # Let running executions finish; one that outlasts the drain (or waits for a
            # person) is left to its lease: the monitor requeues it once this worker is gone.
            _, unfinished = await asyncio.wait(self._tasks, timeout=DRAIN_SECONDS)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        await self.presence.stop()
        # not drain(): a pull subscription may hold a late delivery nobody will take (it is
        # redelivered after ack_wait), and drain() would wait for it until its timeout
        with contextlib.suppress(Exception):
            await self.nc.flush(timeout=5)
        await self.nc.close()

    def stop(self) -> None:
        self._stopping.set()

    def _key_refused(self, refusal: CommandRefused) -> None:
        """The key was revoked (or its role changed) while running: stop the whole worker, so
        that what it holds goes back to the queue once its presence is gone."""
        if not self._stopping.is_set():
            log.error("worker %s: its key is refused (%s); stopping", self.worker_id, refusal)
            self.stop()

    # -- pulling ---------------------------------------------------------------------------

    def _has_room(self) -> bool:
        return self._busy + self._buffer.qsize() < self.concurrency

    def give_back(self) -> None:
        self._busy -= 1
        self._slots.release()

    def take_back(self) -> None:
        """A run a person let go on (answered, unblocked) takes its slot back at once, even
        past ``concurrency``: it must not wait behind new work, nor stall while its
        heartbeat ages. The next slot freed pays for it (``_owed``)."""
        self._busy += 1
        self._owed += 1

    async def _fetch_loop(self, sub: JetStreamContext.PullSubscription, rank: int) -> None:
        while True:
            while not self._has_room():
                await asyncio.sleep(0.005)
            try:
                [message] = await sub.fetch(1, timeout=FETCH_SECONDS)
            except (FetchTimeoutError, TimeoutError):
                continue
            except Exception as error:
                log.warning("fetch failed: %r", error)
                await asyncio.sleep(0.5)
                continue
            self._arrivals += 1
            self._buffer.put_nowait((rank, self._arrivals, message))

    async def _dispatch_loop(self) -> None:
        while True:
            await self._slots.acquire()
            if self._owed:  # a resumed run took its slot back: this freed slot is its
                self._owed -= 1
                continue
            rank, arrival, message = await self._buffer.get()
            if self._owed:  # taken back while this slot waited for work
                self._owed -= 1
                self._buffer.put_nowait((rank, arrival, message))
                continue
            if rank > 0:
                # Higher bands' long-polls may be answering at this very moment (a backlog
                # met by an idle worker): give them a moment, then take the best on hand.
                await asyncio.sleep(PRIORITY_GRACE_SECONDS)
                self._buffer.put_nowait((rank, arrival, message))
                rank, arrival, message = self._buffer.get_nowait()
            self._busy += 1
            task = asyncio.create_task(self._handle(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _requeue_buffered(self) -> None:
        while not self._buffer.empty():
            _, _, message = self._buffer.get_nowait()
            with contextlib.suppress(Exception):
                await message.nak()

    # -- one execution -------------------------------------------------------------------------

    async def _handle(self, message: Msg) -> None:
        try:
            await self._claim_and_run(message)
        except Exception:
            log.exception("worker %s: run failed", self.worker_id)
        finally:
            self._busy -= 1
            self._slots.release()

    async def _claim_and_run(self, message: Msg) -> None:
        try:
            work = _parse_work(message.data)
        except MalformedWork as error:
            log.error("terminating malformed work message %r: %s", message.data[:200], error)
            await message.term()
            return
        if self.tenant is not None and work["tenant"] != self.tenant:
            # queues are the deployment's; another tenant's worker should take this one
            await message.nak(delay=OTHER_TENANT_DELAY_SECONDS)
            return
        delay = (
            (work["not_before"] - datetime.now(UTC)).total_seconds() if work["not_before"] else 0
        )
        if delay > 0.05:
            await message.nak(delay=delay)
            return
        token = (
            f"{self.worker_id}:{message.metadata.sequence.stream}:{message.metadata.num_delivered}"
        )
        try:
            claim = await self.client.send(c.PickUp(work["execution_id"], self.worker_id, token))
        except CommandRefused as refusal:
            if refusal.key_refused:  # the work is fine; this worker may no longer take it
                await message.nak(delay=2)
                self._key_refused(refusal)
                return
            self.stats.refused += 1
            log.info("claim of %s refused: %s", work["execution_id"], refusal)
            await message.ack()
            return
        except ConnectionError:
            await message.nak(delay=2)
            return
        await message.ack()
        self.stats.claimed += 1
        await self._run(claim)

    async def _run(self, claim: dict[str, Any]) -> None:
        card = claim["execution"]
        info = ExecutionInfo(
            id=UUID(card["id"]), agent_id=card["agent_id"], prompt=card["prompt"],
            parameters=card["parameters"], attempt=card["attempt"], labels=card["labels"],
        )  # fmt: skip
        context = RunContext(
            info, card["tenant"], claim["lease"], self.nc, self.client, self.artifacts, self,
            self.worker_id, self.prices,
        )  # fmt: skip

        async def on_control(message: Msg) -> None:
            with contextlib.suppress(ValueError):
                context.on_control(json.loads(message.data))

        subscription = await self.nc.subscribe(control_subject(card["id"]), cb=on_control)
        self._running[info.id] = context
        self.presence.changed()  # announced within milliseconds, not awaited here
        flusher = asyncio.create_task(context.flush_periodically())
        try:
            await self._supervise(context, card.get("timeout_seconds"))
        except CommandRefused as refusal:
            log.warning("execution %s: %s; stopping this run", info.id, refusal)
            if refusal.key_refused:
                self._key_refused(refusal)
            elif not refusal.lease_lost:  # a report the command side will never take: the
                with contextlib.suppress(Exception):  # run cannot go on, and must not hang
                    await self._fail(
                        context, f"a report was refused: {refusal}", FailureReason.AGENT_ERROR
                    )
        except Exception as error:
            log.exception("execution %s: the worker failed running it", info.id)
            with contextlib.suppress(Exception):
                await self._fail(context, f"worker error: {error!r}", FailureReason.AGENT_ERROR)
        finally:
            flusher.cancel()
            context.close()
            await asyncio.gather(flusher, return_exceptions=True)
            await subscription.unsubscribe()
            self._running.pop(info.id, None)
            self.presence.changed()

    async def _supervise(self, context: RunContext, timeout: float | None) -> None:
        agent = self.agents.get(context.execution.agent_id)
        info, lease = context.execution, context.lease
        if agent is None:
            await context.report(
                c.Fail(info.id, lease, f"no agent {info.agent_id!r} on this worker",
                       FailureReason.MISSING_PREREQUISITE)
            )  # fmt: skip
            self.stats.failed += 1
            return
        task: asyncio.Task[Any] = asyncio.create_task(_call(agent, context))
        context.cancelled.then(task.cancel)  # asked to stop, or ended elsewhere: stop the agent
        context.lost.then(task.cancel)
        try:
            result = await asyncio.wait_for(task, timeout)
        except asyncio.CancelledError:
            if context.lost.is_set():
                log.warning("execution %s was ended elsewhere; its run stopped", info.id)
                return
            if not context.cancelled.is_set():
                raise  # the worker itself is being torn down
            await context.flush()
            await context.report(c.ConfirmCancel(info.id, lease))
            self.stats.cancelled += 1
            return
        except TimeoutError:
            await self._fail(context, f"ran longer than {timeout}s", FailureReason.TIMEOUT)
            return
        except AgentFailed as failure:
            await self._fail(context, failure.error, _reason_of(failure))
            return
        except ToolFailed as failure:
            await self._fail(context, str(failure), FailureReason.TOOL_ERROR)
            return
        except CommandRefused:
            raise
        except Exception as error:
            await self._fail(context, f"{type(error).__name__}: {error}", FailureReason.AGENT_ERROR)
            return
        await context.flush()
        await context.report(c.Complete(info.id, lease, result))
        self.stats.completed += 1

    async def _fail(self, context: RunContext, error: str, reason: FailureReason) -> None:
        await context.flush()
        await context.report(c.Fail(context.execution.id, context.lease, error[:4000], reason))
        self.stats.failed += 1

    # -- presence --------------------------------------------------------------------------------

    def _holding(self) -> dict[str, Any]:
        """What this worker announces: itself, and each execution it holds."""
        return {
            "worker_id": self.worker_id,
            "queues": list(self.queues),
            "concurrency": self.concurrency,
            "pid": os.getpid(),
            "seen_at": time.time(),
            "executions": {
                str(i): {"lease": ctx.lease, "heartbeat_at": ctx.last_heartbeat}
                for i, ctx in self._running.items()
            },
        }


async def _call(agent: Agent, context: RunContext) -> Any:
    return await agent(context)


def _parse_work(data: bytes) -> dict[str, Any]:
    try:
        work = json.loads(data)
        not_before = work.get("not_before")
        return {
            "execution_id": UUID(str(work["execution_id"])),
            "tenant": str(work.get("tenant") or ""),
            "not_before": datetime.fromisoformat(not_before) if not_before else None,
        }
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise MalformedWork(str(error)) from None


def _check_queues(queues: tuple[str, ...], allowed: list[str] | None) -> None:
    """A key limited to some queues cannot start a worker on others."""
    outside = [queue for queue in queues if allowed is not None and queue not in allowed]
    if outside:
        raise CommandRefused(
            "QueueNotAllowed",
            f"this key serves only queues {', '.join(allowed or ())}, not "
            f"{', '.join(outside)}: start the worker on those, or use another key",
        )


def _reason_of(failure: AgentFailed) -> FailureReason:
    """The reason an agent gave (a string, as the SDK takes it), or ``agent_error`` for one
    the domain does not know."""
    try:
        return FailureReason(failure.reason)
    except ValueError:
        return FailureReason.AGENT_ERROR
