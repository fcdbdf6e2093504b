"""Rebuild: replay the log from position 0 into fresh tables, then swap them in.

1. Lock: a session advisory lock per view, so two rebuilds of one view never overlap.
2. Replay: fresh tables (``<table>__next``) with their own tracking table and no
   secondary indexes; each page of the log is decoded once and applied to every view
   being rebuilt, in that view's own transaction with its tracking record.
3. Index: build the secondary indexes on the full tables (much faster than row by
   row), ANALYZE, and replay what arrived meanwhile.
4. Swap, in one transaction: take each live view's advisory lock exclusively (its live
   runner finishes the page it is in, then waits), replay the last few events into the
   fresh tables, and rename tables and indexes: live -> ``__old``, ``__next`` -> live.
   Readers see the old tables or the new ones, never a mix. Let go, the live runner
   finds the new tracking position and carries on from there.
5. Drop the ``__old`` tables.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from eventsourcing.persistence import OperationalError
from eventsourcing.postgres import PostgresDatastore

from domain.application import ExecutionService
from projections.engine.control import Control
from projections.engine.errors import ProjectionError, RebuildInProgress
from projections.engine.log import LogReader, Page
from projections.engine.registry import AnyProjection, make_projection, view_names
from projections.engine.swap import NEXT, OLD, drop_existing, lock_existing, swap_in
from projections.engine.view import LOCK_NAMESPACE, LOCK_VIEW_EXCLUSIVE, lock_key

log = logging.getLogger(__name__)

REBUILD_NAMESPACE = 0x61627262
SWAP_ATTEMPTS = 5

TRY_REBUILD_LOCK = "SELECT pg_try_advisory_lock(%s, %s) AS locked"
REBUILD_UNLOCK = "SELECT pg_advisory_unlock(%s, %s)"
SWAP_LOCK_TIMEOUT = "SET LOCAL lock_timeout = '5s'"
DROP_PATIENCE = 60.0  # seconds to wait for readers of the old tables to let go of them
SWAP_ORDER = ("status_intervals", "tool_calls", "board")


@dataclass(frozen=True, slots=True)
class RebuildProgress:
    phase: str  # replaying, indexing, swapping, done
    position: int
    head: int
    events: int
    seconds: float


@dataclass(frozen=True, slots=True)
class RebuildReport:
    views: list[str]
    events: int
    position: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


Progress = Callable[[RebuildProgress], None]


def rebuild(
    service: ExecutionService,
    datastore: PostgresDatastore,
    name: str | None = None,
    *,
    page_size: int = 5000,
    progress: Progress | None = None,
) -> RebuildReport:
    """Rebuild the named view (all views when ``name`` is None) while the live ones
    keep serving; returns how many events it replayed, and how fast."""
    return rebuild_views(service, datastore, view_names(name), page_size, progress)


def rebuild_views(
    service: ExecutionService,
    datastore: PostgresDatastore,
    names: list[str],
    page_size: int = 5000,
    progress: Progress | None = None,
) -> RebuildReport:
    """Rebuild ``names`` in this process, each page read once and applied to each."""
    with rebuild_locks(datastore, names), _no_cyclic_collections():
        return _Rebuild(service, datastore, names, page_size, progress).run()


@contextmanager
def _no_cyclic_collections() -> Iterator[None]:
    """A replay makes millions of short-lived objects and next to no reference cycles
    (ten unreachable objects after replaying 220,000 events into any view): reference
    counting frees them all. The cycle collector's passes over them cost the replay a
    sixth of its time even when made 150 times rarer than by default, and a full
    collection that walks a server's long-lived objects (the writer's cache) stalls it
    for 100 ms or more. So it is off while a rebuild runs (and leaves the objects that
    existed before alone once back on), then restored."""
    enabled = gc.isenabled()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.unfreeze()


@contextmanager
def rebuild_locks(datastore: PostgresDatastore, names: list[str]) -> Iterator[None]:
    """Hold each view's rebuild lock, or raise ``RebuildInProgress`` naming one taken."""
    with datastore.get_connection() as conn:
        held: list[str] = []
        try:
            for name in names:
                row = conn.execute(TRY_REBUILD_LOCK, (REBUILD_NAMESPACE, lock_key(name))).fetchone()
                if not row or not row["locked"]:
                    raise RebuildInProgress(name)
                held.append(name)
            yield
        finally:
            for name in held:
                conn.execute(REBUILD_UNLOCK, (REBUILD_NAMESPACE, lock_key(name)))


