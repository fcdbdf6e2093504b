"""Audit exports of a real store, and every kind of tampering with the file caught by
``verify``, with the line and log position it happened at."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from domain.application import ExecutionService
from infra.eventstore import ensure_schema, eventsourcing_env
from infra.keys import KeyStore, Role
from infra.settings import Settings
from projections.audit import format as fmt
from projections.audit import verify as audit_verify
from projections.audit.verify import Verdict, check_signature, verify
from tests.integration.audit_support import KEY, chained, export, write_history

Lines = list[bytes]


@pytest.fixture(scope="module")
def store(
    postgres_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """One store for the module: 12 executions of 3 agents (72 events), two API keys,
    and the audit chain over them."""
    name = "audit_export_module"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = postgres_server.rsplit("/", 1)[0] + f"/{name}"
    settings = Settings(database_url=url, data_dir=tmp_path_factory.mktemp("audit"))
    ensure_schema(url, settings)
    service = ExecutionService(eventsourcing_env(url, settings, create_table=False))
    ids = write_history(service, 12)
    keys = KeyStore(url)
    keys.create("default", Role.VIEWER, "key:alice")
    keys.create("other", Role.ADMIN, "agentboard up")
    keys.create("default", Role.OPERATOR, "key:bob")
    with chained(service, url):
        pass
    directory = tmp_path_factory.mktemp("exports")
    yield {"url": url, "ids": ids, "service": service, "dir": directory}
    service.close()


@pytest.fixture(autouse=True, params=["in one process", "in three segments"])
def segments(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check, in both ways verify reads a file: whole, or cut into segments that
    worker processes check side by side (forced here; a real file needs 64 MB)."""
    if request.param == "in three segments":
        monkeypatch.setattr(audit_verify, "PARALLEL_FROM", 0)
        monkeypatch.setattr(audit_verify, "MAX_WORKERS", 3)
        monkeypatch.setattr(audit_verify.os, "cpu_count", lambda: 3)


@pytest.fixture(scope="module")
def full(store: dict[str, Any]) -> Path:
    return export(store["url"], store["dir"] / "full.ndjson")


def lines_of(path: Path) -> Lines:
    return path.read_bytes().splitlines(keepends=True)


def tampered(path: Path, tmp_path: Path, change: Callable[[Lines], Lines]) -> Path:
    out = tmp_path / "tampered.ndjson"
    out.write_bytes(b"".join(change(lines_of(path))))
    return out


def messages(verdict: Verdict) -> str:
    return "\n".join(str(problem) for problem in verdict.problems)


def field_of(line: bytes, name: str) -> Any:
    return json.loads(line)[name]


def test_a_full_export_verifies_and_carries_what_happened(full: Path) -> None:
    verdict = verify(full, KEY)
    assert verdict.ok, messages(verdict)
    assert (verdict.events, verdict.keys) == (72, 2)  # the key of tenant "other" is not here
    lines = [json.loads(line) for line in lines_of(full)]
    events, keys, manifest = lines[:72], lines[72:74], lines[-1]["manifest"]
    assert [e["position"] for e in events] == list(range(1, 73))
    created = next(e for e in events if e["event_type"] == "Created")
    assert created["actor"] == {"kind": "user", "id": "key:alice"}
    assert created["data"]["prompt"].endswith("résumé ✓")
    completed = [e for e in events if e["event_type"] == "Completed"]
    assert {e["data"]["completion_notes"] for e in completed} == {f"notes {n}" for n in range(12)}
    assert all(e["actor"]["kind"] == "worker" for e in completed)
    assert [(k["role"], k["actor"]) for k in keys] == [
        ("viewer", {"kind": "user", "id": "key:alice"}),
        ("operator", {"kind": "user", "id": "key:bob"}),
    ]
    assert manifest["events"] == {"count": 72, "first_position": 1, "last_position": 72}
    assert manifest["signature"]["algorithm"] == "HMAC-SHA256"


def test_each_line_hash_is_sha256_of_its_record(full: Path) -> None:
    for line in lines_of(full)[:-1]:
        record, _, _ = line.rpartition(fmt.HASH_FIELD)
        assert hashlib.sha256(record).hexdigest() == field_of(line, "hash")


def event_line(lines: Lines, position: int) -> int:
    return next(i for i, line in enumerate(lines) if b',"position":%d,' % position in line[:300])


