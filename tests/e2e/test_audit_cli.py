"""The audit trail end to end: a running stack, operator actions through the API, then
`agentboard audit export | verify | replay` as a user runs them (subprocesses)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js.errors import NotFoundError

from infra.nats import AUDIT_STREAM, anchor_subject, connect
from projections.audit import format as fmt
from tests.e2e.conftest import RunningStack, start_stack
from tests.e2e.test_api import client, run_cli, wait_for
from tests.eventually import eventually, eventually_async


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A stack of this module's own: the tests export, verify and replay the whole trail of
    tenant `default` (the tenant of `up`'s keys, read from the data dir as a user would),
    compare it with the board, and check the last key records and anchors; anything
    another module did there would show up in them."""
    running = start_stack(tmp_path_factory.mktemp("audit") / "data")
    yield running
    if running.process.poll() is None:
        running.stop()


@pytest.fixture(scope="module")
def history(stack: RunningStack) -> dict[str, Any]:
    """Every operator action at least once, by the admin key of `up`."""
    admin_key = (stack.data_dir / "admin.key").read_text().strip()
    api = client(stack, admin_key)

    def create(steps: list[dict[str, Any]], **extra: Any) -> str:
        body = {"agent_id": "script", "prompt": "audit me", "parameters": {"steps": steps}}
        created = api.post("/v1/executions", json={**body, **extra})
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    done = create([{"tool": "search", "args": {"q": "x"}}, {"say": "found it"}])
    asked = create([{"ask": "Which branch?"}], created_by={"kind": "schedule", "id": "nightly"})
    wait_for(api, asked, "requires_input")
    assert api.post(f"/v1/executions/{asked}/input", json={"answer": "main"}).status_code == 200
    failed = create([{"fail": "no such repository"}])
    wait_for(api, failed, "failed")
    assert api.post(f"/v1/executions/{failed}/retry").status_code == 200
    held = create([{"sleep": 30}])
    wait_for(api, held, "running")
    assert api.post(f"/v1/executions/{held}/block", json={"reason": "waiting on legal"}).is_success
    assert api.post(f"/v1/executions/{held}/unblock").is_success
    bulk = api.post("/v1/executions/bulk", json={
        "action": "complete", "filter": {"ids": [held]}, "reason": "closed by hand"})  # fmt: skip
    assert bulk.status_code == 200, bulk.text
    waiting = create([{"tool": "x", "args": {}}], worker_queue="nobody")
    cancelled = create([{"tool": "x", "args": {}}], worker_queue="nobody")
    assert api.post(f"/v1/executions/{cancelled}/cancel").status_code == 200
    gpu = run_cli(stack, "keys", "create", "--tenant", "default", "--role", "worker",
                  "--queue", "gpu")  # fmt: skip
    assert gpu.returncode == 0, gpu.stderr
    assert run_cli(stack, "keys", "revoke", gpu.stdout.strip()).returncode == 0
    made = run_cli(stack, "keys", "create", "--tenant", "default", "--role", "viewer")
    assert made.returncode == 0, made.stderr
    for execution_id, status in ((done, "completed"), (asked, "completed"), (failed, "failed"),
                                 (held, "completed")):  # fmt: skip
        assert wait_for(api, execution_id, status)["status"] == status
    eventually(lambda: api.get(f"/v1/executions/{failed}").json(),  # its second attempt
               lambda body: (body["status"], body["attempt"]) == ("failed", 2),
               what=f"retried {failed} to fail again")  # fmt: skip
    ids = {"done": done, "asked": asked, "failed": failed, "held": held, "waiting": waiting,
           "cancelled": cancelled}  # fmt: skip
    return {"api": api, "admin_key": admin_key, "viewer_key": made.stdout.strip(), "ids": ids}


