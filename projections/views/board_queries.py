"""Queries on the board view: the board, the filtered list, one card.

The board reads its cards, its column counts and its position in one statement (one
snapshot), so the counts, the cards and the position agree. Counts come from
``board_columns`` (kept by the projection); a filtered board's counts are counted per
request in a second statement. Rows come back as tuples in the card's column order:
with 7 columns of 26 cards, building dicts would cost more than PostgreSQL's part of the
query.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import tuple_row

from projections.engine.errors import InvalidQuery, NotFound
from projections.engine.view import APPLICATION
from projections.views.card import COLUMNS, JSON_COLUMN_INDEXES, JSON_COLUMNS, Card
from projections.views.filters import AFTER_CURSOR_SQL, ORDER_SQL, STATUSES, Cursor, ExecutionFilter

# JSON columns come back as text and are parsed here: psycopg's per-value jsonb loader
# costs more than the rest of a 182-card board together.
_CARD_COLUMNS = ", ".join(
    f"b.{name}::text" if name in JSON_COLUMNS else f"b.{name}" for name in COLUMNS
)
BOARD = """
SELECT m.position, m.counts, c.* FROM (
    SELECT
        (SELECT notification_id FROM board_tracking WHERE application_name = %(app)s)
            AS position,
        ({counts}) AS counts
) AS m
LEFT JOIN LATERAL (
    SELECT column_cards.* FROM unnest(%(statuses)s::text[]) AS s(status)
    CROSS JOIN LATERAL (
        SELECT {columns} FROM board_cards b
        WHERE b.tenant = %(tenant)s AND b.status = s.status{filters}
        {order} LIMIT %(limit)s
    ) AS column_cards
) AS c ON true
"""
LIST_ITEMS = """
SELECT {columns} FROM board_cards b
WHERE b.tenant = %(tenant)s{filters}
{order} LIMIT %(limit)s
"""
# The counts the projection keeps, or, on a filtered board, counted in the same statement
# (one snapshot: the counts agree with the cards and the position).
KEPT_COUNTS = (
    "SELECT json_object_agg(status, count)::text FROM board_columns WHERE tenant = %(tenant)s"
)
FILTERED_COUNTS = (
    "SELECT json_object_agg(status, n)::text FROM (SELECT b.status, count(*) AS n "
    "FROM board_cards b WHERE b.tenant = %(tenant)s{filters} GROUP BY 1) AS f"
)
CHANGED_SINCE = """
SELECT {columns} FROM board_cards b
WHERE b.tenant = %(tenant)s AND b.position > %(after)s{filters}
ORDER BY b.position LIMIT %(limit)s
"""
BY_IDS = "SELECT {columns} FROM board_cards b WHERE b.id = ANY(%s)"
ONE_CARD = "SELECT {columns} FROM board_cards b WHERE b.tenant = %s AND b.id = %s"
# Every tenant's: for the lease monitor, which looks after all workers.
HELD = (
    "SELECT id, worker_id, updated_at FROM board_cards "
    "WHERE status IN ('running', 'requires_input', 'blocked')"
)
# Work waiting for a worker, per queue and priority band (as infra/nats.py bands them),
# every tenant's: the queue-depth metric. Cancelled work is no longer pending, so it is not
# counted (JetStream's count of undelivered messages kept it until a worker dropped it).
WAITING = """
SELECT worker_queue,
    CASE WHEN priority > 0 THEN 'high' WHEN priority < 0 THEN 'low' ELSE 'normal' END,
    count(*)