def test_an_edited_line_is_reported_with_its_position(full: Path, tmp_path: Path) -> None:
    def edit(lines: Lines) -> Lines:
        i = event_line(lines, 30)  # a ToolCalled
        lines[i] = lines[i].replace(b'"tool":"bash"', b'"tool":"fish"')
        assert lines[i] != lines_of(full)[i]
        return lines

    verdict = verify(tampered(full, tmp_path, edit), KEY)
    assert not verdict.ok
    first = verdict.problems[0]
    assert (first.line, first.position) == (30, 30)
    assert "edited" in first.message


def test_an_edited_line_with_a_recomputed_hash_breaks_the_links(full: Path, tmp_path: Path) -> None:
    def forge(lines: Lines) -> Lines:
        i = event_line(lines, 14)  # a PickedUp: its execution has events after it
        changed = lines[i].replace(b'"worker-1"', b'"worker-9"')
        assert changed != lines[i]
        record, _, rest = changed.rpartition(fmt.HASH_FIELD)
        lines[i] = record + fmt.HASH_FIELD + hashlib.sha256(record).hexdigest().encode() + rest[64:]
        return lines

    verdict = verify(tampered(full, tmp_path, forge), KEY)
    text = messages(verdict)
    assert "line 14, position 14: edited: its tenant_hash" in text
    assert "position 26: does not link to execution" in text  # its next event (12 later)
    assert "lines do not match the manifest's digest" in text


def test_a_deleted_line_is_reported_where_it_was(full: Path, tmp_path: Path) -> None:
    verdict = verify(tampered(full, tmp_path, lambda ls: ls[:40] + ls[41:]), KEY)
    text = messages(verdict)
    assert verdict.problems[0].position == 42
    assert "1 line missing before it" in text
    assert "missing before it" in text  # its execution's version too
    assert "breaks the tenant chain" in text


def test_deleting_the_last_event_is_caught_by_the_manifest(full: Path, tmp_path: Path) -> None:
    verdict = verify(tampered(full, tmp_path, lambda ls: ls[:71] + ls[72:]), KEY)
    text = messages(verdict)
    assert "the manifest counts 72 events; the file holds 71" in text
    assert "the last event is at position 72; the file's last is at 71" in text


def test_an_inserted_line_is_reported(full: Path, tmp_path: Path) -> None:
    verdict = verify(tampered(full, tmp_path, lambda ls: [*ls[:50], ls[20], *ls[50:]]), KEY)
    first = verdict.problems[0]
    assert first.line == 51
    assert first.position == 21
    assert "inserted or moved" in first.message
    assert "out of order" in messages(verdict)


def test_a_forged_event_is_reported(full: Path, tmp_path: Path) -> None:
    """A line made up from scratch, hash and all, and numbered in: the chains catch it."""

    def forge(lines: Lines) -> Lines:
        line = json.loads(lines[59])
        line["data"]["text"] = "I never said this"
        data = json.dumps(line["data"], separators=(",", ":")).encode()
        record = fmt.event_record(
            line["position"], line["execution_id"], line["version"], line["prev_hash"],
            line["tenant"], line["agent_id"], line["topic"], line["timestamp"],
            fmt.json_text(line["actor"]), data,
        )  # fmt: skip
        digest = hashlib.sha256(record).hexdigest()
        tenant_hash = fmt.tenant_link(line["tenant_prev"], digest)
        lines[59] = record + fmt.event_suffix(digest, line["tenant_prev"], tenant_hash, 60)
        return lines

    text = messages(verify(tampered(full, tmp_path, forge), KEY))
    assert "position 61: breaks the tenant chain" in text
    assert "position 72: does not link" in text  # the next event of that execution


def test_reordered_lines_are_reported(full: Path, tmp_path: Path) -> None:
    def swap(lines: Lines) -> Lines:
        lines[10], lines[11] = lines[11], lines[10]
        return lines

    verdict = verify(tampered(full, tmp_path, swap), KEY)
    text = messages(verdict)
    assert "line 12, position 11: out of order: comes after position 12" in text
    assert "line 11, position 12" in text