def cli(
    stack: RunningStack, *args: str, data_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`agentboard` as run by an outsider: no server URL, no key, only the data dir."""
    env = {**os.environ, "AGENTBOARD_DATA_DIR": str(data_dir or stack.data_dir)}
    env.pop("AGENTBOARD_API_KEY", None)
    agentboard = Path(sys.executable).parent / "agentboard"
    return subprocess.run(
        [str(agentboard), *args], env=env, capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip


def exported(stack: RunningStack, path: Path, *options: str) -> list[dict[str, Any]]:
    result = run_cli(stack, "audit", "export", "-o", str(path), *options)
    assert result.returncode == 0, result.stderr
    assert "exported" in result.stderr
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_operator_action_is_in_the_export_with_its_actor(
    stack: RunningStack, history: dict[str, Any], tmp_path: Path
) -> None:
    lines = exported(stack, tmp_path / "all.ndjson")
    admin = {"kind": "user", "id": f"key:{history['admin_key'].split('_')[1]}"}
    ids = history["ids"]

    def actors(execution: str, event_type: str) -> list[dict[str, str]]:
        return [
            line["actor"] for line in lines
            if line.get("execution_id") == execution and line["event_type"] == event_type
        ]  # fmt: skip

    assert actors(ids["done"], "Created") == [{"kind": "api", "id": admin["id"]}]
    assert actors(ids["asked"], "Created") == [  # the creator claimed, and the key that did
        {"kind": "schedule", "id": "nightly", "via": admin["id"]}
    ]
    assert actors(ids["asked"], "InputProvided") == [admin]
    assert admin in actors(ids["failed"], "RetryScheduled")
    assert actors(ids["held"], "Blocked") == [admin]
    assert actors(ids["held"], "Unblocked") == [admin]
    assert actors(ids["held"], "Completed") == [admin]
    assert actors(ids["cancelled"], "Cancelled") == [admin]
    assert actors(ids["done"], "ToolCalled")[0]["kind"] == "worker"
    notes = [ln["data"]["completion_notes"] for ln in lines if ln.get("event_type") == "Completed"
             and ln["execution_id"] == ids["held"]]  # fmt: skip
    assert notes == ["closed by hand"]
    keys = [line for line in lines if "key_seq" in line]
    assert [(k["role"], k["actor"], k.get("queues"), k.get("revoked")) for k in keys][-3:] == [
        ("worker", admin, ["gpu"], None), ("worker", admin, ["gpu"], True),
        ("viewer", admin, None, None),
    ]  # fmt: skip


def test_export_verify_and_tampering_from_the_command_line(
    stack: RunningStack, history: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "all.ndjson"
    exported(stack, path)
    ok = cli(stack, "audit", "verify", str(path))  # the key: <data dir>/audit.key
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "signature: valid" in ok.stdout

    lines = path.read_bytes().splitlines(keepends=True)
    i = next(i for i, line in enumerate(lines) if i > 2 and b'"prompt":"audit me"' in line)
    lines[i] = lines[i].replace(b'"prompt":"audit me"', b'"prompt":"audit ME"')
    edited = tmp_path / "edited.ndjson"
    edited.write_bytes(b"".join(lines))
    position = json.loads(lines[i])["position"]
    refused = cli(stack, "audit", "verify", str(edited))
    assert refused.returncode == 1
    assert f"line {i + 1}, position {position}: edited" in refused.stdout
    assert "does not verify" in refused.stderr
    assert "Traceback" not in refused.stderr

    lines = path.read_bytes().splitlines(keepends=True)
    i = next(i for i, line in enumerate(lines) if b'"queues":["gpu"],"revoked"' in line)
    lines[i] = lines[i].replace(b'"queues":["gpu"]', b'"queues":["cpu","gpu"]')
    edited.write_bytes(b"".join(lines))
    widened = cli(stack, "audit", "verify", str(edited))
    assert widened.returncode == 1
    assert f"line {i + 1}" in widened.stdout
    assert "key record" in widened.stdout

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    unsigned = cli(stack, "audit", "verify", str(path), data_dir=elsewhere)
    assert unsigned.returncode == 3
    assert "signature was NOT checked" in unsigned.stderr

    wrong = elsewhere / "other.key"
    wrong.write_text("ab" * 32)
    wrong_key = cli(stack, "audit", "verify", str(path), "--key-file", str(wrong))
    assert wrong_key.returncode == 1
    assert "wrong key" in wrong_key.stdout

    truncated = tmp_path / "truncated.ndjson"
    truncated.write_bytes(path.read_bytes()[:-200])
    cut = cli(stack, "audit", "verify", str(truncated))
    assert cut.returncode == 1
    assert "the manifest is cut short" in cut.stdout

    for bad, message in ((tmp_path / "nope.ndjson", "cannot read"),
                         (elsewhere / "missing.key", "cannot read the audit key")):  # fmt: skip
        args = ["audit", "verify", str(bad)] if "nope" in bad.name else [
            "audit", "verify", str(path), "--key-file", str(bad)]  # fmt: skip
        result = cli(stack, *args)
        assert result.returncode == 2
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def last_anchor(stack: RunningStack) -> dict[str, Any]:
    """The newest anchor the stack published for tenant `default` (waiting for one)."""

    async def fetch() -> dict[str, Any]:
        nc = await connect(stack.stack["nats_url"], "test audit anchors")
        try:
            js = nc.jetstream()
            message = await eventually_async(
                lambda: js.get_last_msg(AUDIT_STREAM, anchor_subject("default")),
                what="an anchor of tenant default", interval=0.5, ignoring=(NotFoundError,),
            )  # fmt: skip
            found: dict[str, Any] = json.loads(message.data or b"{}")
            return found
        finally:
            await nc.drain()

    return asyncio.run(fetch())


def test_the_stack_anchors_its_chain_on_jetstream(
    stack: RunningStack, history: dict[str, Any], tmp_path: Path
) -> None:
    anchor = last_anchor(stack)
    path = tmp_path / "all.ndjson"
    exported(stack, path)
    assert anchor["key_seq"] is not None  # `up` made the admin's and the worker's keys
    anchored = cli(stack, "audit", "verify", str(path),
                   "--anchor", f"{anchor['position']}={anchor['tenant_hash']}",
                   "--anchor", f"key:{anchor['key_seq']}={anchor['key_hash']}")  # fmt: skip
    assert anchored.returncode == 0, anchored.stdout
    rekeyed = cli(stack, "audit", "verify", str(path), "--anchor",
                  f"key:{anchor['key_seq']}={'0' * 64}")  # fmt: skip
    assert rekeyed.returncode == 1
    assert "differs from the published anchor: the key records were rewritten" in rekeyed.stdout
    assert cli(stack, "audit", "verify", str(path), "--anchor", "key:x=1").returncode == 2
    forged = cli(
        stack, "audit", "verify", str(path), "--anchor", f"{anchor['position']}={'0' * 64}"
    )
    assert forged.returncode == 1
    assert "differs from the published anchor" in forged.stdout


def test_filtered_exports_verify_on_their_own(
    stack: RunningStack, history: dict[str, Any], tmp_path: Path
) -> None:
    ids = history["ids"]
    one = exported(stack, tmp_path / "one.ndjson", "--execution", ids["asked"])
    assert {line.get("execution_id") for line in one[:-1]} == {ids["asked"]}
    assert cli(stack, "audit", "verify", str(tmp_path / "one.ndjson")).returncode == 0
    every = exported(stack, tmp_path / "every.ndjson")
    middle = every[len(every) // 2]["timestamp"]
    ranged = exported(stack, tmp_path / "range.ndjson", "--from", middle)
    assert ranged[0]["timestamp"] >= middle
    assert cli(stack, "audit", "verify", str(tmp_path / "range.ndjson")).returncode == 0
    exported_csv = run_cli(stack, "audit", "export", "--format", "csv", "--agent", "script",
                           "-o", str(tmp_path / "script.csv"))  # fmt: skip
    assert exported_csv.returncode == 0, exported_csv.stderr
    assert cli(stack, "audit", "verify", str(tmp_path / "script.csv")).returncode == 0


def test_replay_equals_the_source(
    stack: RunningStack, history: dict[str, Any], tmp_path: Path
) -> None:
    api: httpx.Client = history["api"]
    lines = exported(stack, tmp_path / "all.ndjson")
    last_position = lines[-1]["manifest"]["events"]["last_position"]
    board = api.get("/v1/board", params={"as_of": last_position}).json()
    source_counts = {column["status"]: column["count"] for column in board["columns"]}
    asked = history["ids"]["asked"]
    source = api.get(f"/v1/executions/{asked}").json()

    key_file = str(stack.data_dir / "audit.key")
    replayed = cli(stack, "audit", "replay", str(tmp_path / "all.ndjson"), "--execution", asked,
                   "--output", "json", "--key-file", key_file, data_dir=tmp_path)  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    result = json.loads(replayed.stdout)
    assert result["position"] == last_position
    assert result["board"] == source_counts
    assert result["chain_matches"] is True
    execution = result["execution"]
    same = ("id", "tenant", "agent_id", "prompt", "status", "attempt", "created_by", "result",
            "error", "completion_notes", "question", "cancel_requested")  # fmt: skip
    for name in same:
        assert execution[name] == source[name], name
    for name in ("created_at", "updated_at"):
        assert datetime.fromisoformat(execution[name]) == datetime.fromisoformat(source[name])

    unsigned = cli(stack, "audit", "replay", str(tmp_path / "all.ndjson"), data_dir=tmp_path)
    assert unsigned.returncode == 3, unsigned.stderr  # no key here: replayed, said unsigned
    assert "completed" in unsigned.stdout
    assert "recomputed identically" in unsigned.stdout
    assert "signature was NOT checked" in unsigned.stderr


def test_replay_refuses_a_file_whose_signature_does_not_match(
    stack: RunningStack, history: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "all.ndjson"
    exported(stack, path)
    *body, last = path.read_bytes().splitlines(keepends=True)
    manifest = json.loads(last)["manifest"]
    manifest["exported_at"] = "2020-01-01T00:00:00.000000Z"  # the lines still match it
    changed = tmp_path / "changed.ndjson"
    changed.write_bytes(b"".join(body) + fmt.manifest_line(manifest))
    refused = cli(stack, "audit", "replay", str(changed))  # the key: <data dir>/audit.key
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "the manifest's signature does not match: it was changed" in refused.stderr
    assert "Traceback" not in refused.stderr
    wrong = tmp_path / "other.key"
    wrong.write_text("ab" * 32)
    wrong_key = cli(stack, "audit", "replay", str(path), "--key-file", str(wrong))
    assert wrong_key.returncode == 1
    assert "wrong key" in wrong_key.stderr


def test_malformed_exports_are_named_never_a_traceback(
    stack: RunningStack, history: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "all.ndjson"
    exported(stack, path)
    lines = path.read_bytes().splitlines(keepends=True)
    at_manifest = len(lines)
    key_line = next(i for i, line in enumerate(lines) if line.startswith(b'{"key_seq":'))
    csv_path = tmp_path / "all.csv"
    made = run_cli(stack, "audit", "export", "--format", "csv", "-o", str(csv_path))
    assert made.returncode == 0, made.stderr
    rows = csv_path.read_bytes().splitlines(keepends=True)

    def headless(manifest: dict[str, Any]) -> bytes:
        del manifest["tenant_chain"]["head"]
        return fmt.manifest_line(manifest)

    bad_byte = lines[-1].index(b'"verify":"') + 11
    cases = {
        "no_head.ndjson": (
            [*lines[:-1], headless(json.loads(lines[-1])["manifest"])],
            f'line {at_manifest}: manifest: "tenant_chain.head" is missing',
        ),
        "escape.ndjson": (
            [*lines[:key_line], lines[key_line].replace(b'"default"', b'"def\\qault"', 1),
             *lines[key_line + 1 :]],
            f"line {key_line + 1}: key record {json.loads(lines[key_line])['key_seq']}: its "
            "tenant is not a valid JSON string: edited",
        ),
        "not_utf8.ndjson": (
            [*lines[:-1], lines[-1][: bad_byte - 1] + b"\xff" + lines[-1][bad_byte:]],
            f"line {at_manifest}: manifest: not valid UTF-8 (byte 0xff at column {bad_byte})",
        ),
        "not_hex.csv": (
            [*rows[:3], b",".join([*rows[3].rsplit(b",", 3)[:1], b"zz" * 32,
                                   *rows[3].rsplit(b",", 3)[2:]]), *rows[4:]],
            f"line 4, position {rows[3].split(b',')[2].decode()}: its hash is not 64 hex "
            "digits: edited",
        ),
    }  # fmt: skip
    for name, (content, message) in cases.items():
        bad = tmp_path / name
        bad.write_bytes(b"".join(content))
        result = cli(stack, "audit", "verify", str(bad))
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        assert message in result.stdout, (name, result.stdout)
        assert "does not verify" in result.stderr
        assert "Traceback" not in result.stderr


def test_bad_requests_get_clear_answers(
    stack: RunningStack, history: dict[str, Any], tmp_path: Path
) -> None:
    viewer = client(stack, history["viewer_key"])
    allowed = viewer.get("/v1/audit/export", params={"execution": history["ids"]["done"]})
    assert allowed.status_code == 200
    assert allowed.headers["content-type"].startswith("application/x-ndjson")
    for params, status in (({"tenant": "acme"}, 403), ({"from": "yesterday"}, 400),
                           ({"execution": "9f1c2b1e-0000-4000-8000-000000000000"}, 404),
                           ({"from": "2030-01-01T00:00:00Z", "to": "2020-01-01T00:00:00Z"}, 400),
                           ({"format": "xml"}, 400), ({"agent": "a\x00b"}, 400),
                           ({"from": "0001-01-01T00:00:00+05:00"}, 400)):  # fmt: skip
        refused = viewer.get("/v1/audit/export", params=params)
        assert refused.status_code == status, (params, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["detail"]
    bad_time = run_cli(stack, "audit", "export", "--from", "last tuesday")
    assert bad_time.returncode == 2
    assert "ISO 8601" in bad_time.stderr
    replay_bad = cli(stack, "audit", "replay", str(tmp_path / "nothing.ndjson"))
    assert replay_bad.returncode == 2
    garbage = tmp_path / "garbage.ndjson"
    garbage.write_bytes(b"\xff\xfe not an export\n")
    replay_garbage = cli(stack, "audit", "replay", str(garbage))
    assert replay_garbage.returncode == 1
    assert "does not verify" in replay_garbage.stderr
    assert "Traceback" not in replay_garbage.stderr
