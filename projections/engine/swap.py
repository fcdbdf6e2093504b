"""Swapping a rebuilt view in: its fresh tables (``<table>__next``) take the live
tables' names, in one transaction, so readers see the old tables or the new ones."""

from __future__ import annotations

from psycopg import Cursor
from psycopg.errors import LockNotAvailable
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

NEXT, OLD = "__next", "__old"
TABLE_EXISTS = "SELECT to_regclass(%s) IS NOT NULL AS found"
INDEXES_OF = """
SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = to_regclass(%s)
"""
RENAME_TABLE = "ALTER TABLE {} RENAME TO {}"
DROP_TABLE = "DROP TABLE IF EXISTS {}"
RENAME_INDEX = "ALTER INDEX {} RENAME TO {}"
LOCK_TABLE = "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE NOWAIT"
LOCK_PATIENCE = 5.0  # seconds of trying to lock the live tables before the swap starts over


def lock_existing(
    curs: Cursor[DictRow], tables: list[str], patience: float = LOCK_PATIENCE
) -> None:
    """Lock each of ``tables`` that exists, never waiting for one while holding another:
    all of them NOWAIT in a savepoint; if one is busy, let go of those taken and try
    again a moment later (a reader holds them for milliseconds). Waiting while holding
    one deadlocked with a board query (a test caught it: the reader held one of the
    board's tables and waited for another the swap held, although the swap takes them in
    the order the query names them)."""
    existing = []
    for table in tables:
        found = curs.execute(TABLE_EXISTS, (table,)).fetchone()
        if found and found["found"]:
            existing.append(table)
    for attempt in Retrying(
        retry=retry_if_exception_type(LockNotAvailable),
        wait=wait_exponential(multiplier=0.001, max=0.05),  # 1 ms doubling to 50 ms
        stop=stop_after_delay(patience),
        reraise=True,  # the swap is tried again from the start
    ):
        with attempt, curs.connection.transaction():  # a savepoint
            for table in existing:
                curs.execute(SQL(LOCK_TABLE).format(Identifier(table)))


def drop_existing(
    curs: Cursor[DictRow], tables: list[str], patience: float = LOCK_PATIENCE
) -> None:
    """Drop each of ``tables`` that exists, all locked first as ``lock_existing`` locks them.
    Dropping them one by one, each waiting for its lock, deadlocked with a reader: a
    prepared board query that planned before the swap locks the tables it names by their
    old identity (now ``__old``), in its own order, while the drop held one of them and
    waited for another (``test_rebuild_under_reads.py`` caught it in one swap of ~50)."""
    lock_existing(curs, tables, patience)
    for table in tables:
        curs.execute(SQL(DROP_TABLE).format(Identifier(table)))


def swap_in(curs: Cursor[DictRow], live: str) -> None:
    """``live`` -> ``live__old`` and ``live__next`` -> ``live``, with their indexes."""
    old, new = live + OLD, live + NEXT
    found = curs.execute(TABLE_EXISTS, (live,)).fetchone()
    if found and found["found"]:
        _rename(curs, live, old)
    _rename(curs, new, live)


def _rename(curs: Cursor[DictRow], table: str, to: str) -> None:
    for row in curs.execute(INDEXES_OF, (table,)).fetchall():
        index = row["relname"]
        if index.startswith(table):
            renamed = to + index[len(table) :]
            curs.execute(SQL(RENAME_INDEX).format(Identifier(index), Identifier(renamed)))
    curs.execute(SQL(RENAME_TABLE).format(Identifier(table), Identifier(to)))
