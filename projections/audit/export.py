"""The audit export: a tenant's stored events with their chain, streamed, then a signed
manifest.

One REPEATABLE READ, read-only transaction per export, so the lines and the manifest
describe one snapshot. Rows come through a server-side cursor a batch at a time (read
by a thread one batch ahead) and leave as bytes a chunk at a time: memory stays flat
whatever the history's size. See ``lines`` for the lines themselves.

Time bounds choose a contiguous slice of the log: ``from`` starts at the first of the
tenant's events stamped at or after it, ``to`` ends at the last stamped at or before it
(timestamps rise with positions, up to the clock skew between writers), so a
time-bounded export holds every event of the tenant between two positions.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg.rows import TupleRow

from projections.audit import format as fmt
from projections.audit.lines import KEY_TABLE_EXISTS, SELECT_KEYS, Csv, Ndjson, ahead
from projections.engine.errors import InvalidQuery, NotFound, ProjectionError
from projections.engine.view import APPLICATION
from projections.views.timeline import EVENTS_TABLE

Format = Literal["ndjson", "csv"]
MEDIA_TYPES: dict[str, str] = {"ndjson": "application/x-ndjson", "csv": "text/csv"}
BATCH = 2000  # rows per round trip, and lines per chunk handed to the caller
VERIFY_HOW = (
    "agentboard audit verify FILE --key-file <data dir>/audit.key; or by hand with "
    "Python's hashlib, hmac and json (docs/audit.md, 'Verifying by hand')"
)

BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
SELECT_CHAIN_POSITION = (
    "SELECT notification_id FROM audit_chain_tracking WHERE application_name = %s"
)
SELECT_LOG_HEAD = f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}"
SELECT_STORE_ID = "SELECT store_id::text FROM agentboard_store WHERE id = 1"
SELECT_EXECUTION = "SELECT tenant FROM audit_executions WHERE execution_id = %s"
FIRST_AT_OR_AFTER = (
    "SELECT position FROM audit_chain WHERE tenant = %s AND occurred_at >= %s "
    "ORDER BY occurred_at, position LIMIT 1"
)
LAST_AT_OR_BEFORE = (
    "SELECT position FROM audit_chain WHERE tenant = %s AND occurred_at <= %s "
    "ORDER BY occurred_at DESC, position DESC LIMIT 1"
)
TENANT_CHAIN_AT = (
    "SELECT position, tenant_hash FROM audit_chain WHERE tenant = %s AND position <= %s "
    "ORDER BY position DESC LIMIT 1"
)
EARLIEST, LATEST = datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ExportQuery:
    tenant: str
    start: datetime | None = None
    end: datetime | None = None
    execution: UUID | None = None
    agent: str | None = None
    format: Format = "ndjson"

    def __post_init__(self) -> None:
        for name in ("start", "end"):  # in UTC; a time without a zone is UTC already
            moment = getattr(self, name)
            if moment is None:
                continue
            try:
                moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
            except OverflowError:
                raise InvalidQuery(
                    f"{'from' if name == 'start' else 'to'} is out of range"
                ) from None
            object.__setattr__(self, name, moment)

    def check(self) -> None:
        if self.start and self.end and self.start > self.end:
            raise InvalidQuery("from is later than to")
        if self.agent is not None and "\x00" in self.agent:
            raise InvalidQuery("agent holds a NUL character")
        if self.format not in MEDIA_TYPES:
            raise InvalidQuery("format must be ndjson or csv")

    @property
    def complete(self) -> bool:
        """Every event of the tenant in the range (no execution or agent filter)."""
        return self.execution is None and self.agent is None

    def filters(self) -> dict[str, str | None]:
        return {
            "from": fmt.utc_text(self.start) if self.start else None,
            "to": fmt.utc_text(self.end) if self.end else None,
            "execution": str(self.execution) if self.execution else None,
            "agent": self.agent,
        }


class ChainNotReady(ProjectionError):
    """The audit chain's tables do not exist yet (its view never ran here)."""


