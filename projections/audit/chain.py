"""The audit chain: a tracked projection that hash-chains the stored log as it grows.

For each stored event it records the head of its record (the record up to its data,
which holds the hash of the same execution's previous event), the event's hash
(SHA-256 of head and stored state) and the tenant chain's value after it (SHA-256 of the
tenant's previous value and the event's hash), in the same transaction as its tracking
record, like every view. An export line is then head, state and chain fields end to
end: what was hashed is what is exported. See ``format`` and docs/audit.md.

Unlike the other views it reads the stored events raw (topic and state bytes), not
decoded: the chain covers what is stored, whether or not this code understands it. A
state that is not a JSON object with a timestamp, or an event of an execution whose
``Created`` the chain never saw, halts the view like any bad event (docs/projections.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar

import msgspec
from cachetools import LRUCache
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from psycopg import Cursor
from psycopg.rows import DictRow

from domain.execution.aggregate import Execution
from domain.execution.values import SYSTEM
from projections.audit import format as fmt
from projections.audit.chain_view import AuditChainView, Head, Stored, TenantHead, copy_text
from projections.engine.errors import BadEvent
from projections.engine.log import LoggedEvent, Page, topic_of
from projections.engine.projection import PageProjection, remembered

log = logging.getLogger(__name__)

CREATED = topic_of(Execution.Created)
PICKED_UP = topic_of(Execution.PickedUp)
LEASE_EXPIRED = topic_of(Execution.LeaseExpired)
SYSTEM_ACTOR = fmt.json_text(SYSTEM.as_dict())
UNATTRIBUTED: frozenset[type[Any]] = frozenset()
"""Events whose line names no actor (``null``): none. Every other event names who did it
(``_actor``): Created its creator, an operator action its actor, a pick-up or a worker's
report (it carries a lease) the worker, an expired lease the system."""
GENESIS = bytes(32)


class AuditChainProjection(PageProjection[AuditChainView]):
    name = "audit_chain"
    decoded: ClassVar[frozenset[str] | None] = frozenset()  # reads stored events raw

    cache_size = 100_000

    def __init__(self, view: AuditChainView) -> None:
        super().__init__(view)
        self.known: LRUCache[str, Head] = LRUCache(self.cache_size)
        self.tenants: dict[str, TenantHead] = {}

    def forget(self) -> None:
        self.known.clear()
        self.tenants.clear()

    def process_page(self, page: Page, skips: frozenset[int] = frozenset()) -> None:
        """Chain the stored events of the page, in one transaction with its tracking.
        On a bad event, chain what comes before it, then raise ``BadEvent``."""
        try:
            with self.view.page_transaction(page.after, page.last) as curs:
                self.chain(curs, self.view.stored(curs, page.after, page.last), skips)
        except BadEvent as bad:
            self.forget()
            if page.after < bad.position - 1 < page.last:
                self.process_page(page.before(bad.position), skips)
            raise
        except BaseException:
            self.forget()
            raise

    def apply(self, curs: Cursor[DictRow], events: list[LoggedEvent]) -> None:
        self.chain(curs, self.view.stored_at(curs, [e.position for e in events]), frozenset())

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        position = tracking.notification_id
        try:
            with self.view.page_transaction(None, position) as curs:
                self.chain(curs, self.view.stored_at(curs, [position]), frozenset())
        except BaseException:
            self.forget()
            raise

    def chain(self, curs: Cursor[DictRow], stored: list[Stored], skips: frozenset[int]) -> None:
        heads = self._heads(curs, stored)
        changed: dict[str, Head] = {}
        tenants: dict[str, TenantHead] = {}
        links: list[bytes] = []
        sha256, event_head = hashlib.sha256, fmt.event_head
        for event in stored:
            if event.position in skips:
                log.warning(
                    "view %s skips log position %d (%s) by a recorded rule",
                    self.name, event.position, event.topic,
                )  # fmt: skip
                continue
            data = _state(event)
            head = heads.get(event.execution_id)
            if event.topic == CREATED:
                head = Head(_text(event, data, "tenant"), _text(event, data, "agent_id"), None, 0,
                            GENESIS)  # fmt: skip
            elif head is None:
                raise BadEvent(
                    self.name, event.position, event.topic,
                    f"execution {event.execution_id} is unknown (its Created event is missing)",
                )  # fmt: skip
            if event.topic == PICKED_UP:
                head.worker_id = _text(event, data, "worker_id")
            tenant = tenants.get(head.tenant) or self._tenant(curs, head.tenant)
            stamp = _timestamp(event, data)
            execution_id = event.execution_id
            line_head = event_head(
                event.position, execution_id, event.version, head.hash.hex(), head.tenant,
                head.agent_id, event.topic, stamp, _actor(event.topic, data, head),
            )  # fmt: skip
            hash_ = sha256(line_head + event.state).digest()
            tenant_hash = sha256(tenant.hash + hash_).digest()
            links.append(
                f"{event.position}\t{copy_text(head.tenant)}\t{execution_id}\t"
                f"{copy_text(head.agent_id)}\t{stamp}\t\\\\x{line_head.hex()}\t"
                f"\\\\x{hash_.hex()}\t\\\\x{tenant.hash.hex()}\t\\\\x{tenant_hash.hex()}\n".encode()
            )
            head.version, head.hash = event.version, hash_
            heads[event.execution_id] = changed[event.execution_id] = head
            tenants[head.tenant] = TenantHead(event.position, tenant_hash, tenant.events + 1)
        self.view.save(curs, links, changed, tenants)
        self.known.update(changed)
        self.tenants.update(tenants)

    def _heads(self, curs: Cursor[DictRow], stored: list[Stored]) -> dict[str, Head]:
        earlier = list({e.execution_id for e in stored if e.topic != CREATED})
        heads, missing = remembered(self.known, earlier)
        heads.update(self.view.heads(curs, missing))
        return heads

    def _tenant(self, curs: Cursor[DictRow], tenant: str) -> TenantHead:
        head = self.tenants.get(tenant) or self.view.tenant_head(curs, tenant)
        return head or TenantHead(0, GENESIS, 0)


def _bad(event: Stored, reason: str) -> BadEvent:
    return BadEvent(AuditChainView.name, event.position, event.topic, reason)


class Fields(msgspec.Struct):
    """The few fields of a stored state the chain reads (the rest is parsed, not kept)."""

    timestamp: Any = None
    tenant: Any = None
    agent_id: Any = None
    created_by: Any = None
    worker_id: Any = None
    actor: Any = None
    lease: Any = msgspec.UNSET


FIELDS = msgspec.json.Decoder(Fields)


def _state(event: Stored) -> Fields:
    """The fields of a state that is a JSON object, or ``BadEvent``. msgspec first (it
    keeps only these fields); the standard library for what it refuses (NaN, say)."""
    if b"\n" in event.state:
        raise _bad(event, "its state holds a raw line break (not compact JSON)")
    try:
        return FIELDS.decode(event.state)
    except msgspec.DecodeError:
        pass
    try:
        data = json.loads(event.state.decode())
    except ValueError as error:  # UnicodeDecodeError is a ValueError too
        raise _bad(event, f"its state is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise _bad(event, "its state is not a JSON object")
    return Fields(**{name: data[name] for name in Fields.__struct_fields__ if name in data})


def _text(event: Stored, data: Fields, name: str) -> str:
    value = getattr(data, name)
    if not isinstance(value, str):
        raise _bad(event, f"field {name!r} is missing or not text")
    return value


def _timestamp(event: Stored, data: Fields) -> str:
    """The event's time in UTC, as the line shows it."""
    stamp = data.timestamp
    text = stamp.get("_data_") if isinstance(stamp, dict) else None
    try:
        moment = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or not isinstance(text, str):
        raise _bad(event, "its timestamp is missing or not an ISO time with a zone")
    if len(text) == 32 and text[10] == "T" and text.endswith("+00:00"):  # the store's own form
        return text[:26] + "Z"
    return fmt.utc_text(moment)


def _actor(topic: str, data: Fields, head: Head) -> str:
    """Who did it, as the line shows it (JSON text): the person or policy an operator
    action names; who created it; the worker that holds the execution for a worker's
    report; the system for an expired lease."""
    if topic == CREATED:
        actor = data.created_by
    elif isinstance(data.actor, dict):
        actor = data.actor
    elif topic == LEASE_EXPIRED:
        return SYSTEM_ACTOR
    elif topic == PICKED_UP or data.lease is not msgspec.UNSET:
        return _actor_text((("id", head.worker_id or ""), ("kind", "worker")))
    else:
        return "null"
    if isinstance(actor, dict) and all(isinstance(v, str) for v in actor.values()):
        return _actor_text(tuple(sorted(actor.items())))
    return fmt.json_text(actor)


@lru_cache(maxsize=4096)
def _actor_text(items: tuple[tuple[str, str], ...]) -> str:
    return fmt.json_text(dict(items))
