"""Time travel: the board as it stood at a past log position or a past time.

Which status each execution was in at position P comes from the status intervals view
(the interval with ``entered_position <= P < left_position``); the order and the
filters use the board's immutable card fields (priority, created_at, agent, ...). The
cards shown are then folded, with the board's own code, from each execution's stored
events up to P, so every field is as it was, not as it is. A time maps to the last
log position whose event happened at or before it, by binary search over the log
(event timestamps rise with positions, up to the clock skew between writers).

Counts are counted here (there is no per-position count to keep), so an as_of board
costs a scan of the tenant's intervals up to P: an occasional question, not the live
board.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification
from eventsourcing.postgres import PostgresDatastore
from psycopg import sql

from domain.application import ExecutionService
from projections.engine.errors import InvalidQuery, ProjectionError
from projections.engine.log import LoggedEvent, LogReader
from projections.engine.view import APPLICATION
from projections.views.board_queries import Board, Column, check_limit
from projections.views.card import Card, fold
from projections.views.filters import STATUSES, ExecutionFilter
from projections.views.timeline import EVENTS_TABLE

AT_POSITION = """
si.tenant = %(tenant)s AND si.entered_position <= %(position)s
AND (si.left_position IS NULL OR si.left_position > %(position)s)"""
STATUS_AT_SQL = "si.status = ANY(%(status_at)s)"
OVERDUE_AT_SQL = (
    "b.deadline < %(now)s AND si.status IN ('pending', 'running', 'requires_input', 'blocked')"
)
COUNTS_AT = """
SELECT si.status, count(*) AS count
FROM status_intervals si JOIN board_cards b ON b.id = si.execution_id
WHERE {at}{filters}
GROUP BY si.status
"""
ITEMS_AT = """
SELECT c.execution_id FROM unnest(%(statuses)s::text[]) AS s(status)
CROSS JOIN LATERAL (
    SELECT si.execution_id FROM status_intervals si JOIN board_cards b ON b.id = si.execution_id
    WHERE si.status = s.status AND {at}{filters}
    ORDER BY b.priority_rank, b.created_at, b.id LIMIT %(limit)s
) AS c
"""
VIEW_POSITIONS = """
SELECT least(
    (SELECT notification_id FROM status_intervals_tracking WHERE application_name = %(app)s),
    (SELECT notification_id FROM board_tracking WHERE application_name = %(app)s)
) AS position
"""
# The event at a position, or, where the position fell in a gap of the log (a rolled-back
# insert leaves one), the last event before it: the board as of a position is as of then.
EVENT_AT_OR_BEFORE = """
SELECT notification_id AS id, originator_id, originator_version, topic, state FROM {events}
WHERE notification_id <= %s ORDER BY notification_id DESC LIMIT 1
"""
EVENTS_UP_TO = """
SELECT notification_id AS id, originator_id, originator_version, topic, state FROM {events}
WHERE originator_id = ANY(%s) AND notification_id <= %s
ORDER BY originator_id, originator_version
"""


class TimeTravel:
    def __init__(self, service: ExecutionService, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        self.reader = LogReader(service.recorder, service.mapper)
        self._events_up_to = sql.SQL(EVENTS_UP_TO).format(events=sql.Identifier(EVENTS_TABLE))
        self._event_at = sql.SQL(EVENT_AT_OR_BEFORE).format(events=sql.Identifier(EVENTS_TABLE))

    def board(
        self,
        tenant: str,
        *,
        position: int | None = None,
        at: datetime | None = None,
        where: ExecutionFilter | None = None,
        limit: int = 20,
    ) -> Board:
        """The board at ``position`` or at time ``at`` (give one of them)."""
        if (position is None) == (at is None):
            raise InvalidQuery("as_of takes either a log position or a time")
        if at is not None and at.tzinfo is None:
            raise InvalidQuery("as_of needs a time zone (e.g. 2025-01-31T12:00:00Z)")
        check_limit(limit)
        newest = self._views_position()
        if at is not None:
            position = self.position_at(at, newest)
        position = min(position or 0, newest)
        moment = at or self._time_of(position) or datetime.now(UTC)
        where = where or ExecutionFilter()
        statuses = list(where.status or STATUSES)
        clauses, params = replace(where, status=(), overdue=False).where(moment)
        if where.status:
            clauses.append(STATUS_AT_SQL)
            params["status_at"] = statuses
        if where.overdue:
            clauses.append(OVERDUE_AT_SQL)
            params["now"] = moment
        filters = "".join(f" AND {clause}" for clause in clauses)
        params.update(tenant=tenant, position=position, statuses=statuses, limit=limit)
        with self.datastore.get_connection() as conn:
            counts = {
                row["status"]: int(row["count"])
                for row in conn.execute(COUNTS_AT.format(at=AT_POSITION, filters=filters), params)
            }
            rows = conn.execute(ITEMS_AT.format(at=AT_POSITION, filters=filters), params)
            shown = [row["execution_id"] for row in rows]
        cards = self.cards_at(shown, position)
        by_status: dict[str, list[Card]] = defaultdict(list)
        for execution_id in shown:
            card = cards[execution_id]
            by_status[card.status].append(card)
        columns = [
            Column(status, counts.get(status, 0), by_status[status], None) for status in statuses
        ]
        return Board(columns, position, moment)

    def cards_at(self, execution_ids: list[UUID], position: int) -> dict[UUID, Card]:
        """Each execution's card as it was at ``position``, folded from its events."""
        if not execution_ids:
            return {}
        with self.datastore.get_connection() as conn:
            rows = conn.execute(self._events_up_to, (execution_ids, position)).fetchall()
        events: dict[UUID, list[tuple[int, Any]]] = defaultdict(list)
        for row in rows:
            entry = self.reader.decode_one(Notification(**{**row, "state": bytes(row["state"])}))
            if not isinstance(entry, LoggedEvent):
                raise ProjectionError(f"cannot replay position {entry.position}: {entry.reason}")
            events[row["originator_id"]].append((entry.position, entry.event))
        cards = {execution_id: fold(history) for execution_id, history in events.items()}
        return {execution_id: card for execution_id, card in cards.items() if card is not None}

    def position_at(self, at: datetime, newest: int) -> int:
        """The last log position (up to ``newest``) whose event happened at or before ``at``."""
        low, high = 0, newest
        while low < high:
            middle = (low + high + 1) // 2
            found = self.reader.recorder.select_notifications(middle, 1, stop=high)
            if not found:
                high = middle - 1
            elif self._timestamp(found[0]) <= at:
                low = found[0].id
            else:
                high = middle - 1
        return low

    def _views_position(self) -> int:
        with self.datastore.get_connection() as conn:
            row = conn.execute(VIEW_POSITIONS, {"app": APPLICATION}).fetchone()
        return int(row["position"]) if row and row["position"] is not None else 0

    def _time_of(self, position: int) -> datetime | None:
        if not position:
            return None
        with self.datastore.get_connection() as conn:
            row = conn.execute(self._event_at, (position,)).fetchone()
        return (
            self._timestamp(Notification(**{**row, "state": bytes(row["state"])})) if row else None
        )

    def _timestamp(self, notification: Notification) -> datetime:
        entry = self.reader.decode_one(notification)
        if not isinstance(entry, LoggedEvent):
            raise ProjectionError(f"cannot read the time of position {entry.position}")
        timestamp: datetime = entry.event.timestamp
        return timestamp
