"""Named errors of the read side. None of them is ever raised with ``assert``."""

from __future__ import annotations


class ProjectionError(Exception):
    """Something about a read model a person has to know about."""


class BadEvent(ProjectionError):
    """A stored event a view cannot apply: unknown topic, undecodable state, missing or
    mistyped fields, or an event that contradicts what the view already holds.

    The view halts at the position just before it (see docs/projections.md, "Bad input")
    until the code learns the event or an operator records an explicit skip.
    """

    def __init__(self, view: str, position: int, topic: str, reason: str) -> None:
        self.view = view
        self.position = position
        self.topic = topic
        self.reason = reason
        super().__init__(
            f"view {view!r} halted at log position {position} ({topic}): {reason}; "
            f"fix the code or record a skip: agentboard projections skip {view} {position}"
        )


class PositionMoved(ProjectionError):
    """The view's tracking position changed under a runner (a rebuild swapped the view in,
    or another runner applied the page first), or a rebuild swapped in fresh tables at the
    same position. The runner forgets what it remembered of the rows and re-reads the
    position; nothing is lost."""

    def __init__(self, view: str, expected: int, found: int, *, swapped: bool = False) -> None:
        self.view = view
        self.expected = expected
        self.found = found
        self.swapped = swapped
        what = "fresh tables were swapped in" if swapped else f"it is at {found}, not {expected}"
        super().__init__(f"view {view!r} moved under this runner: {what}")


class UnknownView(ProjectionError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        super().__init__(f"no view named {name!r}; known views: {', '.join(known)}")


class RebuildInProgress(ProjectionError):
    def __init__(self, view: str) -> None:
        self.view = view
        super().__init__(f"a rebuild of view {view!r} is already running")


class InvalidQuery(ProjectionError):
    """A filter, cursor or as_of a caller got wrong; the message says how (an API 400)."""


class NotFound(ProjectionError):
    """No such execution in this tenant (an API 404)."""
