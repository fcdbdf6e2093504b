"""The base of every view: a tracking recorder that also owns the view's tables and SQL.

A page of events is applied in one transaction that (1) takes the view's advisory lock
in shared mode, so a rebuild can pause the live runner by taking it exclusively,
(2) checks under a row lock that the tracking position is the one the page was read
after, (3) writes the view's rows, and (4) records the page's last position as the
tracking record. So each page lands exactly once, whoever else is running.

Table and index names are templates (``{board_cards}``, ``{board_cards_by_column}``):
a view built with ``suffix="__next"`` writes fresh tables that a rebuild swaps in.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from string import Formatter
from typing import Any, ClassVar

from eventsourcing.persistence import ProgrammingError, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from domain.application import ExecutionService
from projections.engine.errors import PositionMoved
from projections.engine.listener import VIEWS_CHANNEL

APPLICATION = ExecutionService.name  # tracking records name the application they follow
LOCK_NAMESPACE = 0x61627677  # first key of every projection advisory lock
SCHEMA_LOCK = 0x61627363  # creating tables: one process at a time

# A page transaction starts with one statement: a statement timeout, index joins only (a
# page joins its keys, a few or a few thousand in a temp table without statistics,
# against a big table: an index lookup per key is always right, and without this the
# planner may hash the whole table), then the view's advisory lock, shared.
BEGIN_PAGE = """
SELECT set_config('statement_timeout', '60s', true),
    set_config('enable_hashjoin', 'off', true),
    set_config('enable_mergejoin', 'off', true),
    pg_advisory_xact_lock_shared(%s, %s)
