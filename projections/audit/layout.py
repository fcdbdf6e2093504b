"""The lines of an audit export, defined once: each kind of line's fields, in order.

Everything that writes a line or reads one back derives from the layouts here: the
chain's heads and the key records (``format``), the chain fields PostgreSQL appends to
an exported line (``lines``), the patterns and the fixed offsets ``audit verify`` reads
with (``format``, ``lean``). Change a layout and every one of them follows; the stored
bytes must not change, so a unit test pins the offsets the stored lines have.

Standard library only (``audit verify`` runs without the server's dependencies).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# How a value is written. Quoted values are written between quotes as they are (they hold
# no character JSON escapes); the others are JSON text of their own (``json`` is any
# JSON value, ``string`` a JSON string, ``number`` an integer).
QUOTED = frozenset({"uuid", "hex", "time"})
WIDTHS = {"uuid": 36, "hex": 64}
PATTERNS = {
    "uuid": "([0-9a-f-]{36})",
    "hex": "([0-9a-f]{64})",
    "string": r'("(?:[^"\\]|\\.)*")',
    # at most 19 digits (PostgreSQL's bigint): int() of a match never fails
    "number": "([0-9]{1,19})",
}
LINE_END = "}\n"


class Layout:
    """Fields written as JSON members in this order: the first opens the object
    (``opens``) or continues one (a line's tail)."""

    def __init__(self, fields: Sequence[tuple[str, str]], *, opens: bool) -> None:
        self.fields = tuple(fields)
        self.names = tuple(name for name, _ in self.fields)
        separators, closing = [], ""
        for index, (name, kind) in enumerate(self.fields):
            quote = '"' if kind in QUOTED else ""
            separators.append(f'{closing}{"{" if opens and index == 0 else ","}"{name}":{quote}')
            closing = quote
        self.separators = tuple(separators)
        """The text before each value: the quote that closes the value before it, the
        field's name, and the quote that opens a quoted value."""
        self.closing = closing
        """What follows the last value: its closing quote, if it is quoted."""

    def separator(self, name: str) -> str:
        return self.separators[self.names.index(name)]

    def template(self, *, last_value: bool = True) -> str:
        """A ``%``-template of the fields (``%s`` a value); without ``last_value`` it
        stops after the last field's name, where the caller appends the value itself."""
        parts = [separator.replace("%", "%%") + "%s" for separator in self.separators]
        if not last_value:
            return "".join(parts)[: -len("%s")]
        return "".join(parts) + self.closing

    def pattern(self, count: int | None = None) -> str:
        """A regular expression of the first ``count`` fields (all by default), one group
        per value; only fields with a pattern (not ``json``, not ``time``) can be read."""
        fields = self.fields[: len(self.fields) if count is None else count]
        source = [re.escape(self.separators[0])]
        for index, (name, kind) in enumerate(fields):
            if kind not in PATTERNS:
                raise ValueError(f"field {name!r} ({kind}) has no pattern to read it back")
            source.append(PATTERNS[kind])
            if index + 1 < len(fields):
                source.append(re.escape(self.separators[index + 1]))
        if count is None or count == len(self.fields):
            source.append(re.escape(self.closing))
        return "".join(source)

    def offset(self, name: str) -> int:
        """Where ``name``'s value starts, counted from the start of the layout's text:
        every value before it must be of fixed width."""
        at = 0
        for field, kind in self.fields:
            at += len(self.separator(field))
            if field == name:
                return at
            if kind not in WIDTHS:
                raise ValueError(f"{name!r} follows {field!r}, whose width varies")
            at += WIDTHS[kind]
        raise ValueError(f"no field {name!r}")

    def span(self, name: str) -> tuple[int, int]:
        """Where the value of ``name``, a field of fixed width, starts and ends."""
        kind = dict(self.fields)[name]
        if kind not in WIDTHS:
            raise ValueError(f"the width of {name!r} ({kind}) varies")
        at = self.offset(name)
        return at, at + WIDTHS[kind]


def member(name: str) -> str:
    """An optional member after a layout's last value (a key record's ``queues``)."""
    return f',"{name}":'


EVENT = Layout(
    (
        ("execution_id", "uuid"), ("prev_hash", "hex"), ("tenant", "string"),
        ("agent_id", "string"), ("position", "number"), ("version", "number"),
        ("event_type", "string"), ("topic", "string"), ("timestamp", "time"),
        ("actor", "json"), ("data", "json"),
    ),
    opens=True,
)  # fmt: skip
"""An event's **record**, the bytes its hash covers: the fixed-width fields first, so a
reader finds them at fixed offsets; ``data`` is the stored state, byte for byte."""

EVENT_CHAIN = Layout(
    (("hash", "hex"), ("tenant_prev", "hex"), ("tenant_hash", "hex"), ("seq", "number")),
    opens=False,
)
"""What follows an event's record on its line: its chain fields and the line's ``seq``."""

KEY = Layout(
    (
        ("key_seq", "number"), ("prev_hash", "hex"), ("tenant", "string"), ("key_id", "string"),
        ("role", "string"), ("actor", "json"), ("timestamp", "time"),
    ),
    opens=True,
)  # fmt: skip
"""A key record (an API key made or revoked); ``queues`` and ``revoked`` follow it only
when present (``member``), so records made before them hash as they did."""

KEY_CHAIN = Layout((("hash", "hex"), ("seq", "number")), opens=False)

MANIFEST_START = '{"manifest":'
"""The opening of the manifest's line (the manifest, one member, sorted keys)."""