def test_a_truncated_export_says_so(full: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.ndjson"
    data = full.read_bytes()
    cut.write_bytes(data[: data.index(b',"position":20,') + 300])
    text = messages(verify(cut, KEY))
    assert "line 20, position 20: truncated" in text
    assert "missing manifest" in text


def test_a_byte_that_is_not_utf8_is_located(full: Path, tmp_path: Path) -> None:
    def corrupt(lines: Lines) -> Lines:
        i = event_line(lines, 5)
        column = lines[i].index(b"task 4") + 1
        lines[i] = lines[i][:column] + b"\xff" + lines[i][column + 1 :]
        return lines

    verdict = verify(tampered(full, tmp_path, corrupt), KEY)
    first = verdict.problems[0]
    assert (first.line, first.position) == (5, 5)
    assert "not valid UTF-8 (byte 0xff at column" in first.message


def test_a_line_that_is_not_json_is_located(full: Path, tmp_path: Path) -> None:
    def garble(lines: Lines) -> Lines:
        lines[7] = b"this is not an export line\n"
        return lines

    first = verify(tampered(full, tmp_path, garble), KEY).problems[0]
    assert first.line == 8
    assert "not JSON" in first.message


def test_a_missing_manifest_is_reported(full: Path, tmp_path: Path) -> None:
    verdict = verify(tampered(full, tmp_path, lambda ls: ls[:-1]), KEY)
    assert verdict.signature == "missing"
    assert "missing manifest" in messages(verdict)


@pytest.mark.parametrize("key", [KEY, None])
def test_an_edited_signature_algorithm_is_caught(
    full: Path, tmp_path: Path, key: bytes | None
) -> None:  # the algorithm is outside what the signature covers
    def relabel(lines: Lines) -> Lines:
        lines[-1] = lines[-1].replace(b'"algorithm":"HMAC-SHA256"', b'"algorithm":"none"')
        return lines

    verdict = verify(tampered(full, tmp_path, relabel), key)
    assert verdict.signature == "invalid"
    assert "signature algorithm is 'none'" in messages(verdict)


def test_a_wrong_key_is_named(full: Path) -> None:
    verdict = verify(full, b"another deployment's key!")
    assert verdict.signature == "wrong key"
    assert "wrong key: the manifest was signed with key" in messages(verdict)


def test_an_edited_manifest_fails_its_signature(full: Path, tmp_path: Path) -> None:
    def recount(lines: Lines) -> Lines:
        lines[-1] = lines[-1].replace(b'"count":72', b'"count":71')
        return lines[:71] + lines[72:]  # and drop the last event to match

    verdict = verify(tampered(full, tmp_path, recount), KEY)
    assert verdict.signature == "invalid"
    assert "signature does not match" in messages(verdict)


def test_without_a_key_the_hashes_are_checked_and_the_signature_is_not(full: Path) -> None:
    verdict = verify(full)
    assert verdict.intact
    assert verdict.signature == "unchecked"
    assert not verdict.ok


def test_an_outsider_verifies_with_the_standard_library_alone(full: Path, tmp_path: Path) -> None:
    """The recipe in docs/audit.md, run as written, on this export and a tampered copy."""
    docs = (Path(__file__).parents[2] / "docs" / "audit.md").read_text()
    section = docs[docs.index("## Verifying by hand") :]
    start = section.index("```python\n") + len("```python\n")
    script = tmp_path / "check.py"
    script.write_text(section[start : section.index("```", start)])

    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-I", str(script), str(path), KEY.hex()],
            capture_output=True, text=True, check=False,
        )  # fmt: skip

    ok = check(full)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: 74 lines")

    def edit(lines: Lines) -> Lines:
        lines[9] = lines[9].replace(b'"kind":"user"', b'"kind":"root"')
        return lines

    refused = check(tampered(full, tmp_path, edit))
    assert refused.returncode != 0
    assert "lines changed, added, removed or moved" in refused.stderr


def test_a_tampered_key_record_is_caught(full: Path, tmp_path: Path) -> None:
    def promote(lines: Lines) -> Lines:
        lines[72] = lines[72].replace(b'"role":"viewer"', b'"role":"admin"')
        return lines

    assert "key record" in messages(verify(tampered(full, tmp_path, promote), KEY))


# -- filtered exports ------------------------------------------------------------------


def test_an_export_of_one_execution_verifies_on_its_own(
    store: dict[str, Any], tmp_path: Path
) -> None:
    execution = store["ids"][3]
    path = export(store["url"], tmp_path / "one.ndjson", execution=execution)
    verdict = verify(path, KEY)
    assert verdict.ok, messages(verdict)
    assert verdict.events == 6
    assert verdict.keys == 0
    shortened = verify(tampered(path, tmp_path, lambda ls: ls[:2] + ls[3:]), KEY)
    assert "versions 3 to 3 are missing" in messages(shortened)


