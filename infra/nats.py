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
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

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


def work_consumer_config(queue: str, band: str) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=work_consumer(queue, band),
        filter_subject=work_subject(queue, band),
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=WORK_ACK_WAIT_SECONDS,
        max_deliver=WORK_MAX_DELIVER,
        max_ack_pending=10_000,
        max_waiting=1_024,
    )


async def connect(url: str, name: str) -> Client:
    """A connection that reconnects forever (DESIGN §5)."""
    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
        connect_timeout=5,
    )


async def ensure_streams(js: JetStreamContext) -> None:
    for config in STREAMS:
        try:
            info = await js.stream_info(config.name or "")
        except NotFoundError:
            await js.add_stream(config)
            log.info("created stream %s", config.name)
            continue
        if _differs(config.as_dict(), info.config.as_dict()):
            await js.update_stream(config)
            log.info("updated stream %s", config.name)


async def ensure_work_consumers(js: JetStreamContext, queue: str) -> None:
    for band in BANDS:
        wanted = work_consumer_config(queue, band)
        try:
            info = await js.consumer_info(WORK_STREAM, work_consumer(queue, band))
        except NotFoundError:
            await js.add_consumer(WORK_STREAM, wanted)
            continue
        if _differs(wanted.as_dict(), info.config.as_dict()):
            await js.add_consumer(WORK_STREAM, wanted)  # the server updates it in place
            log.info("updated consumer %s", work_consumer(queue, band))


async def workers_bucket(js: JetStreamContext) -> KeyValue:
    try:
        return await js.key_value(WORKERS_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(bucket=WORKERS_BUCKET, ttl=PRESENCE_TTL_SECONDS, history=1)
        )


async def artifacts_store(js: JetStreamContext) -> ObjectStore:
    try:
        return await js.object_store(ARTIFACTS_BUCKET)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_object_store(ARTIFACTS_BUCKET, ObjectStoreConfig())


async def ensure_topology(js: JetStreamContext, queues: tuple[str, ...] = ("default",)) -> None:
    await ensure_streams(js)
    for queue in queues:
        await ensure_work_consumers(js, queue)
    await workers_bucket(js)
    await artifacts_store(js)


def _differs(wanted: dict[str, Any], actual: dict[str, Any]) -> bool:
    """True when a field we set has another value on the server (fields we leave unset
    take the server's defaults and do not count)."""
    return any(value is not None and actual.get(key) != value for key, value in wanted.items())