class Export:
    """An open export: its snapshot is taken; ``chunks()`` streams it and closes it."""

    def __init__(self, database_url: str, query: ExportQuery, key: bytes) -> None:
        query.check()
        self.query = query
        self.key = key
        self.lines = 0
        self.layout = Csv() if query.format == "csv" else Ndjson()
        self.conn = psycopg.connect(database_url, autocommit=True)
        try:
            self._snapshot()
        except BaseException:
            self.conn.close()
            raise

    def _one(self, statement: str, params: tuple[Any, ...] = ()) -> Any:
        row = self.conn.execute(statement, params).fetchone()
        return row[0] if row else None

    def _snapshot(self) -> None:
        query = self.query
        self.conn.execute(BEGIN)
        try:
            self.chain_position = int(self._one(SELECT_CHAIN_POSITION, (APPLICATION,)) or 0)
        except psycopg.errors.UndefinedTable:
            raise ChainNotReady("the audit chain has not been built yet") from None
        self.log_head = int(self._one(SELECT_LOG_HEAD))
        self.store_id = str(self._one(SELECT_STORE_ID) or "")
        if query.execution is not None:
            owner = self._one(SELECT_EXECUTION, (query.execution,))
            if owner != query.tenant:
                raise NotFound(f"execution {query.execution} does not exist")
        self.after = 0
        self.through = self.chain_position
        if query.start is not None:
            first = self._one(FIRST_AT_OR_AFTER, (query.tenant, query.start))
            self.after = self.through if first is None else min(int(first) - 1, self.through)
        if query.end is not None:
            last = self._one(LAST_AT_OR_BEFORE, (query.tenant, query.end))
            self.through = max(min(int(last or 0), self.through), self.after)

    def chunks(self) -> Generator[bytes, None, None]:
        """The export's bytes, a chunk of up to ``BATCH`` lines at a time; closes the
        connection when done or abandoned."""
        try:
            layout, digest = self.layout, hashlib.sha256()
            seq = events = keys = 0
            first = last = key_head = None
            header = layout.header()
            digest.update(header)
            if header:
                yield header
            for positions, chunk in ahead(self._event_chunks()):
                seq, events = seq + len(positions), events + len(positions)
                first = positions[0] if first is None else first
                last = positions[-1]
                digest.update(chunk)
                yield chunk
            if self.query.complete and self._one(KEY_TABLE_EXISTS):
                for rows in self._batches(SELECT_KEYS, self._key_params()):
                    chunk = b"".join(layout.key(row, seq + n) for n, row in enumerate(rows, 1))
                    seq, keys = seq + len(rows), keys + len(rows)
                    key_head = bytes(rows[-1][7]).hex()
                    digest.update(chunk)
                    yield chunk
            counts = {"events": events, "first": first, "last": last, "keys": keys}
            manifest = self.manifest(counts, key_head, digest.hexdigest())
            self.lines = seq + 1
            yield layout.manifest(manifest)
        finally:
            self.close()

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.close()

    def _event_chunks(self) -> Generator[tuple[list[int], bytes], None, None]:
        """The events' lines, a batch at a time, with their positions."""
        query, seq = self.query, 0
        filters, params = "", [query.tenant, self.after, self.through]
        if query.execution is not None:
            filters += " AND c.execution_id = %s"
            params.append(query.execution)
        if query.agent is not None:
            filters += " AND c.agent_id = %s"
            params.append(query.agent)
        statement = self.layout.select.replace("{filters}", filters)
        for rows in self._batches(statement, tuple(params)):
            chunk = self.layout.events(rows, seq)
            seq += len(rows)
            yield [row[1] if isinstance(self.layout, Ndjson) else row[0] for row in rows], chunk

    def _key_params(self) -> tuple[Any, ...]:
        return (self.query.tenant, self.query.start or EARLIEST, self.query.end or LATEST)

    def _batches(self, statement: str, params: tuple[Any, ...]) -> Iterator[list[TupleRow]]:
        with self.conn.cursor(name="audit_export", binary=True) as cursor:
            cursor.itersize = BATCH
            cursor.execute(statement, params)
            while rows := cursor.fetchmany(BATCH):
                yield rows

    def _tenant_chain_at(self, position: int) -> tuple[int | None, str]:
        row = self.conn.execute(TENANT_CHAIN_AT, (self.query.tenant, position)).fetchone()
        return (int(row[0]), bytes(row[1]).hex()) if row else (None, fmt.GENESIS)

    def manifest(self, counts: dict[str, Any], key_head: str | None, lines: str) -> dict[str, Any]:
        query = self.query
        _, start = self._tenant_chain_at(self.after)
        head_position, head = self._tenant_chain_at(self.through)
        manifest: dict[str, Any] = {
            "scheme": fmt.SCHEME,
            "tenant": query.tenant,
            "store_id": self.store_id,
            "exported_at": fmt.utc_text(datetime.now(UTC)),
            "format": query.format,
            "filters": query.filters(),
            "complete": query.complete,
            "range": {"after": self.after, "through": self.through},
            "log_head": self.log_head,
            "chain_position": self.chain_position,
            "events": {
                "count": counts["events"],
                "first_position": counts["first"],
                "last_position": counts["last"],
            },
            "keys": {"count": counts["keys"], "last_hash": key_head} if query.complete else None,
            "tenant_chain": {"start": start, "head": head, "head_position": head_position},
            "lines_sha256": lines,
            "verify": VERIFY_HOW,
        }
        return fmt.sign(manifest, self.key)


def export_to(
    database_url: str, query: ExportQuery, key: bytes, out: io.BufferedIOBase
) -> dict[str, int]:
    """Write a whole export to ``out`` (the bench and tests); returns what it wrote."""
    export = Export(database_url, query, key)
    written = 0
    for chunk in export.chunks():
        out.write(chunk)
        written += len(chunk)
    return {"bytes": written, "lines": export.lines}
