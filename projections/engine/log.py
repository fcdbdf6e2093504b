"""Reading the notification log a page at a time, and deciding what each stored event is.

Every stored event is one of: an event the domain knows, decoded and checked field by
field against its class; or ``Undecodable`` (unknown topic, state that does not decode,
a missing or mistyped field). A view never drops an undecodable event silently: it
halts on it unless an operator recorded an explicit skip of that position
(``control.record_skip``), and each skip it applies is logged.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    InterfaceError,
    Mapper,
    Notification,
    OperationalError,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random

from projections.engine.decoding import (
    CREATED,
    KNOWN_EVENTS,
    EventDecoder,
    Stored,
    problem_with,
    topic_of,
)
from projections.engine.errors import BadEvent

# topic_of, KNOWN_EVENTS and problem_with live in projections.engine.decoding; the views import
# them from here.
__all__ = [
    "KNOWN_EVENTS",
    "LogReader",
    "LoggedEvent",
    "Page",
    "Undecodable",
    "by_execution",
    "is_created",
    "problem_with",
    "topic_of",
]

log = logging.getLogger(__name__)

SELECT_PAGE = (
    "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
    "WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
)
SELECT_PAGE_UNTIL = (
    "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
    "WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id LIMIT %s"
)


class LoggedEvent(NamedTuple):
    """A decoded, checked domain event of ``KNOWN_EVENTS[topic]``, where it is in the log.
    (A named tuple: a rebuild makes one per stored event, and tuples are cheap.)"""

    position: int
    topic: str
    event: Any


def by_execution(events: list[LoggedEvent]) -> dict[UUID, list[LoggedEvent]]:
    """A page's events, execution by execution, each execution's in order."""
    histories: dict[UUID, list[LoggedEvent]] = {}
    for entry in events:
        history = histories.get(entry.event.originator_id)
        if history is None:
            histories[entry.event.originator_id] = [entry]
        else:
            history.append(entry)
    return histories


def is_created(entry: LoggedEvent) -> bool:
    return entry.topic == CREATED


class Undecodable(NamedTuple):
    position: int
    topic: str
    reason: str


@dataclass(frozen=True, slots=True)
class Page:
    """Notifications ``after < position <= last``, decoded where someone needs them."""

    after: int
    last: int
    entries: tuple[LoggedEvent | Undecodable, ...]
    size: int  # notifications read, including those nobody needed decoded

    def before(self, position: int) -> Page:
        """The part of this page that comes before ``position``."""
        entries = tuple(entry for entry in self.entries if entry.position < position)
        return Page(self.after, position - 1, entries, len(entries))

    def for_view(
        self, view: str, topics: frozenset[str] | None, skips: frozenset[int]
    ) -> list[LoggedEvent]:
        """The events this view applies, in order. Raises ``BadEvent`` for an
        undecodable event the operator has not told this view to skip."""
        events: list[LoggedEvent] = []
        for entry in self.entries:
            if entry.position in skips:
                log.warning(
                    "view %s skips log position %d (%s) by a recorded rule",
                    view, entry.position, entry.topic,
                )  # fmt: skip
                continue
            if isinstance(entry, Undecodable):
                raise BadEvent(view, entry.position, entry.topic, entry.reason)
            if topics is None or entry.topic in topics:
                events.append(entry)
        return events


class LogReader:
    """Pages of the application's notification log, decoded as its mapper would.

    ``topics`` names the events worth decoding (None: all); an event of another known
    topic is passed over undecoded, which is what makes a narrow view cheap to rebuild.
    From PostgreSQL it reads the rows itself, in binary, as plain tuples: a fifth of the
    cost of ``select_notifications`` (which is still how it reads any other recorder).
    """

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[UUID],
        topics: Iterable[str] | None = None,
    ) -> None:
        self.recorder = recorder
        self.mapper = mapper
        self.topics = None if topics is None else frozenset(topics)
        self.decoder = EventDecoder(mapper)
        self._select: tuple[Composed, Composed] | None = None
        if isinstance(recorder, PostgresApplicationRecorder):
            table = SQL("{}.{}").format(
                Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)
            )
            self._select = (SQL(SELECT_PAGE).format(table), SQL(SELECT_PAGE_UNTIL).format(table))

    def head(self) -> int:
        return self.recorder.max_notification_id() or 0

    def read(self, after: int, limit: int, stop: int | None = None) -> Page:
        rows = self._rows(after, limit, stop)
        if not rows:
            return Page(after, after, (), 0)
        return Page(after, rows[-1][0], self._decode_rows(rows), len(rows))

    @retry(  # a connection the database dropped: the pool replaces it (as eventsourcing does)
        retry=retry_if_exception_type((InterfaceError, OperationalError)),
        stop=stop_after_attempt(10),
        wait=wait_random(0.19, 0.21),
        reraise=True,
    )
    def _rows(self, after: int, limit: int, stop: int | None) -> Sequence[Stored]:
        if self._select is None or not isinstance(self.recorder, PostgresApplicationRecorder):
            notifications = self.recorder.select_notifications(
                after, limit, stop=stop, inclusive_of_start=False
            )
            return [_stored(notification) for notification in notifications]
        statement, params = (
            (self._select[0], (after, limit))
            if stop is None
            else (self._select[1], (after, stop, limit))
        )
        with (
            self.recorder.datastore.get_connection() as conn,
            conn.cursor(binary=True, row_factory=tuple_row) as curs,
        ):
            return curs.execute(statement, params, prepare=True).fetchall()

    def pages(self, after: int, limit: int, ahead: int = 2) -> Iterator[Page]:
        """Pages from ``after`` to the end of the log as it stands now, read and decoded
        by a thread up to ``ahead`` pages in advance, so that decoding the next page
        overlaps applying this one (a rebuild's loop)."""
        ready: queue.Queue[Page | BaseException | None] = queue.Queue(maxsize=ahead)
        done = threading.Event()

        def put(item: Page | BaseException | None) -> None:
            while not done.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def produce() -> None:
            position = after
            try:
                while not done.is_set():
                    page = self.read(position, limit)
                    put(page)
                    if page.size < limit:
                        break
                    position = page.last
                put(None)
            except BaseException as error:  # handed to the consumer, raised there
                put(error)

        thread = threading.Thread(target=produce, name="log-prefetch", daemon=True)
        thread.start()
        try:
            while (item := ready.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if item.size:
                    yield item
        finally:
            done.set()
            thread.join()

    def decode(
        self, notifications: Sequence[Notification]
    ) -> tuple[LoggedEvent | Undecodable, ...]:
        return self._decode_rows([_stored(notification) for notification in notifications])

    def decode_one(self, notification: Notification) -> LoggedEvent | Undecodable:
        return self._decode_one(_stored(notification))

    def _decode_rows(self, rows: Sequence[Stored]) -> tuple[LoggedEvent | Undecodable, ...]:
        """``_decode_one`` of each row a view needs, inlined: a rebuild runs this loop for
        every stored event, and each call it saves is a few percent of its time."""
        entries: list[LoggedEvent | Undecodable] = []
        append, decode, topics = entries.append, self.decoder.decode, self.topics
        for row in rows:
            position, topic = row[0], row[3]
            if topic not in KNOWN_EVENTS:
                append(Undecodable(position, topic, "unknown topic"))
                continue
            if topics is not None and topic not in topics:
                continue
            if (topic == CREATED) != (row[2] == 1):
                append(Undecodable(position, topic, _misplaced(row[2])))
                continue
            try:
                event = decode(row)
            except Exception as error:  # any failure to decode is reported, not raised here
                append(Undecodable(position, topic, f"state does not decode: {error}"))
                continue
            problem = problem_with(topic, event.__dict__)
            if problem is None:
                append(LoggedEvent(position, topic, event))
            else:
                append(Undecodable(position, topic, problem))
        return tuple(entries)

    def _decode_one(self, row: Stored) -> LoggedEvent | Undecodable:
        position, topic = row[0], row[3]
        if topic in KNOWN_EVENTS and (topic == CREATED) != (row[2] == 1):
            return Undecodable(position, topic, _misplaced(row[2]))
        try:
            event = self.decoder.decode(row)
        except Exception as error:  # any failure to decode is reported, not raised here
            return Undecodable(position, topic, f"state does not decode: {error}")
        problem = problem_with(topic, vars(event))
        if problem is not None:
            return Undecodable(position, topic, problem)
        return LoggedEvent(position, topic, event)


def _misplaced(version: int) -> str:
    """Why an event stands where no event of its kind can: an execution's history starts
    with Created at version 1, and only there (a second Created would start it again)."""
    if version == 1:
        return "version 1 of an execution must be its Created event"
    return f"Created at version {version} (an execution's Created is its version 1)"


def _stored(notification: Notification) -> Stored:
    return (
        notification.id,
        notification.originator_id,  # type: ignore[return-value]
        notification.originator_version,
        notification.topic,
        bytes(notification.state),
    )