FROM board_cards WHERE status = 'pending' GROUP BY 1, 2
"""

MAX_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Column:
    status: str
    count: int  # exact: kept by the projection, or counted per request on a filtered board
    items: list[Card]
    next_cursor: str | None  # list?status=<status>&cursor=... pages on down the column


@dataclass(frozen=True, slots=True)
class Board:
    columns: list[Column]
    position: int  # the log position the board reflects
    as_of: datetime | None = None


@dataclass(frozen=True, slots=True)
class ExecutionPage:
    items: list[Card]
    next_cursor: str | None


def card_from(row: Sequence[Any]) -> Card:
    """A card from a row of ``_CARD_COLUMNS`` (its JSON columns as text)."""
    values = list(row)
    for index in JSON_COLUMN_INDEXES:
        if values[index] is not None:
            values[index] = parse_json(values[index])
    return Card(*values)


def parse_json(text: str) -> Any:
    """``json.loads``, remembering small flat objects: labels, ``created_by`` and most
    parameters repeat from card to card, and parsing them is most of a board's cost.
    Each caller gets its own copy."""
    if len(text) > 256:
        return json.loads(text)
    value, flat = _parse_small_json(text)
    if not flat:
        return json.loads(text)
    return dict(value) if isinstance(value, dict) else value


@lru_cache(maxsize=4096)
def _parse_small_json(text: str) -> tuple[Any, bool]:
    value = json.loads(text)
    scalars = (str, int, float, bool, type(None))
    flat = isinstance(value, scalars) or (
        isinstance(value, dict) and all(isinstance(v, scalars) for v in value.values())
    )
    return value, flat


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidQuery(f"limit must be between 1 and {MAX_LIMIT}")


def _and(clauses: Sequence[str]) -> str:
    return "".join(f" AND {clause}" for clause in clauses)


def page_of(cards: list[Card], limit: int) -> tuple[list[Card], str | None]:
    """The first ``limit`` cards, and a cursor when one more was fetched."""
    if len(cards) > limit:
        return cards[:limit], Cursor.after(cards[limit - 1]).encode()
    return cards, None


class BoardQueries:
    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore

    def board(
        self,
        tenant: str,
        where: ExecutionFilter | None = None,
        *,
        limit: int = 20,
        now: datetime | None = None,
    ) -> Board:
        where = where or ExecutionFilter()
        check_limit(limit)
        statuses = list(where.status or STATUSES)
        clauses, params = replace(where, status=()).where(now or datetime.now(UTC))
        filters = _and(clauses)
        counted = FILTERED_COUNTS.format(filters=filters) if clauses else KEPT_COUNTS
        sql = BOARD.format(columns=_CARD_COLUMNS, filters=filters, order=ORDER_SQL, counts=counted)
        params.update(app=APPLICATION, tenant=tenant, statuses=statuses, limit=limit + 1)
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            rows = cur.execute(sql, params, prepare=True).fetchall()
        position, counts = rows[0][0] or 0, json.loads(rows[0][1] or "{}")
        by_status: dict[str, list[Card]] = {status: [] for status in statuses}
        for row in rows:
            if row[2] is not None:
                card = card_from(row[2:])
                by_status[card.status].append(card)
        columns = []
        for status, cards in by_status.items():
            items, next_cursor = page_of(cards, limit)
            count = int(counts.get(status, 0))
            columns.append(Column(status, count, items, next_cursor))
        return Board(columns, int(position))

    def list(
        self,
        tenant: str,
        where: ExecutionFilter | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
        now: datetime | None = None,
    ) -> ExecutionPage:
        where = where or ExecutionFilter()
        check_limit(limit)
        clauses, params = where.where(now or datetime.now(UTC))
        if cursor is not None:
            clauses.append(AFTER_CURSOR_SQL)
            params.update(Cursor.decode(cursor).params())
        sql = LIST_ITEMS.format(columns=_CARD_COLUMNS, filters=_and(clauses), order=ORDER_SQL)
        params.update(tenant=tenant, limit=limit + 1)
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            rows = cur.execute(sql, params, prepare=True).fetchall()
        items, next_cursor = page_of([card_from(row) for row in rows], limit)
        return ExecutionPage(items, next_cursor)

    def changed_since(
        self, tenant: str, where: ExecutionFilter, position: int, *, limit: int
    ) -> Sequence[Card]:
        """Cards whose last change came after ``position``, in log order: what a stream
        that resumes from ``position`` must replay."""
        clauses, params = where.where(datetime.now(UTC))
        sql = CHANGED_SINCE.format(columns=_CARD_COLUMNS, filters=_and(clauses))
        params.update(tenant=tenant, after=position, limit=limit)
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            return [card_from(row) for row in cur.execute(sql, params, prepare=True)]

    def cards(self, ids: Sequence[UUID]) -> dict[UUID, Card]:
        """The cards of these executions, whatever their tenant (callers check it)."""
        sql = BY_IDS.format(columns=_CARD_COLUMNS)
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cards = [card_from(row) for row in cur.execute(sql, (list(ids),), prepare=True)]
        return {card.id: card for card in cards}

    def get(self, tenant: str, execution_id: UUID) -> Card:
        sql = ONE_CARD.format(columns=_CARD_COLUMNS)
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            row = cur.execute(sql, (tenant, execution_id), prepare=True).fetchone()
        if row is None:
            raise NotFound(f"execution {execution_id} does not exist")
        return card_from(row)

    def waiting(self) -> dict[tuple[str, str], int]:
        """Pending executions per (queue, band), in every tenant."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            return {(row[0], row[1]): int(row[2]) for row in cur.execute(WAITING).fetchall()}

    def held(self) -> Sequence[tuple[UUID, str | None, datetime]]:
        """Executions a worker holds, in every tenant: (id, worker, last change)."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            return [(row[0], row[1], row[2]) for row in cur.execute(HELD).fetchall()]
