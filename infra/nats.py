"""NATS JetStream topology (DESIGN §5): subjects, streams, work consumers, the workers
KV bucket and the artifacts object store, all created idempotently and updated when
their configuration changes (nats-py would silently keep an old consumer otherwise).

Priority: JetStream delivers a subject in order, so priority travels in the subject.
Each queue has three bands: ``agentboard.work.<queue>`` (priority 0, the contract's
subject), ``agentboard.work.<queue>.high`` (priority > 0) and
``agentboard.work.<queue>.low`` (priority < 0), each with its own durable pull consumer.
Workers drain high before normal before low; within a band, first in, first out.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_fixed

from infra.replicas import Replicas, placed
from infra.settings import nats_servers

log = logging.getLogger(__name__)

WORK_STREAM = "AGENTBOARD_WORK"
EVENTS_STREAM = "AGENTBOARD_EVENTS"
LOGS_STREAM = "AGENTBOARD_LOGS"
AUDIT_STREAM = "AGENTBOARD_AUDIT"  # the audit chain's heads, published as external anchors
WORKERS_BUCKET = "agentboard_workers"
ARTIFACTS_BUCKET = "agentboard_artifacts"

BANDS = ("high", "normal", "low")  # the order workers drain them in
PRESENCE_TTL_SECONDS = 10.0  # a worker silent this long is gone
WORK_ACK_WAIT_SECONDS = 30.0
WORK_MAX_DELIVER = 10
DUPLICATE_WINDOW_SECONDS = 300.0
PUBLISH_TIMEOUT_SECONDS = 10.0

CONSUMER_REPLICAS_EXCEED_STREAM = 10126
IN_SYNC_SECONDS = 30.0  # a stream's new copies catching up after its replicas are raised

DAY = 86_400.0


def band_of(priority: int) -> str:
    return "high" if priority > 0 else "low" if priority < 0 else "normal"


def work_subject(queue: str, band: str = "normal") -> str:
    base = f"agentboard.work.{queue}"
    return base if band == "normal" else f"{base}.{band}"


def work_consumer(queue: str, band: str) -> str:
    return f"work-{queue}-{band}"


def event_subject(tenant: str, execution_id: str, event_type: str) -> str:
    return f"agentboard.events.{tenant}.{execution_id}.{event_type}"


def log_subject(tenant: str, execution_id: str) -> str:
    return f"agentboard.logs.{tenant}.{execution_id}"


def control_subject(execution_id: str) -> str:
    return f"agentboard.control.{execution_id}"


def anchor_subject(tenant: str) -> str:
    return f"agentboard.audit.anchor.{tenant}"


STREAMS = (
    StreamConfig(
        name=WORK_STREAM,
        subjects=["agentboard.work.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    ),
    StreamConfig(
        name=EVENTS_STREAM,
        subjects=["agentboard.events.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=7 * DAY,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    ),
    StreamConfig(
        name=LOGS_STREAM,
        subjects=["agentboard.logs.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=7 * DAY,
        duplicate_window=120.0,
    ),
    StreamConfig(
        name=AUDIT_STREAM,
        subjects=["agentboard.audit.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=3650 * DAY,  # anchors are evidence: kept for years (a few KB a day a tenant)
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    ),
)


def work_consumer_config(queue: str, band: str, replicas: int | None = None) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=work_consumer(queue, band),
        filter_subject=work_subject(queue, band),
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=WORK_ACK_WAIT_SECONDS,
        max_deliver=WORK_MAX_DELIVER,
        max_ack_pending=10_000,
        max_waiting=1_024,
        num_replicas=replicas,
    )


@dataclass(frozen=True)
class NatsOptions:
    """How to reach the servers of ``AGENTBOARD_NATS_URL`` and what to keep there."""

    creds: Path | None = None
    """A credentials file (user JWT and NKey seed): ``AGENTBOARD_NATS_CREDS``."""
    tls_ca: Path | None = None
    """CA certificates the servers' TLS certificates are verified with."""
    replicas: int | None = None
    """``AGENTBOARD_NATS_REPLICAS``; None: decided from the cluster (infra/replicas.py)."""


async def connect(url: str, name: str, options: NatsOptions | None = None) -> Client:
    """A connection to any of the servers of ``url`` (comma-separated: the members of a
    cluster; the client also learns the others from the cluster) that reconnects forever
    (DESIGN §5)."""
    options = options or NatsOptions()
    tls = ssl.create_default_context(cafile=str(options.tls_ca)) if options.tls_ca else None
    return await nats.connect(
        nats_servers(url),
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
        connect_timeout=5,
        tls=tls,
        user_credentials=str(options.creds) if options.creds else None,
    )


async def ensure_streams(js: JetStreamContext, replicas: Replicas | None = None) -> None:
    replicas = replicas or Replicas()
    for config in STREAMS:
        name = config.name or ""
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            await placed(name, replicas.count, replicas.exact, _adding(js, config))
            log.info("created stream %s", name)
            continue
        current = info.config.num_replicas or 1
        count = replicas.for_existing(current)
        if _differs(replace(config, num_replicas=count).as_dict(), info.config.as_dict()):
            await placed(name, count, replicas.exact, _updating(js, config), fallback=current)
            log.info("updated stream %s (%d replicas)", name, count)
            if count > current:
                await _in_sync(js, name)


