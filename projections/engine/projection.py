"""A projection that applies a page of events per transaction.

eventsourcing's ``Projection`` processes one event per transaction, which caps a view
at about 2,000 events/s here. A ``PageProjection`` folds a whole page in memory and
has its view write the result, with the page's tracking record, in one transaction.
``process_event`` still works (a page of one), so eventsourcing's own runner can
drive these projections too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar, Generic, TypeVar

from cachetools import LRUCache
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from psycopg import Cursor
from psycopg.rows import DictRow

from projections.engine.errors import BadEvent
from projections.engine.log import LoggedEvent, Page, topic_of
from projections.engine.view import ViewRecorder

TView = TypeVar("TView", bound=ViewRecorder)
K = TypeVar("K")
V = TypeVar("V")


class PageProjection(Projection[TView], ABC, Generic[TView]):
    decoded: ClassVar[frozenset[str] | None] = None
    """The topics this projection reads (None: every topic)."""
    can_write_behind: ClassVar[bool] = False
    """Whether ``apply`` can hold rows back across pages while ``write_behind`` is on."""
    hold_limit: ClassVar[int] = 50_000
    """Most rows a write-behind holds (a bound on memory); at that it writes them."""
    write_behind = False
    """Set by a rebuild on the projections of its fresh tables, which nobody reads until
    they are swapped in: while it is on, the projection may keep rows in memory across
    pages; the first page applied with it off writes them all."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass of a view's projection (a test double, say) keeps the view's name;
        eventsourcing would name it after the class."""
        inherited = None if "name" in vars(cls) else cls.name
        super().__init_subclass__(**kwargs)
        if inherited:
            cls.name = inherited

    def process_page(self, page: Page, skips: frozenset[int] = frozenset()) -> None:
        """Apply the page in one transaction. On a bad event, apply what comes before it,
        so the view halts right in front of it, then raise ``BadEvent``."""
        try:
            events = page.for_view(self.name, self.decoded, skips)
            with self.view.page_transaction(page.after, page.last) as curs:
                self.apply(curs, events)
        except BadEvent as bad:
            self.forget()
            if page.after < bad.position - 1 < page.last:
                self.process_page(page.before(bad.position), skips)
            raise
        except BaseException:
            self.forget()  # what it remembers may hold changes that were rolled back
            raise

    def forget(self) -> None:
        """Drop whatever the projection remembers between pages.

        A projection's cache (``LRUCache``, ``remembered``) holds rows exactly as its last
        committed page left them, so the next page need not read them back. It is only
        valid while nobody else writes the view: the page transaction checks the tracking
        position, and any failure or moved position calls this."""

    @abstractmethod
    def apply(self, curs: Cursor[DictRow], events: list[LoggedEvent]) -> None:
        """Write what ``events`` change, inside the page's transaction."""

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        topic = topic_of(type(domain_event))
        wanted = self.decoded is None or topic in self.decoded
        events = [LoggedEvent(tracking.notification_id, topic, domain_event)] if wanted else []
        try:
            with self.view.page_transaction(None, tracking.notification_id) as curs:
                self.apply(curs, events)
        except BaseException:
            self.forget()
            raise


def remembered(cache: LRUCache[K, V], keys: Iterable[K]) -> tuple[dict[K, V], list[K]]:
    """The values ``cache`` remembers of ``keys`` (now its most recently used), and the
    keys it does not remember."""
    found: dict[K, V] = {}
    missing: list[K] = []
    for key in keys:
        try:  # not cache.get: it looks the key up twice (measured 2x slower per hit)
            found[key] = cache[key]
        except KeyError:
            missing.append(key)
    return found, missing
