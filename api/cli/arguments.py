"""What a caller types into ``agentboard exec`` turned into request values, or one line
naming the flag and what to fix (exit code 2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from api.cli.client import EXIT_USAGE, fail


def parse_params(params: list[str]) -> dict[str, Any]:
    """``k=v``: ``v`` as JSON when it parses as JSON, else as a string; but a value that
    looks like JSON (an object, a list, a quoted string) and does not parse is refused, not
    quietly taken as text."""
    parsed: dict[str, Any] = {}
    for key, value in key_values("--param", params):
        try:
            parsed[key] = json.loads(value)
        except ValueError as error:
            if value.lstrip()[:1] in ("{", "[", '"'):
                fail(f"--param {key}: the value looks like JSON but is not valid JSON "
                     f"({error}); fix it, or quote it as a JSON string to mean the text",
                     EXIT_USAGE)  # fmt: skip
            parsed[key] = value
    return parsed


def key_values(flag: str, items: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"{flag} takes key=value (got {item!r})", EXIT_USAGE)
        pairs.append((key, value))
    return pairs


def parse_deadline(text: str) -> str:
    """An ISO 8601 time (UTC when it names no zone), or a time from now: 30m, 12h, 7d."""
    from projections.engine.errors import InvalidQuery  # noqa: PLC0415 - imported when used
    from projections.views.filters import parse_age  # noqa: PLC0415

    try:
        at = datetime.now(UTC) + parse_age(text)
    except InvalidQuery:
        try:
            at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            fail(f"--deadline is an ISO 8601 time such as 2026-12-01T17:00:00Z, or a time "
                 f"from now such as 30m, 12h or 7d (got {text[:40]!r})", EXIT_USAGE)  # fmt: skip
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()
