"""The audit chain over a real store: changes to stored history show up in exports, a
chain rebuilt from the log equals the live one, anchors reach JetStream and catch a
rewrite of the whole chain, key events are append-only, and an export's memory stays
flat as history grows."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from uuid import uuid4

import anyio
import psycopg
import pytest
from nats.js.errors import NotFoundError

from infra.audit_anchor import AnchorPublisher
from infra.bootstrap import Container
from infra.keys import KeyStore, Role
from infra.nats import AUDIT_STREAM, anchor_subject, connect, ensure_streams
from projections.audit.chain import AuditChainProjection
from projections.audit.chain_view import AuditChainView
from projections.audit.verify import verify
from projections.engine.control import Control
from projections.engine.errors import BadEvent
from projections.engine.log import LogReader
from projections.engine.rebuild import rebuild
from projections.engine.registry import datastore_for
from projections.engine.runner import ViewRunner
from tests.integration.audit_support import KEY, chained, export, write_history

pytestmark = pytest.mark.anyio

CHAIN_ROWS = (
    "SELECT position, tenant, execution_id, agent_id, occurred_at, head, hash, tenant_prev, "
    "tenant_hash FROM {} ORDER BY position"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def problems(path: Path) -> str:
    return "\n".join(str(p) for p in verify(path, KEY).problems)


def execute(database_url: str, statement: str, params: tuple[object, ...] = ()) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(statement, params)


def test_an_edited_stored_event_shows_in_the_next_export(
    container: Container, database_url: str, tmp_path: Path
) -> None:
    write_history(container.service, 4)
    with chained(container.service, database_url):
        assert verify(export(database_url, tmp_path / "before.ndjson"), KEY).ok
        execute(
            database_url,
            "UPDATE agentboard_events SET state = convert_to(replace(convert_from(state, 'UTF8'), "
            "'notes 2', 'notes X'), 'UTF8') WHERE notification_id = 23",
        )
        text = problems(export(database_url, tmp_path / "after.ndjson"))
    assert "line 23, position 23: edited" in text


def test_a_deleted_stored_event_shows_in_the_next_export(
    container: Container, database_url: str, tmp_path: Path
) -> None:
    write_history(container.service, 4)
    with chained(container.service, database_url):
        execute(database_url, "DELETE FROM agentboard_events WHERE notification_id = 10")
        text = problems(export(database_url, tmp_path / "after.ndjson"))
    assert "position 14: execution" in text
    assert "versions 3 to 3 are missing" in text
    assert "position 11: breaks the tenant chain" in text


def test_a_rebuilt_chain_equals_the_live_one(container: Container, database_url: str) -> None:
    """Live: pages of up to 2,000 as the log grew; rebuilt: pages of 7 from position 0."""
    write_history(container.service, 5)
    with chained(container.service, database_url):
        write_history(container.service, 5)
    with chained(container.service, database_url):
        pass
    datastore = datastore_for(database_url, pool_size=2)
    try:
        fresh = AuditChainProjection(AuditChainView(datastore, suffix="__alt"))
        fresh.view.create_table()
        reader = LogReader(container.service.recorder, container.service.mapper, frozenset())
        runner = ViewRunner(fresh, reader, Control(datastore), page_size=7, poll_interval=1)
        assert runner.catch_up() == 60
    finally:
        datastore.close()
    with psycopg.connect(database_url) as conn:
        live = conn.execute(CHAIN_ROWS.format("audit_chain")).fetchall()
        rebuilt = conn.execute(CHAIN_ROWS.format("audit_chain__alt")).fetchall()
    assert len(live) == 60
    assert rebuilt == live

    datastore = datastore_for(database_url, pool_size=3)  # and as an operator rebuilds it
    try:
        assert rebuild(container.service, datastore, "audit_chain", page_size=11).events == 60
    finally:
        datastore.close()
    with psycopg.connect(database_url) as conn:
        assert conn.execute(CHAIN_ROWS.format("audit_chain")).fetchall() == live


def test_an_event_the_chain_cannot_read_halts_it_right_before(
    container: Container, database_url: str
) -> None:
    write_history(container.service, 2)
    execute(
        database_url,
        "INSERT INTO agentboard_events (originator_id, originator_version, topic, state) "
        "VALUES (%s, 1, 'agentboard.execution.Created.v1', 'not json at all')",
        (uuid4(),),
    )
    datastore = datastore_for(database_url, pool_size=2)
    try:
        projection = AuditChainProjection(AuditChainView(datastore))
        projection.view.create_table()
        Control(datastore).create_tables()
        reader = LogReader(container.service.recorder, container.service.mapper, frozenset())
        runner = ViewRunner(projection, reader, Control(datastore), page_size=100, poll_interval=1)
        with pytest.raises(BadEvent, match=r"position 13 .*its state is not JSON"):
            runner.catch_up()
        assert projection.view.position() == 12
    finally:
        datastore.close()


def test_key_events_are_chained_and_append_only(database_url: str, container: Container) -> None:
    keys = KeyStore(database_url)
    keys.create("default", Role.VIEWER, "key:abc")
    keys.create("default", Role.ADMIN, "agentboard up")
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT role, actor, prev_hash, hash FROM agentboard_key_events ORDER BY key_seq"
        ).fetchall()
    assert [(r[0], json.loads(r[1])) for r in rows] == [
        ("viewer", {"kind": "user", "id": "key:abc"}),
        ("admin", {"kind": "system", "id": "agentboard up"}),
    ]
    assert rows[0][2] == bytes(32)
    assert rows[1][2] == rows[0][3]
    for statement in (
        "UPDATE agentboard_key_events SET role = 'admin'",
        "DELETE FROM agentboard_key_events",
        "TRUNCATE agentboard_key_events",
    ):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            execute(database_url, statement)


async def test_anchors_reach_jetstream_and_catch_a_rewritten_history(
    container: Container, database_url: str, nats_server: str, tmp_path: Path
) -> None:
    ids = await anyio.to_thread.run_sync(write_history, container.service, 4)
    with chained(container.service, database_url) as supervisor:
        nc = await connect(nats_server, "test anchors")
        try:
            js = nc.jetstream()
            await ensure_streams(js)
            publisher = AnchorPublisher(js, database_url)
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
                assert await publisher.publish_once(c) == 1
                assert await publisher.publish_once(c) == 0  # nothing moved
            message = await js.get_last_msg(AUDIT_STREAM, anchor_subject("default"))
            with pytest.raises(NotFoundError):
                await js.get_last_msg(AUDIT_STREAM, anchor_subject("other"))
        finally:
            await nc.drain()
        anchor = json.loads(message.data or b"{}")
        assert anchor["position"] == 24
        path = await anyio.to_thread.run_sync(export, database_url, tmp_path / "a.ndjson")
        last_line = json.loads(path.read_bytes().splitlines()[-2])
        assert last_line["tenant_hash"] == anchor["tenant_hash"]
        assert verify(path, KEY, {24: anchor["tenant_hash"]}).ok

        # Someone with the database removes an execution and recomputes the whole chain:
        # the export is consistent again, but no longer matches the anchor.
        execute(database_url, "DELETE FROM agentboard_events WHERE originator_id = %s", (ids[1],))
        for table in ("audit_chain", "audit_executions", "audit_tenants"):
            execute(database_url, f"TRUNCATE {table}")
        execute(database_url, "UPDATE audit_chain_tracking SET notification_id = 0")
        supervisor.catch_up()
        rewritten = await anyio.to_thread.run_sync(export, database_url, tmp_path / "b.ndjson")
    assert verify(rewritten, KEY).ok
    verdict = verify(rewritten, KEY, {24: anchor["tenant_hash"]})
    assert "position 24: differs from the published anchor" in "\n".join(
        str(p) for p in verdict.problems
    )


async def test_key_records_are_anchored_and_a_rewrite_of_them_is_caught(
    container: Container, database_url: str, nats_server: str, tmp_path: Path
) -> None:
    await anyio.to_thread.run_sync(write_history, container.service, 1)
    keys = KeyStore(database_url)
    for _ in range(2):
        keys.create("default", Role.OPERATOR, "test")
    with chained(container.service, database_url):
        nc = await connect(nats_server, "test key anchors")
        try:
            js = nc.jetstream()
            await ensure_streams(js)
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
                assert await AnchorPublisher(js, database_url).publish_once(c) == 1
            message = await js.get_last_msg(AUDIT_STREAM, anchor_subject("default"))
        finally:
            await nc.drain()
        anchor = json.loads(message.data or b"{}")
        key_seq, key_hash = anchor["key_seq"], anchor["key_hash"]
        path = await anyio.to_thread.run_sync(export, database_url, tmp_path / "a.ndjson")
        assert verify(path, KEY, {}, {key_seq: key_hash}).ok
        forged = verify(path, KEY, {}, {key_seq: "0" * 64})
        assert f"key record {key_seq} differs from the published anchor" in str(forged.problems)

        # Someone with the database drops the append-only trigger and writes the tenant's
        # key records anew: a chain consistent in itself, but not the one anchored.
        execute(database_url, "ALTER TABLE agentboard_key_events DISABLE TRIGGER USER")
        execute(database_url, "DELETE FROM agentboard_key_events WHERE tenant = 'default'")
        execute(database_url, "ALTER TABLE agentboard_key_events ENABLE TRIGGER USER")
        for _ in range(2):
            keys.create("default", Role.OPERATOR, "test")
        rewritten = await anyio.to_thread.run_sync(export, database_url, tmp_path / "b.ndjson")
    assert verify(rewritten, KEY).ok
    verdict = verify(rewritten, KEY, {}, {key_seq: key_hash})
    assert f"the anchored key record {key_seq} is missing from the export" in str(verdict.problems)


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (this test).
EXPORT_RSS = """
import re, sys
from pathlib import Path
from projections.audit.export import ExportQuery, export_to
with open("/dev/null", "wb") as out:
    written = export_to(sys.argv[1], ExportQuery("default"), b"k" * 32, out)
peak = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())
print(written["lines"], int(peak[1]) // 1024)
"""


def peak_rss_of_export(database_url: str) -> tuple[int, int]:
    done = subprocess.run(
        [sys.executable, "-c", EXPORT_RSS, database_url],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    lines, megabytes = done.stdout.split()
    return int(lines), int(megabytes)


@pytest.mark.parametrize("executions", [1000, pytest.param(5000, marks=pytest.mark.soak)])
def test_export_memory_stays_flat_as_history_grows(
    container: Container, database_url: str, executions: int
) -> None:
    write_history(container.service, executions)
    with chained(container.service, database_url) as supervisor:
        lines, small = peak_rss_of_export(database_url)
        assert lines == executions * 6 + 1  # six events each, and the manifest
        writing = threading.Thread(target=write_history, args=(container.service, executions * 3))
        writing.start()
        writing.join()
        supervisor.catch_up()
        lines, large = peak_rss_of_export(database_url)
    assert lines == executions * 24 + 1
    # A 4x longer history (≈ 20 MB more of lines) may not cost the export more than a few MB.
    assert large - small < 12, (small, large)
