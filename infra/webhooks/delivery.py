"""Delivering webhook messages: POST each one, signed, until its endpoint answers 2xx.

- **Durable schedule.** What is due lives in ``agentboard_webhook_messages``: a failed
  attempt stores the message's next attempt time (exponential backoff with jitter,
  tenacity's ``wait_exponential_jitter``), so a restart, or another API process taking
  over, picks up where this one was. The same ``webhook-id`` goes with every try.
- **In order per execution.** Only the oldest pending message of an (endpoint, execution)
  is ever sent; the next waits until it is delivered or given up.
- **Per-endpoint queues.** Each round reads up to a few due messages per endpoint and sends
  at most ``per_endpoint`` at once to each: a slow or dead receiver fills only its own
  slots. Every attempt is bounded in time (``timeout`` for the whole exchange) and in
  what is read of the answer (``MAX_ANSWER_BYTES``); redirects are not followed.
- **Giving up.** A message still failing ``retry_for`` after it was made is given up; an
  endpoint whose deliveries have failed for ``disable_after`` (none succeeding since) is
  disabled, and what it had pending is given up with it. ``POST .../enable`` restores it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg
from prometheus_client import Counter, Histogram
from psycopg.rows import dict_row
from standardwebhooks.webhooks import Webhook as Signer
from tenacity import RetryCallState, wait_exponential_jitter

from infra.settings import Settings
from infra.webhooks.outbox import CHANNEL

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 4096  # of a receiver's answer, kept for the deliveries log
MAX_ERROR_CHARS = 300
USER_AGENT = "agentboard-webhooks/1"
# On stop, deliveries in flight get this long to finish; the rest are cut off unrecorded,
# so whoever delivers next sends them again (the same webhook-id: at least once).
STOP_GRACE_SECONDS = 1.0
SELECT_DUE = """
SELECT m.webhook_id, m.position, m.message_id, m.execution_id, m.event_type, m.body,
    m.attempts, w.url, w.secret
FROM agentboard_webhooks w
CROSS JOIN LATERAL (
    SELECT * FROM agentboard_webhook_messages m
    WHERE m.webhook_id = w.id AND m.state = 'pending' AND m.next_attempt_at <= now()
        AND NOT EXISTS (
            SELECT 1 FROM agentboard_webhook_messages e
            WHERE e.webhook_id = m.webhook_id AND e.execution_id = m.execution_id
                AND e.state = 'pending' AND e.position < m.position)
    ORDER BY m.next_attempt_at, m.position
    LIMIT %(per_endpoint)s
) m
WHERE w.enabled
"""
# (the endpoint may have been deleted while its message was on the way: nothing to record)
INSERT_ATTEMPT = """
INSERT INTO agentboard_webhook_attempts (webhook_id, position, message_id, event_type,
    execution_id, attempt, attempted_at, status_code, error, duration_ms, delivered)
SELECT %(webhook_id)s, %(position)s, %(message_id)s, %(event_type)s, %(execution_id)s,
    %(attempt)s, %(attempted_at)s, %(status_code)s, %(error)s, %(duration_ms)s, %(delivered)s
WHERE EXISTS (SELECT 1 FROM agentboard_webhooks WHERE id = %(webhook_id)s)
"""
DELIVERED = (
    "UPDATE agentboard_webhook_messages SET state = 'delivered', attempts = attempts + 1 "
    "WHERE webhook_id = %(webhook_id)s AND position = %(position)s"
)
SUCCEEDING = "UPDATE agentboard_webhooks SET failing_since = NULL WHERE id = %(webhook_id)s"
RETRY_LATER = """
UPDATE agentboard_webhook_messages SET attempts = attempts + 1,
    next_attempt_at = %(next_attempt_at)s,
    state = CASE WHEN created_at + %(retry_for)s <= now() THEN 'failed' ELSE 'pending' END