class _Rebuild:
    def __init__(
        self,
        service: ExecutionService,
        datastore: PostgresDatastore,
        names: list[str],
        page_size: int,
        progress: Progress | None,
    ) -> None:
        self.datastore = datastore
        self.names = names
        self.page_size = page_size
        self.progress = progress or (lambda _: None)
        self.fresh: list[AnyProjection] = [make_projection(n, datastore, NEXT) for n in names]
        decoded = [projection.decoded for projection in self.fresh]
        topics = None if None in decoded else frozenset().union(*(t or () for t in decoded))
        self.reader = LogReader(service.recorder, service.mapper, topics)
        control = Control(datastore)
        self.skips = {n: control.skips(n) for n in names}
        self.pool = ThreadPoolExecutor(len(names), thread_name_prefix="rebuild")
        self.started = time.monotonic()
        self.position = 0
        self.events = 0

    def run(self) -> RebuildReport:
        with self.pool:
            return self._run()

    def _run(self) -> RebuildReport:
        self._drop(NEXT)
        self._drop(OLD)
        for projection in self.fresh:
            projection.view.with_indexes = False
            projection.view.create_table()
        self._replay("replaying")
        self._report("indexing")
        for projection in self.fresh:
            projection.view.create_secondary_indexes()
        self._replay("replaying")
        self._swap()
        self._drop(OLD)
        self._report("done")
        seconds = time.monotonic() - self.started
        log.info("rebuilt %s: %d events in %.1fs", ", ".join(self.names), self.events, seconds)
        return RebuildReport(self.names, self.events, self.position, seconds)

    def _report(self, phase: str) -> None:
        head = max(self.reader.head(), self.position)
        elapsed = time.monotonic() - self.started
        self.progress(RebuildProgress(phase, self.position, head, self.events, elapsed))

    def _replay(self, phase: str) -> None:
        """Apply pages to the fresh views until the log has no more; the last page writes
        whatever the views held back (``write_behind``)."""
        for page, last in _with_last(self.reader.pages(self.position, self.page_size)):
            applied = [
                self.pool.submit(_process, projection, page, self.skips[projection.name], last)
                for projection in self.fresh
            ]  # each view in its own transaction; while one waits on PostgreSQL, another runs
            for future in applied:
                future.result()
            self.position = page.last
            self.events += page.size
            self._report(phase)

    def _swap(self) -> None:
        for attempt in range(1, SWAP_ATTEMPTS + 1):
            try:
                with self.datastore.transaction(commit=True) as curs:
                    for name in self.names:
                        live_key = lock_key(f"{name}_tracking")
                        curs.execute(LOCK_VIEW_EXCLUSIVE, (LOCK_NAMESPACE, live_key))
                    self._replay("swapping")  # the live runners wait meanwhile
                    curs.execute(SWAP_LOCK_TIMEOUT)
                    live = self._live_tables_in_lock_order()
                    # every table the swap renames, taken at once: it never waits for a
                    # lock while it holds one, so it cannot be part of a deadlock
                    lock_existing(curs, live + [table + NEXT for table in live])
                    for table in live:
                        swap_in(curs, table)
                return
            except OperationalError as error:
                log.warning("swap attempt %d failed (%s); trying again", attempt, error)
        raise ProjectionError(f"could not swap in the rebuilt {', '.join(self.names)}")

    def _live_tables_in_lock_order(self) -> list[str]:
        """The live tables, in the order every reader takes them: a view's tracking table
        before its other tables (the board reads tracking, columns, then cards), and
        status intervals before the board (time travel reads them in that order). Taking
        them in any other order could deadlock with a query running through the swap."""
        ordered = sorted(self.fresh, key=lambda projection: _swap_rank(projection.name))
        tables: list[str] = []
        for projection in ordered:
            names = [table.removesuffix(NEXT) for table in projection.view.table_names()]
            tables += [names[-1], *reversed(names[:-1])]
        return tables

    def _drop(self, suffix: str) -> None:
        tables = [
            table.removesuffix(NEXT) + suffix
            for projection in self.fresh
            for table in projection.view.table_names()
        ]
        with self.datastore.transaction(commit=True) as curs:
            drop_existing(curs, tables, DROP_PATIENCE)


def _process(projection: AnyProjection, page: Page, skips: frozenset[int], last: bool) -> None:
    """Apply ``page``, holding rows back (write-behind) until the last page of a replay."""
    projection.write_behind = projection.can_write_behind and not last
    projection.process_page(page, skips)


def _with_last(pages: Iterator[Page]) -> Iterator[tuple[Page, bool]]:
    """Each page, and whether it is the last."""
    previous: Page | None = None
    for page in pages:
        if previous is not None:
            yield previous, False
        previous = page
    if previous is not None:
        yield previous, True


def _swap_rank(name: str) -> int:
    """Views that readers join come in ``SWAP_ORDER``; any other view after them."""
    return SWAP_ORDER.index(name) if name in SWAP_ORDER else len(SWAP_ORDER)