def test_an_export_of_one_agent_verifies_and_refuses_strangers(
    store: dict[str, Any], full: Path, tmp_path: Path
) -> None:
    path = export(store["url"], tmp_path / "agent.ndjson", agent="agent-1")
    verdict = verify(path, KEY)
    assert verdict.ok, messages(verdict)
    assert verdict.events == 24
    stranger = next(ln for ln in lines_of(full) if b'"agent_id":"agent-2"' in ln)
    inserted = verify(tampered(path, tmp_path, lambda ls: [*ls[:1], stranger, *ls[1:]]), KEY)
    assert "of another agent than the export's: inserted" in messages(inserted)


def test_a_time_range_export_verifies_and_still_reveals_an_omission(
    store: dict[str, Any], tmp_path: Path
) -> None:
    lines = [json.loads(line) for line in lines_of(export(store["url"], tmp_path / "all.ndjson"))]
    start = datetime.fromisoformat(lines[20]["timestamp"])
    end = datetime.fromisoformat(lines[49]["timestamp"])
    path = export(store["url"], tmp_path / "range.ndjson", start=start, end=end)
    verdict = verify(path, KEY)
    assert verdict.ok, messages(verdict)
    assert (verdict.first_position, verdict.last_position) == (21, 50)
    gap = verify(tampered(path, tmp_path, lambda ls: ls[:9] + ls[10:]), KEY)
    assert "position 31: breaks the tenant chain" in messages(gap)


def test_a_csv_export_verifies_and_catches_an_edit(store: dict[str, Any], tmp_path: Path) -> None:
    path = export(store["url"], tmp_path / "all.csv", format="csv")
    verdict = verify(path, KEY)
    assert verdict.ok, messages(verdict)
    assert (verdict.format, verdict.events, verdict.keys) == ("csv", 72, 2)

    def edit(lines: Lines) -> Lines:
        lines[14] = lines[14].replace(b"worker-1", b"worker-7")  # position 14, a PickedUp
        return lines

    changed = verify(tampered(path, tmp_path, edit), KEY)
    assert changed.problems[0].position == 14
    assert "edited" in changed.problems[0].message


def test_the_chain_survives_more_history(store: dict[str, Any], tmp_path: Path) -> None:
    """Chained in two goes (as a live runner does), then exported from the middle on."""
    write_history(store["service"], 2)
    with chained(store["service"], store["url"]):
        pass
    later = datetime.now(UTC)
    path = export(store["url"], tmp_path / "later.ndjson", start=later)
    assert verify(path, KEY).events == 0
    shutil.copy(path, tmp_path / "copy.ndjson")
    assert verify(tmp_path / "copy.ndjson", KEY).ok


# -- malformed input: named with its line, never a traceback ---------------------------


