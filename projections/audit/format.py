"""The audit export's format: how each line is written, hashed, signed and read back.

Pure standard library on purpose: the chain projection, the export and ``audit verify``
share this code, and an outsider can check an export with nothing but Python's
``hashlib``, ``hmac`` and ``json`` (docs/audit.md gives the recipe). The fields of each
line and their order are defined once, in ``layout``; the writers and patterns here
derive from it.

An event line is one JSON object whose keys come in a fixed order::

    {"execution_id":"U","prev_hash":"H","tenant":T,"agent_id":A,"position":P,"version":V,
     "event_type":E,"topic":X,"timestamp":"2025-01-01T00:00:00.000000Z","actor":{...},
     "data":{...the stored event's state, byte for byte...}
     ,"hash":"H","tenant_prev":"H","tenant_hash":"H","seq":N}

Its **record** is every byte before ``,"hash":"``; ``hash = SHA-256(record)``. The
record holds ``prev_hash``, the hash of the same execution's previous event (64 zeros
before its first), so each execution is a hash chain. ``tenant_hash =
SHA-256(tenant_prev || hash)`` (raw 32-byte digests) chains every event of a tenant in
log order. ``seq`` numbers the lines of one export; it is not part of any record.
A key line (an API key made) has its own record and a chain per tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from projections.audit.layout import (
    EVENT,
    EVENT_CHAIN,
    KEY,
    KEY_CHAIN,
    LINE_END,
    MANIFEST_START,
    PATTERNS,
    member,
)

SCHEME = "agentboard-audit-v1"
GENESIS = "0" * 64
SIGNATURE_ALGORITHM = "HMAC-SHA256"
HASH_FIELD = EVENT_CHAIN.separators[0].encode()
"""Where a line's record ends (the same for event and key lines)."""
# The same format in PostgreSQL, so an export formats stored times exactly as the chain did.
SQL_TIMESTAMP = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""

CSV_COLUMNS = (
    "seq", "record", "position", "execution_id", "version", "prev_hash", "tenant", "agent_id",
    "event_type", "topic", "timestamp", "actor", "data", "hash", "tenant_prev", "tenant_hash",
)  # fmt: skip
"""A CSV export: one row per line; ``record`` is ``event``, ``key`` or ``manifest``. Key and
manifest rows carry their whole NDJSON line in ``data``."""


def json_text(value: Any) -> str:
    """The one JSON encoding used inside records and for the manifest: sorted keys, no
    whitespace, ASCII only (every other character escaped)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@lru_cache(maxsize=8192)
def json_name(value: str) -> str:
    """A name (tenant, agent, event type, topic) as a JSON string: ``json.dumps(value,
    ensure_ascii=False)``, which escapes only ``"``, ``\\`` and control characters."""
    return json.dumps(value, ensure_ascii=False)


@lru_cache(maxsize=1024)
def event_type_name(topic: str) -> str:
    return json_name(event_type_of(topic))


def utc_text(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``, always six digits of microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:26] + "Z"


def event_type_of(topic: str) -> str:
    """The part of the topic before its last dot: ``agentboard.execution.Created.v1`` ->
    ``Created``."""
    return topic.rsplit(".", 2)[-2] if "." in topic else topic


EVENT_HEAD_TEMPLATE = EVENT.template(last_value=False)
EVENT_SUFFIX_TEMPLATE = EVENT_CHAIN.template() + LINE_END
KEY_RECORD_TEMPLATE = KEY.template()
KEY_SUFFIX_TEMPLATE = KEY_CHAIN.template() + LINE_END
QUEUES, REVOKED = member("queues"), member("revoked")


def event_head(
    position: int,
    execution_id: str,
    version: int,
    prev_hash: str,
    tenant: str,
    agent_id: str,
    topic: str,
    timestamp: str,
    actor: str,
) -> bytes:
    """An event's record up to its data: ``event_head(...) + state`` is what is hashed.
    ``actor`` is already JSON text (``json_text`` of the actor, or ``null``)."""
    return (
        EVENT_HEAD_TEMPLATE
        % (
            execution_id, prev_hash, json_name(tenant), json_name(agent_id), position, version,
            event_type_name(topic), json_name(topic), timestamp, actor,
        )
    ).encode()  # fmt: skip


def event_record(
    position: int,
    execution_id: str,
    version: int,
    prev_hash: str,
    tenant: str,
    agent_id: str,
    topic: str,
    timestamp: str,
    actor: str,
    data: bytes,
) -> bytes:
    """The hashed part of an event line; ``data`` is the stored state, as stored."""
    head = event_head(
        position, execution_id, version, prev_hash, tenant, agent_id, topic, timestamp, actor
    )
    return head + data


