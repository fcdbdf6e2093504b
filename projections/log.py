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
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Union
from uuid import UUID

from eventsourcing.domain import CanMutateAggregate
from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification

from domain.execution import Execution
from projections.errors import BadEvent

log = logging.getLogger(__name__)

Check = Callable[[Any], bool]


def topic_of(event_class: type[Any]) -> str:
    topic: str = event_class.TOPIC
    return topic


def _event_classes() -> dict[str, type[Any]]:
    return {
        topic_of(cls): cls
        for cls in vars(Execution).values()
        if isinstance(cls, type)
        and issubclass(cls, CanMutateAggregate)
        and getattr(cls, "TOPIC", None)
    }


KNOWN_EVENTS: dict[str, type[Any]] = _event_classes()
"""Every topic the domain has ever written, mapped to its event class."""


def _accepts(annotation: Any) -> tuple[type, ...] | None:
    """The Python types a decoded field may hold, or None when anything goes."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        accepted: list[type] = []
        for member in typing.get_args(annotation):
            member_types = _accepts(member)
            if member_types is None:
                return None
            accepted.extend(member_types)
        return tuple(accepted)
    if annotation is type(None):
        return (type(None),)
    if annotation is float:
        return (int, float)
    if annotation in (str, int, bool, datetime, UUID):
        return (annotation,)
    if origin in (dict, list) or annotation in (dict, list):
        return (origin or annotation,)
    return None  # Any, TypeVars, anything richer: not checked here


_SET_BY_THE_MAPPER = {"originator_id", "originator_version"}


def _field_checks(event_class: type[Any]) -> dict[str, tuple[type, ...] | None]:
    hints = typing.get_type_hints(event_class)
    return {
        name: _accepts(annotation)
        for name, annotation in hints.items()
        if name not in _SET_BY_THE_MAPPER and typing.get_origin(annotation) is not typing.ClassVar
    }


CREATED = topic_of(Execution.Created)
FIELD_CHECKS = {topic: _field_checks(cls) for topic, cls in KNOWN_EVENTS.items()}
_REQUIRED = {topic: frozenset(checks) for topic, checks in FIELD_CHECKS.items()}
_TYPED = {
    topic: tuple((name, accepted) for name, accepted in checks.items() if accepted is not None)
    for topic, checks in FIELD_CHECKS.items()
}


def problem_with(topic: str, state: dict[str, Any]) -> str | None:
    """Why a decoded event's fields do not fit its class, or None when they do."""
    if not state.keys() >= _REQUIRED[topic]:
        missing = sorted(_REQUIRED[topic] - state.keys())
        return f"field {missing[0]!r} is missing"
    for name, accepted in _TYPED[topic]:
        if not isinstance(state[name], accepted):
            return f"field {name!r} holds {type(state[name]).__name__}"
    return None


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
    """Pages of the application's notification log, decoded with its mapper.

    ``topics`` names the events worth decoding (None: all); an event of another known
    topic is passed over undecoded, which is what makes a narrow view cheap to rebuild.
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

    def head(self) -> int:
        return self.recorder.max_notification_id() or 0

    def read(self, after: int, limit: int, stop: int | None = None) -> Page:
        notifications = self.recorder.select_notifications(
            after, limit, stop=stop, inclusive_of_start=False
        )
        if not notifications:
            return Page(after, after, (), 0)
        return Page(after, notifications[-1].id, self.decode(notifications), len(notifications))

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
        entries: list[LoggedEvent | Undecodable] = []
        for notification in notifications:
            topic = notification.topic
            if topic not in KNOWN_EVENTS:
                entries.append(Undecodable(notification.id, topic, "unknown topic"))
                continue
            if self.topics is not None and topic not in self.topics:
                continue
            entries.append(self.decode_one(notification))
        return tuple(entries)

    def decode_one(self, notification: Notification) -> LoggedEvent | Undecodable:
        topic = notification.topic
        try:
            event = self.mapper.to_domain_event(notification)
        except Exception as error:  # any failure to decode is reported, not raised here
            return Undecodable(notification.id, topic, f"state does not decode: {error}")
        problem = problem_with(topic, vars(event))
        if problem is not None:
            return Undecodable(notification.id, topic, problem)
        return LoggedEvent(notification.id, topic, event)