WHERE webhook_id = %(webhook_id)s AND position = %(position)s
"""
FAILING = """
UPDATE agentboard_webhooks SET failing_since = coalesce(failing_since, %(attempted_at)s)
WHERE id = %(webhook_id)s RETURNING failing_since
"""
DISABLE = """
UPDATE agentboard_webhooks SET enabled = false, disabled_at = now(), disabled_reason = %(reason)s
WHERE id = %(webhook_id)s AND enabled
"""
GIVE_UP_PENDING = (
    "UPDATE agentboard_webhook_messages SET state = 'failed' "
    "WHERE webhook_id = %(webhook_id)s AND state = 'pending'"
)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    timeout: float = 10.0
    backoff: float = 5.0
    max_backoff: float = 3600.0
    retry_for: float = 86_400.0
    disable_after: float = 86_400.0
    poll: float = 1.0
    per_endpoint: int = 4
    """Deliveries in flight to one endpoint at once (each of another execution)."""

    @classmethod
    def of(cls, settings: Settings) -> DeliveryPolicy:
        return cls(
            timeout=settings.webhook_timeout_seconds, backoff=settings.webhook_backoff_seconds,
            max_backoff=settings.webhook_max_backoff_seconds,
            retry_for=settings.webhook_retry_for_seconds,
            disable_after=settings.webhook_disable_after_seconds,
            poll=settings.webhook_poll_seconds,
        )  # fmt: skip

    def delay(self, attempts: int) -> float:
        """Seconds before the next try, after ``attempts`` failed ones."""
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = attempts
        wait = wait_exponential_jitter(multiplier=self.backoff, max=self.max_backoff,
                                       jitter=self.backoff)  # fmt: skip
        return float(wait(state))


class DeliveryMetrics:
    """Attempts by outcome and their durations; the API's /metrics registers them."""

    def __init__(self) -> None:
        self.attempts = Counter(
            "agentboard_webhook_deliveries", "webhook delivery attempts by outcome",
            ["outcome"], registry=None,
        )  # fmt: skip
        self.durations = Histogram(
            "agentboard_webhook_delivery_duration_seconds",
            "webhook delivery attempts, from sending to the answer (or giving up on it)",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=None,
        )  # fmt: skip

    def collectors(self) -> tuple[Counter, Histogram]:
        return self.attempts, self.durations


@dataclass(frozen=True, slots=True)
class Message:
    webhook_id: str
    position: int
    message_id: str
    execution_id: UUID
    event_type: str
    body: bytes
    attempts: int
    url: str
    secret: str

    @property
    def key(self) -> tuple[str, UUID]:
        return self.webhook_id, self.execution_id


def signed_headers(secret: str, message_id: str, at: datetime, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one try (signed anew at each: the timestamp is the
    time of sending, which receivers check is recent)."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Signer(secret).sign(message_id, at, body),
    }


