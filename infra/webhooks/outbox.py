"""The outbox: a tracked projection of the log that turns each event entering a status
into one message per endpoint that asked for it, in the same transaction as its tracking
record. So every event is considered exactly once, whatever crashes, and what is to be
delivered is durable before anyone tries to deliver it (``delivery.py`` does).

An endpoint hears of events stored after it was registered (``created_position``), of
its own tenant, entering one of its statuses (or any, ``*``), of executions its filter
matches as they were at that event (the list's filters, evaluated at the event's time).
The message's body is made here, once: the execution as it was then (``payload.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from psycopg import Cursor
from psycopg.rows import DictRow

from domain.execution.state import ExecutionState
from infra.webhooks.payload import ENTERS, execution_document, fold, message_body, status_entered
from projections.engine.exporter import ExporterRecorder
from projections.engine.log import LoggedEvent, by_execution, topic_of
from projections.engine.projection import PageProjection
from projections.views.filters import ExecutionFilter, parse_age

CHANNEL = "agentboard_webhooks"  # the delivery loop hears of new messages on commit
SELECT_ENABLED = (
    "SELECT id, tenant, events, filter, created_position FROM agentboard_webhooks WHERE enabled"
)
INSERT_MESSAGE = (
    "INSERT INTO agentboard_webhook_messages "
    "(webhook_id, position, message_id, execution_id, event_type, body) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
NOTIFY = "SELECT pg_notify(%s, '')"
EVERY_STATUS = "*"
FILTERS = frozenset(
    {"status", "agent", "team", "type", "queue", "label", "created_by", "overdue", "older_than",
     "q"}
)  # fmt: skip
_MESSAGE_IDS = uuid5(NAMESPACE_URL, "agentboard:webhook-message")

History = Callable[[UUID, int], Sequence[Any]]
"""An execution's events up to a version, from the store."""


class UnknownFilter(ValueError):
    """A webhook filter names something the list does not filter by."""


def subscription_filter(where: dict[str, Any]) -> ExecutionFilter:
    """The list filter a webhook's ``filter`` describes; raises ``UnknownFilter`` or the
    list's own ``InvalidQuery`` for a bad one."""
    unknown = sorted(set(where) - FILTERS)
    if unknown:
        raise UnknownFilter(f"filter.{unknown[0]} is not a filter of the list")
    fields = dict(where)
    status = fields.pop("status", ())
    older_than = fields.pop("older_than", None)
    return ExecutionFilter(
        status=(status,) if isinstance(status, str) else tuple(status),
        older_than=parse_age(older_than) if older_than else None,
        **fields,
    )


def message_id(execution_id: UUID, version: int) -> str:
    """The ``webhook-id`` of an event's announcement: the same on every try, to every
    endpoint, so a receiver can drop what it already has."""
    return "msg_" + uuid5(_MESSAGE_IDS, f"{execution_id}:{version}").hex


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    tenant: str
    events: frozenset[str]
    where: ExecutionFilter
    created_position: int

    def wants(self, status: str, position: int) -> bool:
        return position > self.created_position and (
            status in self.events or EVERY_STATUS in self.events
        )


class OutboxView(ExporterRecorder):
    name = "webhook_outbox"

    def endpoints(self, curs: Cursor[DictRow]) -> list[Endpoint]:
        rows = curs.execute(SELECT_ENABLED, prepare=True).fetchall()
        return [
            Endpoint(row["id"], row["tenant"], frozenset(row["events"]),
                     subscription_filter(row["filter"]), int(row["created_position"]))
            for row in rows
        ]  # fmt: skip

    def enqueue(self, curs: Cursor[DictRow], messages: list[tuple[Any, ...]]) -> None:
        if messages:
            curs.executemany(INSERT_MESSAGE, messages)
            curs.execute(NOTIFY, (CHANNEL,))


class OutboxProjection(PageProjection[OutboxView]):
    name = "webhook_outbox"
    decoded: ClassVar[frozenset[str] | None] = frozenset(topic_of(cls) for cls in ENTERS)

    def __init__(self, view: OutboxView, history: History) -> None:
        super().__init__(view)
        self.history = history

    def apply(self, curs: Cursor[DictRow], events: list[LoggedEvent]) -> None:
        if not events:
            return
        endpoints = self.view.endpoints(curs)
        if not endpoints:
            return
        messages: list[tuple[Any, ...]] = []
        for execution_id, entries in by_execution(events).items():
            wanted = [
                entry for entry in entries
                if any(e.wants(status_entered(entry.event) or "", entry.position)
                       for e in endpoints)
            ]  # fmt: skip
            if wanted:
                messages.extend(self._messages(execution_id, wanted, endpoints))
        self.view.enqueue(curs, messages)

    def _messages(
        self, execution_id: UUID, entries: list[LoggedEvent], endpoints: list[Endpoint]
    ) -> list[tuple[Any, ...]]:
        history = self.history(execution_id, entries[-1].event.originator_version)
        messages = []
        for entry in entries:
            version = entry.event.originator_version
            so_far = history[:version]
            status = status_entered(entry.event) or ""
            state = ExecutionState.of(fold(so_far))
            body: bytes | None = None
            for endpoint in endpoints:
                if not (
                    endpoint.tenant == state.tenant
                    and endpoint.wants(status, entry.position)
                    and endpoint.where.matches(state, entry.event.timestamp)
                ):
                    continue
                if body is None:
                    data = execution_document(so_far, entry.position, state)
                    body = message_body(f"execution.{status}", entry.event.timestamp, data)
                messages.append((
                    endpoint.id, entry.position, message_id(execution_id, version),
                    execution_id, f"execution.{status}", body,
                ))  # fmt: skip
        return messages