"""
LOCK_VIEW_EXCLUSIVE = "SELECT pg_advisory_xact_lock(%s, %s)"
LOCK_SCHEMA = "SELECT pg_advisory_xact_lock(%s)"
# ``tableoid`` tells which table answered: a rebuild swaps in new tables under the same
# names, and a runner must then forget what it remembers of the old ones.
SELECT_POSITION_FOR_UPDATE = (
    "SELECT notification_id, tableoid::bigint AS table_oid FROM {tracking} "
    "WHERE application_name = %s FOR UPDATE"
)
INSERT_FIRST_POSITION = (
    "INSERT INTO {tracking} (application_name, notification_id) VALUES (%s, 0) "
    "ON CONFLICT (application_name) DO NOTHING"
)
SELECT_POSITION = "SELECT notification_id FROM {tracking} WHERE application_name = %s"
# Readers in other processes (projections/engine/positions.py) hear of every page a live view
# commits, "<view> <position>" on VIEWS_CHANNEL, sent by the page's own transaction:
# delivered on commit.
ANNOUNCE = "SELECT pg_notify(%s, %s)"


def lock_key(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


class ViewRecorder(PostgresTrackingRecorder):
    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]
    """Base names of the tables this view owns, besides its tracking table."""
    create_tables: ClassVar[tuple[str, ...]]
    create_indexes: ClassVar[tuple[str, ...]] = ()
    """Secondary indexes: a rebuild creates them after the bulk load, which is faster."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        suffix: str = "",
        tracking_table_name: str | None = None,
    ) -> None:
        expected = f"{self.name}_tracking{suffix}"
        if tracking_table_name not in (None, expected):  # eventsourcing's factory names it
            raise ProgrammingError(f"view {self.name!r} tracks in {expected!r}")
        super().__init__(datastore, tracking_table_name=expected)
        self.suffix = suffix
        self._composed: dict[str, Composed] = {}
        self.lock_key = lock_key(self.tracking_table_name)
        self.with_indexes = True
        self.sql_create_statements.extend(self.sql(ddl) for ddl in self.create_tables)
        self._select_position = self.sql(SELECT_POSITION)
        self._select_position_for_update = self.sql(SELECT_POSITION_FOR_UPDATE)
        self._tracking_oid: int | None = None
        """The tracking table this recorder's last page found (see ``page_transaction``)."""

    # -- names ------------------------------------------------------------------------

    def table_names(self) -> list[str]:
        """The real names of this view's tables, tracking table last."""
        return [table + self.suffix for table in self.tables] + [self.tracking_table_name]

    def resolve(self, field: str) -> str:
        """``board_cards`` -> ``board_cards__next``; ``board_cards_by_column`` ->
        ``board_cards__next_by_column``: the suffix goes right after the table's name,
        so a swap can rename every index by its prefix."""
        if field == "tracking":
            return self.tracking_table_name
        matches = [table for table in self.tables if field.startswith(table)]
        if not matches:
            raise ProgrammingError(f"{field!r} names no table of view {self.name!r}")
        table = max(matches, key=len)
        return table + self.suffix + field[len(table) :]

    def sql(self, template: str) -> Composed:
        """``template`` with this view's table names (composed once: at live rates a view
        writes many small pages, and composing cost as much as a page's rows)."""
        composed = self._composed.get(template)
        if composed is None:
            fields = {name for _, name, _, _ in Formatter().parse(template) if name}
            composed = SQL(template).format(**{f: Identifier(self.resolve(f)) for f in fields})  # type: ignore[arg-type]
            self._composed[template] = composed
        return composed

    # -- tables -----------------------------------------------------------------------

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        curs.execute(LOCK_SCHEMA, (SCHEMA_LOCK,))
        super()._create_table(curs)
        if self.with_indexes:
            for ddl in self.create_indexes:
                curs.execute(self.sql(ddl))
        curs.execute(self.sql(INSERT_FIRST_POSITION), (APPLICATION,))

    def create_secondary_indexes(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for ddl in self.create_indexes:
                curs.execute(self.sql(ddl))
            for table in self.tables:
                curs.execute(SQL("ANALYZE {}").format(Identifier(self.resolve(table))))

    # -- positions ----------------------------------------------------------------------

    def position(self) -> int:
        """The last log position this view has applied (0: none yet)."""
        with self.datastore.get_connection() as conn:
            row = conn.execute(self._select_position, (APPLICATION,)).fetchone()
        return int(row["notification_id"]) if row else 0

    @contextmanager
    def page_transaction(self, after: int | None, last: int) -> Iterator[Cursor[DictRow]]:
        """One transaction for the page ``after < position <= last``, tracking included.
        ``after=None`` (a single event from eventsourcing's runner): any earlier position."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(BEGIN_PAGE, (LOCK_NAMESPACE, self.lock_key), prepare=True)
            row = curs.execute(
                self._select_position_for_update, (APPLICATION,), prepare=True
            ).fetchone()
            found = int(row["notification_id"]) if row else 0
            expected = last - 1 if after is None else after
            if (found != after) if after is not None else (found >= last):
                raise PositionMoved(self.name, expected, found)
            oid = int(row["table_oid"]) if row else None
            swapped = self._tracking_oid is not None and oid != self._tracking_oid
            self._tracking_oid = oid
            if swapped:  # a rebuild swapped fresh tables in at the position we expected:
                raise PositionMoved(self.name, expected, found, swapped=True)  # forget the old
            yield curs
            self._insert_tracking(curs, Tracking(APPLICATION, last))
            if not self.suffix:  # a rebuild's fresh tables are nobody's position yet
                curs.execute(ANNOUNCE, (VIEWS_CHANNEL, f"{self.name} {last}"), prepare=True)

    # -- writing helpers ----------------------------------------------------------------

    def copy_rows(
        self,
        curs: Cursor[DictRow],
        table: str,
        columns: Mapping[str, str],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        """COPY ``rows`` into ``table``; ``columns`` maps each column to its type, because
        binary COPY (three times faster than text for timestamps and UUIDs) needs them."""
        names = ", ".join(f'"{column}"' for column in columns)
        statement = self.sql(f"COPY {{{table}}} ({names}) FROM STDIN (FORMAT BINARY)")
        with curs.copy(statement) as copy:
            copy.set_types(list(columns.values()))
            for row in rows:
                copy.write_row(row)
