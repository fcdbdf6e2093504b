"""Filters and keyset cursors for the board and the execution list.

Every filter is a named SQL fragment over ``board_cards b``; the fragments of the
filters a caller set are joined with AND, so a combination always yields the same
statement text (and PostgreSQL plans it once per connection).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from domain.execution.values import ExecutionType, Status
from projections.engine.errors import InvalidQuery

STATUSES = tuple(status.value for status in Status)

FILTER_SQL = {
    "status": "b.status = ANY(%(status)s)",
    # one status: an equality, so the (tenant, status, rank) index yields rows in list order
    "one_status": "b.status = %(status)s",
    "agent": "b.agent_id = %(agent)s",
    "team": "b.team_id = %(team)s",
    "type": "b.type = %(type)s",
    "queue": "b.worker_queue = %(queue)s",
    "label": "b.labels @> %(label)s",
    "label_key": "b.labels ? %(label_key)s",
    "created_by": "b.created_by->>'id' = %(creator)s AND b.created_by @> %(created_by)s",
    # the same status list as the partial index board_cards_overdue, so it is used
    "overdue": "b.deadline < %(now)s AND b.deadline IS NOT NULL "
    "AND b.status IN ('pending', 'running', 'requires_input', 'blocked')",
    "older_than": "b.created_at < %(created_before)s",
    "q": "b.prompt ILIKE %(q)s",
}
AFTER_CURSOR_SQL = (
    "(b.priority_rank, b.created_at, b.id) > (%(after_rank)s, %(after_at)s, %(after_id)s)"
)
ORDER_SQL = "ORDER BY b.priority_rank, b.created_at, b.id"

_LIKE_SPECIAL = re.compile(r"[\\%_]")
_OPEN = ("pending", "running", "requires_input", "blocked")
_AGE = re.compile(r"^([0-9]+)([smhdw])$")
MAX_AGE = timedelta(days=100 * 366)  # older than any execution; keeps now - age a date
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"2w"`` as a timedelta."""
    match = _AGE.match(text.strip())
    if not match:
        raise InvalidQuery(f"an age looks like 30m, 12h or 7d (got {text[:40]!r})")
    try:
        age: timedelta | None = timedelta(**{_AGE_UNITS[match[2]]: int(match[1])})
    except (OverflowError, ValueError):  # past what a timedelta (or int()) takes
        age = None
    if age is None or age > MAX_AGE:
        raise InvalidQuery(f"an age is at most {MAX_AGE.days}d (got {text[:40]!r})")
    return age


@dataclass(frozen=True, slots=True)
class ExecutionFilter:
    """What a caller may filter the board and the list by (all optional, ANDed)."""

    status: tuple[str, ...] = ()
    agent: str | None = None
    team: str | None = None
    type: str | None = None
    queue: str | None = None
    label: str | None = None  # "key=value" (indexed) or "key" (has the label)
    created_by: str | None = None  # "kind:id" or "id"
    overdue: bool = False
    older_than: timedelta | None = None
    q: str | None = None  # text in the prompt, case-insensitive

    def __post_init__(self) -> None:
        unknown = [status for status in self.status if status not in STATUSES]
        if unknown:
            raise InvalidQuery(f"status must be among {', '.join(STATUSES)} (got {unknown[0]!r})")
        if self.type is not None and self.type not in {t.value for t in ExecutionType}:
            raise InvalidQuery(f"type must be agent or team (got {self.type!r})")
        if self.older_than is not None and not timedelta(0) < self.older_than <= MAX_AGE:
            raise InvalidQuery(f"older_than must be positive and at most {MAX_AGE.days}d")

    @property
    def is_empty(self) -> bool:
        return self == ExecutionFilter()

    def where(self, now: datetime) -> tuple[list[str], dict[str, Any]]:
        """The SQL fragments and parameters of the filters that are set."""
        clauses: list[str] = []
        params: dict[str, Any] = {}

        def add(name: str, value: Any, param: str | None = None) -> None:
            clauses.append(FILTER_SQL[name])
            params[param or name] = value

        if len(self.status) == 1:
            add("one_status", self.status[0], "status")
        elif self.status:
            add("status", list(self.status))
        for name in ("agent", "team", "type", "queue"):
            if getattr(self, name) is not None:
                add(name, getattr(self, name))
        if self.label is not None:
            key, sep, value = self.label.partition("=")
            if sep:
                add("label", Jsonb({key: value}))
            else:
                add("label_key", key)
        if self.created_by is not None:
            kind, sep, actor_id = self.created_by.partition(":")
            creator = {"kind": kind, "id": actor_id} if sep else {"id": kind}
            add("created_by", Jsonb(creator))  # ->>'id' for its index, @> for the kind
            params["creator"] = creator["id"]
        if self.overdue:
            add("overdue", now, "now")
        if self.older_than is not None:
            add("older_than", now - self.older_than, "created_before")
        if self.q:
            add("q", "%" + _LIKE_SPECIAL.sub(r"\\\g<0>", self.q) + "%")
        return clauses, params

    def matches(self, card: Any, now: datetime) -> bool:
        """The same test as ``where`` on one card in memory (for live streams)."""
        if self.status and card.status not in self.status:
            return False
        for name, field in (("agent", "agent_id"), ("team", "team_id"), ("type", "type"),
                            ("queue", "worker_queue")):  # fmt: skip
            wanted = getattr(self, name)
            if wanted is not None and getattr(card, field) != wanted:
                return False
        return self._matches_more(card, now)

    def _matches_more(self, card: Any, now: datetime) -> bool:
        if self.label is not None:
            key, sep, value = self.label.partition("=")
            if key not in card.labels or (sep and card.labels[key] != value):
                return False
        if self.created_by is not None:
            kind, sep, actor_id = self.created_by.partition(":")
            wanted = {"kind": kind, "id": actor_id} if sep else {"id": kind}
            if any(card.created_by.get(k) != v for k, v in wanted.items()):
                return False
        if self.overdue and not (
            card.deadline is not None and card.deadline < now and card.status in _OPEN
        ):
            return False
        if self.older_than is not None and not card.created_at < now - self.older_than:
            return False
        return not self.q or self.q.lower() in card.prompt.lower()


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended, in the list's order: priority desc, created_at, id."""

    priority_rank: int
    created_at: datetime
    id: UUID

    def encode(self) -> str:
        raw = json.dumps([self.priority_rank, self.created_at.isoformat(), str(self.id)])
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            rank, created_at, card_id = json.loads(raw)
            return cls(int(rank), datetime.fromisoformat(created_at), UUID(card_id))
        except (ValueError, TypeError, binascii.Error):
            raise InvalidQuery("the cursor is not one this server handed out") from None

    @classmethod
    def after(cls, card: Any) -> Cursor:
        return cls(-card.priority, card.created_at, card.id)

    def params(self) -> dict[str, Any]:
        return {"after_rank": self.priority_rank, "after_at": self.created_at, "after_id": self.id}
