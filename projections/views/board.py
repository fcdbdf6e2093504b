"""The board: one card per execution, and the number of cards in each column.

A page groups its events by execution and folds them into cards in memory (cards it
does not remember are loaded in one query); the cards of new executions go in with one
COPY, the changed fields of the others through a temp table and one UPDATE, and each
column's count moves by the page's net change in one statement: counts are kept by the
projection, never counted.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar
from uuid import UUID

from cachetools import LRUCache
from psycopg import Cursor
from psycopg.rows import DictRow

from projections.engine.errors import BadEvent
from projections.engine.log import LoggedEvent, by_execution, is_created
from projections.engine.projection import PageProjection, remembered
from projections.engine.view import ViewRecorder
from projections.views.card import CHANGE_TYPES, CHANGING_COLUMNS, COLUMN_TYPES, COLUMNS, Card

CREATE_CARDS = """
CREATE TABLE IF NOT EXISTS {board_cards} (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    type text NOT NULL,
    agent_id text NOT NULL,
    team_id text,
    worker_queue text NOT NULL,
    prompt text NOT NULL,
    parameters jsonb NOT NULL,
    priority integer NOT NULL,
    -- priority descending as an ascending key, so that one row comparison
    -- (priority_rank, created_at, id) > (...) pages through one index
    priority_rank integer GENERATED ALWAYS AS (-priority) STORED,
    labels jsonb NOT NULL,
    status text NOT NULL,
    attempt integer NOT NULL,
    worker_id text,
    created_by jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    deadline timestamptz,
    parent_execution_id uuid,
    not_before timestamptz,
    result jsonb,
    error text,
    failure_reason text,
    completion_notes text,
    question text,
    pending_input jsonb,
    cancel_requested boolean NOT NULL,
    blocked jsonb,
    last_tool text,
    last_tool_call_id text,
    last_tool_outcome text,
    status_entered_at timestamptz NOT NULL,
    version integer NOT NULL,
    pipeline jsonb,
    position bigint NOT NULL
) WITH (fillfactor = 85)
"""
# Cards stored before a card showed its parent, question and block gain the columns (empty
# until a rebuild).
ADD_COLUMNS = (
    "ALTER TABLE {board_cards} ADD COLUMN IF NOT EXISTS parent_execution_id uuid, "
    "ADD COLUMN IF NOT EXISTS pending_input jsonb, ADD COLUMN IF NOT EXISTS blocked jsonb"
)
CREATE_COLUMNS = """
CREATE TABLE IF NOT EXISTS {board_columns} (
    tenant text NOT NULL,
    status text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (tenant, status)
)
"""
_KEY = "priority_rank, created_at, id"
CREATE_INDEXES = (
    f"CREATE INDEX IF NOT EXISTS {{board_cards_by_column}} ON {{board_cards}} "
    f"(tenant, status, {_KEY})",
    f"CREATE INDEX IF NOT EXISTS {{board_cards_by_rank}} ON {{board_cards}} (tenant, {_KEY})",
    f"CREATE INDEX IF NOT EXISTS {{board_cards_by_agent}} ON {{board_cards}} "
    f"(tenant, agent_id, {_KEY})",
    f"CREATE INDEX IF NOT EXISTS {{board_cards_by_agent_column}} ON {{board_cards}} "
    f"(tenant, agent_id, status, {_KEY})",
    f"CREATE INDEX IF NOT EXISTS {{board_cards_by_queue}} ON {{board_cards}} "
    f"(tenant, worker_queue, {_KEY})",
    f"CREATE INDEX IF NOT EXISTS {{board_cards_by_team}} ON {{board_cards}} "
    f"(tenant, team_id, {_KEY}) WHERE team_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS {board_cards_overdue} ON {board_cards} (tenant, deadline) "
    "WHERE deadline IS NOT NULL "
    "AND status IN ('pending', 'running', 'requires_input', 'blocked')",
    "CREATE INDEX IF NOT EXISTS {board_cards_waiting} ON {board_cards} "
    "(worker_queue, priority) WHERE status = 'pending'",
    "CREATE INDEX IF NOT EXISTS {board_cards_by_label} ON {board_cards} "
    "USING gin (labels jsonb_path_ops)",
    f"CREATE INDEX IF NOT EXISTS {{board_cards_by_creator}} ON {{board_cards}} "
    f"(tenant, (created_by->>'id'), {_KEY})",
)

# A board made before pipelines (DESIGN §12) gains the column; its cards keep null there
# until a rebuild, which fills it from the stored Created events.
ADD_PIPELINE = "ALTER TABLE {board_cards} ADD COLUMN IF NOT EXISTS pipeline jsonb"
_COLUMN_LIST = ", ".join(COLUMNS)
SELECT_CARDS = f"SELECT {_COLUMN_LIST} FROM {{board_cards}} WHERE id = ANY(%s)"
CREATE_CHANGES = (
    "CREATE TEMP TABLE IF NOT EXISTS {board_cards_changes} ("
    + ", ".join(f"{name} {kind}" for name, kind in CHANGE_TYPES.items())
    + ") ON COMMIT DELETE ROWS"
)
UPDATE_CARDS = (
    "UPDATE {board_cards} AS b SET "
    + ", ".join(f"{name} = c.{name}" for name in CHANGING_COLUMNS)
    + " FROM {board_cards_changes} AS c WHERE b.id = c.id"
)
ADD_TO_COLUMNS = """
INSERT INTO {board_columns} AS c (tenant, status, count)
SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[])
ON CONFLICT (tenant, status) DO UPDATE SET count = c.count + EXCLUDED.count
"""
# An emptied column has no row, as if it never had cards: a rebuild, whose pages end
# elsewhere, must leave the same rows as the live view.
DROP_EMPTY_COLUMNS = "DELETE FROM {board_columns} WHERE count = 0"


class BoardView(ViewRecorder):
    name = "board"
    tables = ("board_cards", "board_columns")
    create_tables = (CREATE_CARDS, ADD_COLUMNS, ADD_PIPELINE, CREATE_COLUMNS)
    create_indexes = CREATE_INDEXES

    def load_cards(self, curs: Cursor[DictRow], ids: list[UUID]) -> dict[UUID, Card]:
        if not ids:
            return {}
        rows = curs.execute(self.sql(SELECT_CARDS), (ids,), prepare=True).fetchall()
        return {row["id"]: Card.from_row(row) for row in rows}

    def insert_cards(self, curs: Cursor[DictRow], cards: list[Card]) -> None:
        """Cards of executions created in this page: straight in, with one COPY."""
        if cards:
            self.copy_rows(curs, "board_cards", COLUMN_TYPES, (card.as_row() for card in cards))

    def update_cards(self, curs: Cursor[DictRow], cards: list[Card]) -> None:
        """Cards of earlier executions: only what events change, through a temp table."""
        if cards:
            curs.execute(self.sql(CREATE_CHANGES))
            changes = (card.changes() for card in cards)
            self.copy_rows(curs, "board_cards_changes", CHANGE_TYPES, changes)
            curs.execute(self.sql(UPDATE_CARDS), prepare=True)

    def add_to_columns(self, curs: Cursor[DictRow], changes: Counter[tuple[str, str]]) -> None:
        changed = [(tenant, status, n) for (tenant, status), n in changes.items() if n]
        if changed:
            tenants, statuses, counts = map(list, zip(*changed, strict=True))
            curs.execute(self.sql(ADD_TO_COLUMNS), (tenants, statuses, counts), prepare=True)
            if any(n < 0 for n in counts):
                curs.execute(self.sql(DROP_EMPTY_COLUMNS), prepare=True)


class BoardProjection(PageProjection[BoardView]):
    name = "board"
    decoded: ClassVar[frozenset[str] | None] = None  # every event moves its card's clock
    can_write_behind = True
    cache_size = 50_000

    def __init__(self, view: BoardView) -> None:
        super().__init__(view)
        self.cards: LRUCache[UUID, Card] = LRUCache(self.cache_size)
        self.unsaved: dict[UUID, Card] = {}
        """Write-behind: cards changed since the last save, each written once by it."""
        self.unstored: set[UUID] = set()
        """... of which these have no row yet."""

    def forget(self) -> None:
        self.cards.clear()
        self.unsaved.clear()
        self.unstored.clear()

    def apply(self, curs: Cursor[DictRow], events: list[LoggedEvent]) -> None:
        histories = by_execution(events)
        earlier = [i for i, history in histories.items() if not is_created(history[0])]
        cards = self._find(curs, earlier)
        created: list[Card] = []
        updated: list[Card] = []
        changes: Counter[tuple[str, str]] = Counter()
        for execution_id, history in histories.items():
            first = history[0]
            if is_created(first):
                card = Card.created(first.event, first.position)
                created.append(card)
                history = history[1:]  # noqa: PLW2901 (the rest of it)
            elif (found := cards.get(execution_id)) is not None:
                card = found
                updated.append(card)
                changes[(card.tenant, card.status)] -= 1
            else:
                raise BadEvent(
                    self.name, first.position, first.topic,
                    f"execution {execution_id} has no card (its Created event is missing)",
                )  # fmt: skip
            for entry in history:
                card.apply(entry.event, entry.position)
            changes[(card.tenant, card.status)] += 1
        self.view.add_to_columns(curs, changes)
        self.unsaved.update((card.id, card) for card in created + updated)
        self.unstored.update(card.id for card in created)
        if not self.write_behind or len(self.unsaved) >= self.hold_limit:
            self._save(curs)

    def _save(self, curs: Cursor[DictRow]) -> None:
        """Write each card changed since the last save, once: live, that is every page;
        in a rebuild's write-behind, however many pages changed it (the pages of a
        replay rarely fold two events of one execution, so this turns an UPDATE per
        event into one row per card)."""
        unstored = self.unstored
        self.view.insert_cards(curs, [c for i, c in self.unsaved.items() if i in unstored])
        self.view.update_cards(curs, [c for i, c in self.unsaved.items() if i not in unstored])
        self.cards.update(self.unsaved)
        self.unsaved = {}
        self.unstored = set()

    def _find(self, curs: Cursor[DictRow], ids: list[UUID]) -> dict[UUID, Card]:
        """Cards as they stand: held back, remembered, or read from the view."""
        held = self.unsaved
        cards, missing = remembered(self.cards, [i for i in ids if i not in held] if held else ids)
        if held:
            cards.update((i, card) for i in ids if (card := held.get(i)) is not None)
        cards.update(self.view.load_cards(curs, missing))
        return cards