def with_manifest(path: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    def rewrite(lines: Lines) -> Lines:
        manifest = json.loads(lines[-1])["manifest"]
        change(manifest)
        return [*lines[:-1], fmt.manifest_line(manifest)]

    return tampered(path, tmp_path, rewrite)


def drop(outer: str, name: str) -> Callable[[dict[str, Any]], None]:
    return lambda manifest: manifest[outer].pop(name)


def put(outer: str, name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda manifest: manifest[outer].__setitem__(name, value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (drop("tenant_chain", "head"), 'manifest: "tenant_chain.head" is missing'),
        (drop("events", "first_position"), 'manifest: "events.first_position" is missing'),
        (lambda m: m.__setitem__("keys", "x"), 'manifest: "keys" must be an object or null'),
        (put("filters", "agent", ["a"]), 'manifest: "filters.agent" must be a string or null'),
        (put("range", "after", True), 'manifest: "range.after" must be a whole number'),
        (put("signature", "value", 7), 'manifest: "signature.value" must be a string'),
        (lambda m: m.pop("tenant_chain"), 'manifest: "tenant_chain" is missing'),
    ],
)  # fmt: skip
def test_a_manifest_of_the_wrong_shape_says_which_field(
    full: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    verdict = verify(with_manifest(full, tmp_path, change), KEY)
    assert not verdict.intact
    assert f"line 75: {message}" in messages(verdict)
    assert check_signature(with_manifest(full, tmp_path, change), KEY).signature == "missing"


def test_a_byte_that_is_not_utf8_in_the_manifest_is_located(full: Path, tmp_path: Path) -> None:
    def corrupt(lines: Lines) -> Lines:
        column = lines[-1].index(b"agentboard audit verify") + 1
        lines[-1] = lines[-1][:column] + b"\xff" + lines[-1][column + 1 :]
        return lines

    verdict = verify(tampered(full, tmp_path, corrupt), KEY)
    column = lines_of(full)[-1].index(b"agentboard audit verify") + 2
    assert f"line 75: manifest: not valid UTF-8 (byte 0xff at column {column})" in messages(verdict)


def test_a_key_record_whose_tenant_is_not_a_json_string_is_located(
    full: Path, tmp_path: Path
) -> None:
    def escape(lines: Lines) -> Lines:
        lines[72] = lines[72].replace(b'"tenant":"default"', b'"tenant":"def\\qault"')
        return lines

    text = messages(verify(tampered(full, tmp_path, escape), KEY))
    assert "line 73: key record 1: its tenant is not a valid JSON string: edited" in text


def test_lines_beyond_any_parser_are_located(full: Path, tmp_path: Path) -> None:
    """Nested deeper than Python's JSON parser goes; a position of 5,000 digits."""

    def garble(lines: Lines) -> Lines:
        lines[3] = b"[" * 100_000 + b"\n"
        lines[5] = lines[5].replace(b'"position":6,', b'"position":' + b"9" * 5000 + b",")
        return lines

    verdict = verify(tampered(full, tmp_path, garble), KEY)
    text = messages(verdict)
    assert "line 4: not JSON (maximum recursion depth exceeded" in text
    assert "line 6, position 9999999999999999999: not JSON (Exceeds the limit" in text


@pytest.fixture(scope="module")
def csv_export(store: dict[str, Any]) -> Path:
    return export(store["url"], store["dir"] / "all.csv", format="csv")


@pytest.mark.parametrize("column", ["hash", "tenant_prev"])
def test_a_csv_hash_that_is_not_hex_is_located(
    csv_export: Path, tmp_path: Path, column: str
) -> None:
    index = fmt.CSV_COLUMNS.index(column) - len(fmt.CSV_COLUMNS) + 4  # of the last three

    def garble(lines: Lines) -> Lines:
        assert lines[14].startswith(b"14,event,14,")
        row = lines[14].rsplit(b",", 3)
        row[index] = b"zz" + row[index][2:]
        lines[14] = b",".join(row)
        return lines

    verdict = verify(tampered(csv_export, tmp_path, garble), KEY)
    first = verdict.problems[0]
    assert str(first) == f"line 15, position 14: its {column} is not 64 hex digits: edited"
    assert "seq" not in messages(verdict)  # the line is counted: the lines after are in place


def test_a_csv_row_beyond_the_csv_module_limits_is_checked(
    csv_export: Path, tmp_path: Path
) -> None:
    """A field over 128 KiB (a large stored state is legitimate); a seq of digits that
    are not 0-9."""

    def garble(lines: Lines) -> Lines:
        assert b"task 0" in lines[1]  # a Created
        lines[1] = lines[1].replace(b"task 0", b"task " + b"x" * 200_000, 1)
        lines[30] = b"\xc2\xb2" + lines[30][lines[30].index(b",") :]  # seq: superscript 2
        return lines

    verdict = verify(tampered(csv_export, tmp_path, garble), KEY)
    assert [str(problem) for problem in verdict.problems[:2]] == [
        "line 2, position 1: edited: its content does not match its hash",
        "line 31: seq, position or version is not a number: edited",
    ]


def test_the_signature_alone_is_checked_for_replay(
    store: dict[str, Any], full: Path, tmp_path: Path
) -> None:
    """A file forged consistently (every hash recomputed, signed by another key) passes
    every hash; only the signature tells."""
    forged = export(store["url"], tmp_path / "forged.ndjson", key=b"someone else's key")
    assert verify(forged).intact
    assert check_signature(full, KEY).signature == "valid"
    wrong = check_signature(forged, KEY)
    assert wrong.signature == "wrong key"
    assert "wrong key: the manifest was signed with key" in messages(wrong)
    changed = with_manifest(full, tmp_path, put("range", "through", 10**6))
    assert check_signature(changed, KEY).signature == "invalid"
    assert check_signature(full, None).signature == "unchecked"
    missing = check_signature(tampered(full, tmp_path, lambda ls: ls[:-1]), KEY)
    assert (missing.signature, messages(missing)[:16]) == ("missing", "missing manifest")