async def _in_sync(js: JetStreamContext, name: str) -> None:
    """Wait (a few seconds) until the new copies of a stream whose replicas were raised are
    current: until then JetStream refuses its consumers as many copies (err 10126)."""
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(IN_SYNC_SECONDS), wait=wait_fixed(0.2), reraise=True
        ):
            with attempt:
                info = await js.stream_info(name)
                peers = info.cluster.replicas if info.cluster else None
                current = 1 + sum(1 for peer in peers or () if peer.current)
                if current < (info.config.num_replicas or 1):
                    raise NotInSync(f"{name}: {current} of {info.config.num_replicas} copies")
    except NotInSync as waited:
        log.warning("stream %s not in sync after %.0fs: %s", name, IN_SYNC_SECONDS, waited)


class NotInSync(Exception):
    """A stream's raised copies are not current yet."""


def _adding(js: JetStreamContext, config: StreamConfig) -> Callable[[int], Awaitable[Any]]:
    return lambda count: js.add_stream(replace(config, num_replicas=count))


def _updating(js: JetStreamContext, config: StreamConfig) -> Callable[[int], Awaitable[Any]]:
    return lambda count: js.update_stream(replace(config, num_replicas=count))


async def ensure_work_consumers(js: JetStreamContext, queue: str) -> None:
    """The queue's consumers, as many copies as their stream (a consumer made while the
    stream had one copy would keep one when the stream is raised to three, and its state
    would go with its server). While a raised stream's new copies catch up, JetStream
    refuses that many (err 10126): tried again for a few seconds."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(_stream_catching_up),
        stop=stop_after_delay(IN_SYNC_SECONDS), wait=wait_fixed(0.2), reraise=True,
    ):  # fmt: skip
        with attempt:
            stream = await js.stream_info(WORK_STREAM)
            for band in BANDS:
                await _ensure_consumer(
                    js, work_consumer_config(queue, band, stream.config.num_replicas)
                )


async def _ensure_consumer(js: JetStreamContext, wanted: ConsumerConfig) -> None:
    try:
        info = await js.consumer_info(WORK_STREAM, wanted.durable_name or "")
    except NotFoundError:
        await js.add_consumer(WORK_STREAM, wanted)
        return
    if _differs(wanted.as_dict(), info.config.as_dict()):
        await js.add_consumer(WORK_STREAM, wanted)  # the server updates it in place
        log.info("updated consumer %s", wanted.durable_name)


def _stream_catching_up(error: BaseException) -> bool:
    return isinstance(error, APIError) and error.err_code == CONSUMER_REPLICAS_EXCEED_STREAM


async def workers_bucket(js: JetStreamContext, replicas: Replicas | None = None) -> KeyValue:
    replicas = replicas or Replicas()
    try:
        bucket = await js.key_value(WORKERS_BUCKET)
    except BucketNotFoundError:
        config = KeyValueConfig(bucket=WORKERS_BUCKET, ttl=PRESENCE_TTL_SECONDS, history=1)
        return await placed(
            WORKERS_BUCKET, replicas.count, replicas.exact,
            lambda count: js.create_key_value(replace(config, replicas=count)),
        )  # fmt: skip
    await _ensure_replicas(js, f"KV_{WORKERS_BUCKET}", replicas)
    return bucket


async def artifacts_store(js: JetStreamContext, replicas: Replicas | None = None) -> ObjectStore:
    replicas = replicas or Replicas()
    try:
        store = await js.object_store(ARTIFACTS_BUCKET)
    except (BucketNotFoundError, NotFoundError):

        def create(count: int) -> Awaitable[ObjectStore]:
            return js.create_object_store(ARTIFACTS_BUCKET, ObjectStoreConfig(replicas=count))

        return await placed(ARTIFACTS_BUCKET, replicas.count, replicas.exact, create)
    await _ensure_replicas(js, f"OBJ_{ARTIFACTS_BUCKET}", replicas)
    return store


async def _ensure_replicas(js: JetStreamContext, stream: str, replicas: Replicas) -> None:
    """The replicas of a stream that nats-py made for us (a bucket, an object store)."""
    info = await js.stream_info(stream)
    current = info.config.num_replicas or 1
    count = replicas.for_existing(current)
    if count != current:
        await placed(stream, count, replicas.exact, _updating(js, info.config), current)
        log.info("updated stream %s (%d replicas)", stream, count)


async def ensure_topology(
    js: JetStreamContext, queues: tuple[str, ...] = ("default",), replicas: Replicas | None = None
) -> None:
    await ensure_streams(js, replicas)
    for queue in queues:
        await ensure_work_consumers(js, queue)
    await workers_bucket(js, replicas)
    await artifacts_store(js, replicas)


def _differs(wanted: dict[str, Any], actual: dict[str, Any]) -> bool:
    """True when a field we set has another value on the server (fields we leave unset
    take the server's defaults and do not count)."""
    return any(value is not None and actual.get(key) != value for key, value in wanted.items())
