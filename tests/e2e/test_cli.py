"""The agentboard CLI, a subprocess, against the running stack."""

from __future__ import annotations

import json
from uuid import uuid4

from tests.e2e.conftest import RunningStack
from tests.e2e.test_api import run_cli


def test_exec_wait_list_get_and_json_output(stack: RunningStack) -> None:
    done = run_cli(stack, "exec", "echo hello from the shell agent", "--wait")
    assert done.returncode == 0, done.stderr
    execution_id = done.stdout.splitlines()[0]
    assert json.loads(done.stdout.splitlines()[1]) == {"exit_codes": [0], "commands": 1}

    listed = run_cli(stack, "execution", "list", "--status", "completed", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    assert execution_id in [item["id"] for item in json.loads(listed.stdout)["items"]]

    logs = run_cli(stack, "execution", "logs", execution_id)
    assert "hello from the shell agent" in logs.stdout

    shown = run_cli(stack, "execution", "get", execution_id)
    assert shown.returncode == 0
    assert "completed" in shown.stdout
    assert "bash" in shown.stdout  # its tool call


def test_exit_codes_say_what_happened(stack: RunningStack) -> None:
    failed = run_cli(stack, "exec", "exit 3", "--wait")
    assert failed.returncode == 1
    assert "failed" in failed.stderr

    script = run_cli(stack, "exec", "x", "--agent", "script", "--param",
                     'steps=[{"ask": "Which branch?"}]')  # fmt: skip
    assert script.returncode == 0
    waiting_id = script.stdout.strip()

    bad_status = run_cli(stack, "execution", "list", "--status", "sleeping")
    assert bad_status.returncode == 2
    assert "unknown status" in bad_status.stderr
    assert "Traceback" not in bad_status.stderr

    unknown = run_cli(stack, "execution", "cancel", str(uuid4()))
    assert unknown.returncode == 1
    assert "does not exist" in unknown.stderr

    bad_param = run_cli(stack, "exec", "x", "--param", "novalue")
    assert bad_param.returncode == 2

    wrong_key = run_cli(stack, "execution", "list", key="ab_wrong_key")
    assert wrong_key.returncode == 2
    assert "unknown or revoked" in wrong_key.stderr

    cancelled = run_cli(stack, "execution", "cancel", waiting_id)
    assert cancelled.returncode == 0, cancelled.stderr


def test_an_unreachable_server_is_one_clear_line(stack: RunningStack) -> None:
    result = run_cli(stack, "execution", "list", "--url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert "cannot reach" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_list_pages_with_cursors_and_shows_full_ids(stack: RunningStack) -> None:
    made = [run_cli(stack, "exec", f"page {n}", "--queue", "unserved").stdout.strip()
            for n in range(3)]  # fmt: skip
    first = run_cli(stack, "execution", "list", "--queue", "unserved", "--limit", "2")
    assert first.returncode == 0, first.stderr
    assert "--cursor" in first.stderr
    cursor = first.stderr.split("--cursor ")[1].split()[0]
    second = run_cli(stack, "execution", "list", "--queue", "unserved", "--limit", "2",
                     "--cursor", cursor, "--output", "json")  # fmt: skip
    page = json.loads(second.stdout)
    seen = [line for line in first.stdout.splitlines() if any(i in line for i in made)]
    assert len(seen) == 2  # full ids in the table, usable with `get`
    assert [item["id"] for item in page["items"]] == [i for i in made if i not in first.stdout]
    assert page["next_cursor"] is None


def test_a_worker_starts_only_with_a_key_that_may_report_work(stack: RunningStack) -> None:
    viewer = run_cli(stack, "keys", "create", "--tenant", "default", "--role", "viewer")
    refused = run_cli(stack, "worker", key=viewer.stdout.strip())
    assert refused.returncode == 2
    assert "role worker" in refused.stderr
    assert "Traceback" not in refused.stderr

    mistyped = run_cli(stack, "worker", key="ab_wrong_key")
    assert mistyped.returncode == 2
    assert "not valid" in mistyped.stderr
    assert (stack.data_dir / "worker.key").exists()  # what `up`'s own worker reports with