class Deliveries:
    """The delivery loop of the one active webhooks service (``service.py`` elects it)."""

    def __init__(
        self,
        database_url: str,
        policy: DeliveryPolicy,
        metrics: DeliveryMetrics,
        client: Callable[[], httpx.AsyncClient] | None = None,
    ) -> None:
        self.database_url = database_url
        self.policy = policy
        self.metrics = metrics
        self.client_factory = client or (
            lambda: httpx.AsyncClient(follow_redirects=False, timeout=policy.timeout)
        )
        self.wake = asyncio.Event()
        self.in_flight: dict[str, set[UUID]] = defaultdict(set)
        self.tasks: set[asyncio.Task[None]] = set()
        self._db_lock = asyncio.Lock()

    async def run(self, stopping: asyncio.Event) -> None:
        """Deliver until ``stopping`` is set; what is in flight then is finished first."""
        async with (
            await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as listening,
            await psycopg.AsyncConnection.connect(
                self.database_url, autocommit=True, row_factory=dict_row
            ) as conn,
            self.client_factory() as client,
        ):  # fmt: skip
            await listening.execute("LISTEN " + CHANNEL)
            listener = asyncio.create_task(self._listen(listening))
            try:
                while not stopping.is_set():
                    for message in await self._due(conn):
                        self._dispatch(message, client, conn)
                    await self._pause(stopping)
            finally:
                listener.cancel()
                if self.tasks:
                    _, cut_off = await asyncio.wait(self.tasks, timeout=STOP_GRACE_SECONDS)
                    for task in cut_off:
                        task.cancel()
                await asyncio.gather(listener, *self.tasks, return_exceptions=True)

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async for _ in conn.notifies():
            self.wake.set()

    async def _pause(self, stopping: asyncio.Event) -> None:
        """Until new messages, a delivery ending (its execution's next may go), a due
        retry (polled), or stop."""
        stop = asyncio.create_task(stopping.wait())
        woken = asyncio.create_task(self.wake.wait())
        await asyncio.wait({stop, woken}, timeout=self.policy.poll,
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        stop.cancel()
        woken.cancel()
        self.wake.clear()

    async def _due(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> list[Message]:
        async with self._db_lock:
            cursor = await conn.execute(SELECT_DUE, {"per_endpoint": 2 * self.policy.per_endpoint})
            rows = await cursor.fetchall()
        return [Message(**{**row, "body": bytes(row["body"])}) for row in rows]

    def _dispatch(
        self, message: Message, client: httpx.AsyncClient, conn: psycopg.AsyncConnection[Any]
    ) -> None:
        busy = self.in_flight[message.webhook_id]
        if message.execution_id in busy or len(busy) >= self.policy.per_endpoint:
            return
        busy.add(message.execution_id)
        task = asyncio.create_task(self._deliver(message, client, conn))
        self.tasks.add(task)
        task.add_done_callback(self._done(message))

    def _done(self, message: Message) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            self.tasks.discard(task)
            self.in_flight[message.webhook_id].discard(message.execution_id)
            if not task.cancelled() and task.exception() is not None:
                log.error("recording a webhook delivery failed", exc_info=task.exception())
            self.wake.set()

        return done

    async def _deliver(
        self, message: Message, client: httpx.AsyncClient, conn: psycopg.AsyncConnection[Any]
    ) -> None:
        attempted_at = datetime.now(UTC)
        started = time.perf_counter()
        status, error = await self._post(message, client, attempted_at)
        seconds = time.perf_counter() - started
        delivered = status is not None and 200 <= status < 300
        self.metrics.attempts.labels("delivered" if delivered else "failed").inc()
        if not delivered:
            log.info(
                "webhook %s: %s not delivered (%s)", message.webhook_id, message.message_id,
                error, extra={"execution_id": str(message.execution_id)},
            )  # fmt: skip
        self.metrics.durations.observe(seconds)
        record = {
            "webhook_id": message.webhook_id, "position": message.position,
            "message_id": message.message_id, "event_type": message.event_type,
            "execution_id": message.execution_id, "attempt": message.attempts + 1,
            "attempted_at": attempted_at, "status_code": status, "error": error,
            "duration_ms": round(seconds * 1000, 3), "delivered": delivered,
        }  # fmt: skip
        async with self._db_lock, conn.transaction():
            await conn.execute(INSERT_ATTEMPT, record)
            if delivered:
                await conn.execute(DELIVERED, record)
                await conn.execute(SUCCEEDING, record)
            else:
                await self._failed(conn, record)

    async def _post(
        self, message: Message, client: httpx.AsyncClient, at: datetime
    ) -> tuple[int | None, str | None]:
        """The answer's status code, and what went wrong (None when it was a 2xx)."""
        headers = signed_headers(message.secret, message.message_id, at, message.body)
        try:
            async with asyncio.timeout(self.policy.timeout):
                request = client.build_request("POST", message.url, content=message.body,
                                               headers=headers)  # fmt: skip
                response = await client.send(request, stream=True)
                try:
                    answer = await _read_some(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            return None, f"no answer within {self.policy.timeout:g}s"
        except httpx.HTTPError as failure:
            return None, f"{type(failure).__name__}: {failure}"[:MAX_ERROR_CHARS]
        if 200 <= response.status_code < 300:
            return response.status_code, None
        text = answer.decode("utf-8", "replace").strip()
        return response.status_code, f"HTTP {response.status_code} {text}"[:MAX_ERROR_CHARS]

    async def _failed(self, conn: psycopg.AsyncConnection[Any], record: dict[str, Any]) -> None:
        retry_in = timedelta(seconds=self.policy.delay(record["attempt"]))
        await conn.execute(RETRY_LATER, {
            **record, "next_attempt_at": record["attempted_at"] + retry_in,
            "retry_for": timedelta(seconds=self.policy.retry_for),
        })  # fmt: skip
        row = await (await conn.execute(FAILING, record)).fetchone()
        failing_since: datetime = row["failing_since"] if row else record["attempted_at"]
        if record["attempted_at"] - failing_since >= timedelta(seconds=self.policy.disable_after):
            reason = f"every delivery failed since {failing_since.isoformat()}"
            await conn.execute(DISABLE, {**record, "reason": reason})
            await conn.execute(GIVE_UP_PENDING, record)
            log.warning("webhook %s disabled: %s", record["webhook_id"], reason)


async def _read_some(response: httpx.Response) -> bytes:
    """At most ``MAX_ANSWER_BYTES`` of the answer: a huge one is not read to its end."""
    kept = bytearray()
    async for chunk in response.aiter_raw():
        kept += chunk
        if len(kept) >= MAX_ANSWER_BYTES:
            break
    return bytes(kept[:MAX_ANSWER_BYTES])
