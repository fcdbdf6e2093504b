"""``agentboard audit replay FILE``: rebuild the read models from an export alone.

The export is verified first (its hashes and links; the signature needs the key and is
not required here) and refused if anything in it is wrong. Then a fresh embedded
PostgreSQL starts in a temporary directory, every event goes into a fresh store at its
original log position with its state byte for byte, the views are built from it, and
the board (counts per status) and, on request, one execution are read back, as they
stood at the export's last position. The audit chain is rebuilt too, and its head for
each execution compared with the export's: the same events give the same hashes.

An execution whose history in the file does not start at its first event (an export
that begins mid-history) cannot be folded; it is left out and named.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from domain.application import ExecutionService
from domain.execution.errors import ExecutionNotFound
from infra.bootstrap import READER_CACHE_SIZE, event_store
from infra.embedded import EmbeddedPostgres
from infra.eventstore import EVENTS_TABLE, ensure_schema
from infra.settings import Settings
from projections.audit import format as fmt
from projections.audit.verify import verify
from projections.engine.registry import datastore_for
from projections.engine.supervisor import ProjectionSupervisor
from projections.views.board_queries import BoardQueries
from projections.views.timeline import jsonable

COPY_EVENTS = (
    f"COPY {EVENTS_TABLE} (notification_id, originator_id, originator_version, topic, state) "
    "FROM STDIN (FORMAT BINARY)"
)
COPY_TYPES = ["int8", "uuid", "int8", "text", "bytea"]
ADVANCE_SEQUENCE = f"SELECT setval(pg_get_serial_sequence('{EVENTS_TABLE}', 'notification_id'), %s)"
SELECT_HEADS = "SELECT execution_id::text, encode(hash, 'hex') FROM audit_executions"


class ReplayRefused(Exception):
    """The file does not verify, or holds nothing that can be replayed."""


@dataclass
class Replayed:
    tenant: str
    position: int
    events: int
    executions: int
    board: dict[str, int]
    partial: list[str] = field(default_factory=list)
    chain_matches: bool = False
    execution: dict[str, Any] | None = None


def replay(path: Path, execution: UUID | None = None) -> Replayed:
    verdict = verify(path)
    if not verdict.intact:
        first = verdict.problems[0] if verdict.problems else "it has no manifest"
        raise ReplayRefused(f"{path} does not verify ({verdict.problem_count} problems; {first})")
    manifest = verdict.manifest or {}
    heads, partial = _histories(path)
    if not heads:
        raise ReplayRefused(f"{path} holds no execution whose history starts at its first event")
    with tempfile.TemporaryDirectory(prefix="agentboard-replay-") as work:
        postgres = EmbeddedPostgres(Path(work), fsync=False)
        url = postgres.start()
        try:
            return _replay(url, path, manifest, heads, partial, execution)
        finally:
            postgres.stop()


def _histories(path: Path) -> tuple[dict[str, str], list[str]]:
    """Each replayable execution's last hash in the file, and the executions that are
    not replayable (their first event in the file is not their first)."""
    heads: dict[str, str] = {}
    partial: set[str] = set()
    for line in _event_lines(path):
        execution_id, version = line["execution_id"], line["version"]
        if execution_id not in heads and execution_id not in partial and version != 1:
            partial.add(execution_id)
        if execution_id not in partial:
            heads[execution_id] = line["hash"]
    return heads, sorted(partial)


def _event_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as stream:
        header = stream.readline()
        if header.startswith(b"seq,record,"):
            raise ReplayRefused("replay reads NDJSON exports (export again with --format ndjson)")
        stream.seek(0)
        for raw in stream:
            if raw.startswith(b'{"execution_id":'):
                line: dict[str, Any] = json.loads(raw)
                line["_raw"] = raw
                yield line


def _state_of(line: dict[str, Any]) -> bytes:
    """The stored state, byte for byte, as the line carries it after ``"data":``."""
    head = fmt.event_record(
        line["position"], line["execution_id"], line["version"], line["prev_hash"],
        line["tenant"], line["agent_id"], line["topic"], line["timestamp"],
        fmt.json_text(line["actor"]), b"",
    )  # fmt: skip
    raw: bytes = line["_raw"]
    return raw[len(head) : raw.rindex(fmt.HASH_FIELD)]


def _replay(
    url: str,
    path: Path,
    manifest: dict[str, Any],
    heads: dict[str, str],
    partial: list[str],
    execution: UUID | None,
) -> Replayed:
    settings = Settings(database_url=url, data_dir=path.parent)
    ensure_schema(url, settings)
    events, last = 0, 0
    with psycopg.connect(url) as conn:
        with conn.cursor().copy(COPY_EVENTS) as copy:
            copy.set_types(COPY_TYPES)
            for line in _event_lines(path):
                if line["execution_id"] in heads:
                    copy.write_row((
                        line["position"], UUID(line["execution_id"]), line["version"],
                        line["topic"], _state_of(line),
                    ))  # fmt: skip
                    events += 1
                    last = line["position"]
        conn.execute(ADVANCE_SEQUENCE, (max(last, 1),))
    service = event_store(settings, url, cache_size=READER_CACHE_SIZE)
    datastore = datastore_for(url, pool_size=2)
    try:
        supervisor = ProjectionSupervisor(service, datastore, database_url=url)
        supervisor.create_tables()
        supervisor.catch_up()
        tenant = str(manifest["tenant"])
        board = BoardQueries(datastore).board(tenant, limit=1)
        with psycopg.connect(url) as conn:
            rebuilt: dict[str, str] = dict(conn.execute(SELECT_HEADS).fetchall())
        return Replayed(
            tenant=tenant,
            position=board.position,
            events=events,
            executions=len(heads),
            board={column.status: column.count or 0 for column in board.columns},
            partial=partial,
            chain_matches=rebuilt == heads,
            execution=_execution(service, execution),
        )
    finally:
        service.close()
        datastore.close()


def _execution(service: ExecutionService, execution: UUID | None) -> dict[str, Any] | None:
    if execution is None:
        return None
    try:
        state = service.state(execution)
    except ExecutionNotFound:
        raise ReplayRefused(f"execution {execution} is not in the export") from None
    shown: dict[str, Any] = jsonable(asdict(state))
    return shown