def event_suffix(hash_hex: str, tenant_prev: str, tenant_hash: str, seq: int) -> bytes:
    return (EVENT_SUFFIX_TEMPLATE % (hash_hex, tenant_prev, tenant_hash, seq)).encode()


def key_record(
    key_seq: int,
    prev_hash: str,
    tenant: str,
    key_id: str,
    role: str,
    actor: str,
    timestamp: str,
    queues: Sequence[str] | None = None,
    revoked: bool = False,
) -> bytes:
    """The hashed part of a key line: an API key made for ``tenant``, by ``actor`` (or, with
    ``"revoked":true``, revoked by ``actor``); a worker key limited to some queues lists
    them. Fields absent by default, so records made before them hash as they did."""
    limited = "" if queues is None else QUEUES + json_text(list(queues))
    revocation = REVOKED + "true" if revoked else ""
    fields = (key_seq, prev_hash, json_text(tenant), json_text(key_id), json_text(role), actor,
              timestamp)  # fmt: skip
    return (KEY_RECORD_TEMPLATE % fields + limited + revocation).encode()


def key_suffix(hash_hex: str, seq: int) -> bytes:
    return (KEY_SUFFIX_TEMPLATE % (hash_hex, seq)).encode()


def digest(record: bytes) -> str:
    return hashlib.sha256(record).hexdigest()


def tenant_link(tenant_prev: str, hash_hex: str) -> str:
    """The tenant chain's next value: SHA-256 of the previous value and the event's hash,
    as raw 32-byte digests."""
    return hashlib.sha256(bytes.fromhex(tenant_prev) + bytes.fromhex(hash_hex)).hexdigest()


# -- the manifest ---------------------------------------------------------------------


def key_id_of(key: bytes) -> str:
    """Names a signing key without revealing it."""
    return hashlib.sha256(b"agentboard-audit-key\x00" + key).hexdigest()[:16]


def signed_part(manifest: dict[str, Any]) -> bytes:
    return json_text({k: v for k, v in manifest.items() if k != "signature"}).encode()


def sign(manifest: dict[str, Any], key: bytes) -> dict[str, Any]:
    """``manifest`` with its signature: HMAC-SHA256 over the canonical JSON of every
    other field of the manifest."""
    value = hmac.new(key, signed_part(manifest), hashlib.sha256).hexdigest()
    signature = {"algorithm": SIGNATURE_ALGORITHM, "key_id": key_id_of(key), "value": value}
    return {**manifest, "signature": signature}


def signature_matches(manifest: dict[str, Any], key: bytes) -> bool:
    signature = manifest.get("signature")
    if not isinstance(signature, dict) or not isinstance(signature.get("value"), str):
        return False
    expected = hmac.new(key, signed_part(manifest), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature["value"])


def manifest_line(manifest: dict[str, Any]) -> bytes:
    """The manifest's line: ``{"manifest":`` and the manifest (the JSON text of
    ``{"manifest": manifest}``, one key)."""
    return (MANIFEST_START + json_text(manifest) + LINE_END).encode()


# -- reading lines back (verify) ------------------------------------------------------

# Only the fields a checker needs to read are captured; a line's own hash judges the rest.
# After the version, only the comma that opens the next field: an edit beyond it is a
# line whose hash does not match, not a line verify cannot read.
EVENT_HEAD = re.compile((EVENT.pattern(EVENT.names.index("version") + 1) + ",").encode())
# A line's end, read as before the layout was derived: a carriage return and a missing
# line break (the file's last line) still match; the counts and the manifest judge them.
LINE_CLOSE = re.escape(LINE_END.rstrip("\n")) + r"\r?\n?\Z"
EVENT_TAIL = re.compile((EVENT_CHAIN.pattern() + LINE_CLOSE).encode())
KEY_HEAD = re.compile(KEY.pattern(KEY.names.index("tenant") + 1).encode())
KEY_TAIL = re.compile((KEY_CHAIN.pattern() + LINE_CLOSE).encode())
POSITION_NEAR = re.compile(
    (re.escape(EVENT.separator("position").lstrip(",")) + PATTERNS["number"]).encode()
)
KEY_START = KEY.separators[0].encode()
MANIFEST_OPENING = MANIFEST_START.encode()
"""How a key line and the manifest's line begin."""


def json_string(quoted: bytes) -> str:
    """A JSON string literal as captured by the patterns above. Raises ``ValueError``
    when it is not one (a bad escape, bytes that are not UTF-8)."""
    if b"\\" not in quoted:
        return quoted[1:-1].decode()
    value: str = json.loads(quoted)
    return value
