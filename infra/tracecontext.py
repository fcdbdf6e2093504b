"""W3C Trace Context (``traceparent``): read what a caller sent, and name the trace an
execution belongs to. Light on purpose (the HTTP API and the logs use it); the spans
themselves are made in ``infra/traces.py``."""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
SAMPLED = 0x01

trace_id: ContextVar[str | None] = ContextVar("trace_id", default=None)
"""The trace of what this task is doing, as 32 hex digits, when one is known (the logs
carry it)."""


@dataclass(frozen=True, slots=True)
class TraceParent:
    trace_id: int
    span_id: int
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED)

    def header(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{self.flags:02x}"


def parse_traceparent(text: str | None) -> TraceParent | None:
    """The trace context in a ``traceparent`` header, or None when there is none or it
    is not valid (the specification says to ignore an invalid one, not to refuse)."""
    if not text:
        return None
    match = _TRACEPARENT.match(text.strip().lower())
    if match is None:
        return None
    version, trace, span, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    parent = TraceParent(int(trace, 16), int(span, 16), int(flags, 16))
    if parent.trace_id == 0 or parent.span_id == 0:
        return None
    return parent


def execution_trace_id(execution_id: UUID, traceparent: str | None) -> int:
    """The trace of an execution: its creator's, else one named by its own id (so any
    process can name it without asking anyone)."""
    parent = parse_traceparent(traceparent)
    return parent.trace_id if parent is not None else execution_id.int
