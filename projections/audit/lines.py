"""The lines of an audit export: the SQL that reads them, and the two file formats.

NDJSON lines are laid out by PostgreSQL: the record head the chain stored, the stored
state, then the chain fields and ``seq``, concatenated in C beside this process. So the
bytes of a record are exactly the bytes that were hashed, and Python only hands chunks
on. That concatenation is built from ``layout.EVENT_CHAIN``, the definition every other
reader and writer of a line uses. CSV rows are made here, from the same head (parsed)
and state.
"""

from __future__ import annotations

import csv
import io
import json
import queue
import threading
from collections.abc import Generator, Iterator
from typing import Any, TypeVar

from psycopg.rows import TupleRow

from projections.audit import format as fmt
from projections.audit.layout import EVENT_CHAIN, LINE_END
from projections.views.timeline import EVENTS_TABLE

T = TypeVar("T")

KEY_EVENTS = "agentboard_key_events"  # infra.keys writes it
FROM_CHAIN = (
    f"FROM audit_chain c JOIN {EVENTS_TABLE} e ON e.notification_id = c.position "
    "WHERE c.tenant = %s AND c.position > %s AND c.position <= %s{filters} ORDER BY c.position"
)
# The value of each chain field, as PostgreSQL writes it on the line.
CHAIN_VALUES = {
    "hash": "encode(c.hash, 'hex')",
    "tenant_prev": "encode(c.tenant_prev, 'hex')",
    "tenant_hash": "encode(c.tenant_hash, 'hex')",
    "seq": "row_number() OVER (ORDER BY c.position)",
}


def sql_text(text: str) -> str:
    """``text`` as an SQL string constant (the layout's separators: no quote to escape)."""
    if "'" in text or "\\" in text:
        raise ValueError(f"not a plain SQL string constant: {text!r}")
    return f"'{text}'"


LINE_TAIL = "concat({})".format(
    ", ".join(
        [f"{sql_text(separator)}, {CHAIN_VALUES[name]}"
         for name, separator in zip(EVENT_CHAIN.names, EVENT_CHAIN.separators, strict=True)]
        + [sql_text(EVENT_CHAIN.closing + LINE_END)]
    )
)  # fmt: skip
# The line, its position, and whether the stored state holds a line break (see _framed).
SELECT_NDJSON = (
    f"SELECT c.head || e.state || convert_to({LINE_TAIL}, 'UTF8'), c.position, "
    r"position('\x0a'::bytea in e.state) > 0 " + FROM_CHAIN
)
SELECT_CSV = (
    "SELECT c.position, c.head, e.state, c.hash, c.tenant_prev, c.tenant_hash " + FROM_CHAIN
)
KEY_TABLE_EXISTS = f"SELECT to_regclass('{KEY_EVENTS}') IS NOT NULL"
SELECT_KEYS = (
    f"SELECT key_seq, prev_hash, tenant, key_id, role, actor, "
    f"{fmt.SQL_TIMESTAMP.format('created_at')}, hash, queues, revoked FROM {KEY_EVENTS} "
    "WHERE tenant = %s AND created_at >= %s AND created_at <= %s ORDER BY key_seq"
)


class Ndjson:
    select = SELECT_NDJSON

    def header(self) -> bytes:
        return b""

    def events(self, rows: list[TupleRow], seq: int) -> bytes:
        if any(row[2] for row in rows):
            return b"".join([_framed(row[0]) for row in rows])
        return b"".join([row[0] for row in rows])

    def key(self, row: TupleRow, seq: int) -> bytes:
        return key_line(row, seq)

    def manifest(self, manifest: dict[str, Any]) -> bytes:
        return fmt.manifest_line(manifest)


class Csv:
    select = SELECT_CSV

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\n")

    def _rows(self, rows: list[list[Any]]) -> bytes:
        self.buffer.seek(0)
        self.buffer.truncate()
        self.writer.writerows(rows)
        return self.buffer.getvalue().encode()

    def header(self) -> bytes:
        return self._rows([list(fmt.CSV_COLUMNS)])

    def events(self, rows: list[TupleRow], seq: int) -> bytes:
        out = []
        for n, (_, head, state, hash_, tenant_prev, tenant_hash) in enumerate(rows, seq + 1):
            line = json.loads(bytes(head) + b"null}")  # the head ends with "data":
            data = state.replace(b"\n", b"\\n").decode(errors="replace")
            out.append([
                n, "event", line["position"], line["execution_id"], line["version"],
                line["prev_hash"], line["tenant"], line["agent_id"], line["event_type"],
                line["topic"], line["timestamp"], fmt.json_text(line["actor"]), data,
                hash_.hex(), tenant_prev.hex(), tenant_hash.hex(),
            ])  # fmt: skip
        return self._rows(out)

    def key(self, row: TupleRow, seq: int) -> bytes:
        line = key_line(row, seq).decode().rstrip("\n")
        return self._rows([[seq, "key", *[""] * 10, line, bytes(row[7]).hex(), "", ""]])

    def manifest(self, manifest: dict[str, Any]) -> bytes:
        line = fmt.manifest_line(manifest).decode().rstrip("\n")
        return self._rows([["", "manifest", *[""] * 10, line, "", "", ""]])


def key_line(row: TupleRow, seq: int) -> bytes:
    key_seq, prev_hash, tenant, key_id, role, actor, timestamp, hash_, queues, revoked = row
    record = fmt.key_record(
        key_seq, prev_hash.hex(), tenant, key_id, role, actor, timestamp, queues, revoked
    )
    return record + fmt.key_suffix(hash_.hex(), seq)


def _framed(line: bytes) -> bytes:
    """A line break inside a line (only a stored state changed behind the store's back can
    hold one) would split it in two: escape it, and let the hash say that this event is
    not what was chained."""
    body = line[:-1]
    return body.replace(b"\n", b"\\n") + b"\n" if b"\n" in body else line


def ahead(source: Generator[T, None, None], depth: int = 2) -> Iterator[T]:
    """``source``'s items, made by a thread up to ``depth`` items ahead: PostgreSQL lays
    out the next batch while this one is hashed and sent (memory: ``depth`` batches).
    ``source`` runs, and is closed, in that thread only."""
    ready: queue.Queue[tuple[bool, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def put(item: tuple[bool, Any]) -> None:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for item in source:
                put((True, item))
                if stop.is_set():
                    break
            put((False, None))
        except BaseException as error:  # raised in the consumer
            put((False, error))
        finally:
            source.close()

    thread = threading.Thread(target=produce, name="audit-export", daemon=True)
    thread.start()
    try:
        while True:
            more, item = ready.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        thread.join()
