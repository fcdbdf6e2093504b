"""The agentboard CLI, a subprocess, against the running stack."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from tests.e2e.conftest import RunningStack, admin_client, module_stack
from tests.e2e.test_api import run_cli, wait_for


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A stack of this module's own: the CLI runs as a user of `up` runs it (the admin key
    from the data dir, tenant `default`), and its lists are read unfiltered or by status,
    where other modules' executions would show up."""
    yield from module_stack(tmp_path_factory, "cli")


@pytest.fixture(scope="module")
def api(stack: RunningStack) -> httpx.Client:
    return admin_client(stack)


@pytest.fixture(autouse=True)
def columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # a usual terminal, whatever pytest runs in


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


def test_list_pages_with_cursors_and_shows_full_ids(
    stack: RunningStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
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


def test_list_fits_80_columns_with_short_ids_the_verbs_take(
    stack: RunningStack, api: httpx.Client
) -> None:
    long_prompt = "tidy up the release notes and then write to everyone who asked about it"
    pending = run_cli(stack, "exec", long_prompt, "--queue", "narrow-terminal-queue")
    waiting = run_cli(stack, "exec", "ask", "--agent", "script", "--param",
                      'steps=[{"ask": "Which branch?"}]')  # fmt: skip
    waiting_id = waiting.stdout.strip()
    wait_for(api, waiting_id, "requires_input")

    listed = run_cli(stack, "execution", "list", "--status", "pending,requires_input")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    page = run_cli(stack, "execution", "list", "--status", "pending,requires_input", "-o", "json")
    items = json.loads(page.stdout)["items"]
    assert {item["id"] for item in items} >= {pending.stdout.strip(), waiting_id}
    for item in items:  # status, agent, queue and age whole on every row; full ids in JSON
        [row] = [line for line in lines if line.startswith(item["id"][:8] + " ")]
        words = row.split()
        assert words[1:4] == [item["status"], item["agent_id"], item["worker_queue"]], row
        assert "ago" in row
    assert "tidy up" in listed.stdout  # the prompt takes the squeeze

    shown = run_cli(stack, "execution", "get", waiting_id[:8])
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(waiting_id)
    assert "Which branch?" in shown.stdout
    cancelled = run_cli(stack, "execution", "cancel", pending.stdout.strip()[:8])
    assert cancelled.stdout.strip() == f"{pending.stdout.strip()} cancelled"
    nobody = run_cli(stack, "execution", "get", "00000000")
    assert nobody.returncode == 1
    assert "no execution's id starts with '00000000'" in nobody.stderr


def test_get_shows_the_prompt_timings_tool_calls_and_artifacts(
    stack: RunningStack, api: httpx.Client
) -> None:
    steps = [{"tool": "search", "args": {"q": "cats"}},
             {"artifact": {"name": "notes.md", "text": "# notes\n"}}]  # fmt: skip
    deadline = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    body = {"agent_id": "script", "prompt": "find cats\nand note them", "priority": 5,
            "labels": {"team": "search"}, "deadline": deadline,
            "parameters": {"steps": steps}}  # fmt: skip
    execution_id = api.post("/v1/executions", json=body).json()["id"]
    assert wait_for(api, execution_id, "completed")["status"] == "completed"

    shown = run_cli(stack, "execution", "get", execution_id)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "find cats" in out
    assert "and note them" in out
    assert re.search(r"priority\s+5\s", out)
    assert "team=search" in out
    assert re.search(r"deadline\s+\S+ \(in 2h\)", out)
    assert re.search(r"created by\s+api:key:[0-9a-f]+", out)
    assert "{'kind'" not in out
    # time in each status, human readable: "pending 35ms, running 120ms, completed 1.2s"
    assert re.search(r"time in status\s+pending \d+(ms|\.\ds), running \d+(ms|\.\ds), "
                     r"completed \d", out), out  # fmt: skip
    assert re.search(r"search\s+\{\"q\": \"cats\"\}\s+success\s+\d+ms", out), out
    assert "notes.md" in out
    assert "text/markdown" in out or "text/plain" in out

    as_json = run_cli(stack, "execution", "get", execution_id, "-o", "json")
    got = json.loads(as_json.stdout)
    assert got["id"] == execution_id
    assert got["tool_calls"][0]["outcome"] == "success"
    events = json.loads(run_cli(stack, "execution", "logs", execution_id, "-o", "json").stdout)
    assert events[0]["type"] == "Created"
    assert events[-1]["type"] == "Completed"


def test_list_takes_a_comma_list_of_statuses_and_bad_input_names_the_flag(
    stack: RunningStack, api: httpx.Client
) -> None:
    run_cli(stack, "exec", "waits", "--queue", "statuses")
    run_cli(stack, "exec", "waits too", "--queue", "statuses")
    for args in (("--status", "pending,cancelled"), ("--status", "pending", "--status", "failed")):
        listed = run_cli(stack, "execution", "list", "--queue", "statuses", *args, "-o", "json")
        assert listed.returncode == 0, listed.stderr
        assert [item["status"] for item in json.loads(listed.stdout)["items"]] == ["pending"] * 2
    only_running = run_cli(stack, "execution", "list", "--queue", "statuses", "--status",
                           "running,blocked")  # fmt: skip
    assert only_running.stdout.strip() == "no executions match"

    cases = [
        (("execution", "list", "--older-than", "7x"),
         "agentboard: --older-than: an age looks like 30m, 12h or 7d (got '7x')", 2),
        (("execution", "list", "--status", "pending,sleeping"), "unknown status 'sleeping'", 2),
        (("execution", "get", "not-a-uuid"), "'not-a-uuid' is not a valid execution id", 2),
        (("execution", "respond", "nope", "yes"), "is not a valid execution id", 2),
        (("execution", "get", str(uuid4())), "does not exist", 1),
    ]  # fmt: skip
    for args, words, code in cases:
        result = run_cli(stack, *args)
        assert result.returncode == code, (args, result.stderr)
        assert words in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_respond_resumes_a_waiting_execution(stack: RunningStack, api: httpx.Client) -> None:
    made = run_cli(stack, "exec", "ask", "--agent", "script", "--param",
                   'steps=[{"ask": "Which branch?"}, {"say": "ok"}]')  # fmt: skip
    execution_id = made.stdout.strip()
    assert wait_for(api, execution_id, "requires_input")["question"] == "Which branch?"

    answered = run_cli(stack, "execution", "respond", execution_id, "main")
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip() == f"{execution_id} running"
    done = wait_for(api, execution_id, "completed")
    assert done["result"] == {"answers": ["main"]}
    again = run_cli(stack, "execution", "respond", execution_id, "main")
    assert again.returncode == 1  # it no longer asks
    assert len(again.stderr.strip().splitlines()) == 1


def test_retry_starts_a_failed_execution_again(stack: RunningStack, api: httpx.Client) -> None:
    failed = run_cli(stack, "exec", "exit 3", "--wait")
    assert failed.returncode == 1
    execution_id = failed.stdout.splitlines()[0]

    retried = run_cli(stack, "execution", "retry", execution_id)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.startswith(execution_id)
    assert api.get(f"/v1/executions/{execution_id}").json()["attempt"] == 2
    assert wait_for(api, execution_id, "failed")["attempt"] == 2


def test_exec_wait_exits_1_when_the_execution_is_cancelled(stack: RunningStack) -> None:
    env = {**os.environ, "AGENTBOARD_URL": stack.url, "AGENTBOARD_DATA_DIR": str(stack.data_dir)}
    env.pop("AGENTBOARD_API_KEY", None)
    agentboard = Path(sys.executable).parent / "agentboard"
    waiting = subprocess.Popen(
        [str(agentboard), "exec", "never served", "--queue", "nobody", "--wait"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert waiting.stdout is not None
    execution_id = waiting.stdout.readline().strip()
    assert run_cli(stack, "execution", "cancel", execution_id).returncode == 0
    _, stderr = waiting.communicate(timeout=30)
    assert waiting.returncode == 1
    assert stderr.strip() == "agentboard: cancelled"


def test_projections_status_as_a_table_and_as_json(stack: RunningStack) -> None:
    table = run_cli(stack, "projections", "status")
    assert table.returncode == 0, table.stderr
    assert re.search(r"board\W+running", table.stdout), table.stdout

    as_json = run_cli(stack, "projections", "status", "--output", "json")
    assert as_json.returncode == 0, as_json.stderr
    status = json.loads(as_json.stdout)
    views = {view["view"]: view for view in status["views"]}
    assert {"board", "status_intervals", "tool_calls", "audit_chain"} <= set(views)
    assert views["board"]["state"] == "running"
    assert status["head"] >= views["board"]["position"] >= 0


def test_every_verb_has_an_example_in_its_help(stack: RunningStack) -> None:
    verbs = [("up",), ("worker",), ("exec",), ("execution", "list"), ("execution", "get"),
             ("execution", "logs"), ("execution", "respond"), ("execution", "cancel"),
             ("execution", "retry"), ("execution", "complete"), ("projections", "status"),
             ("projections", "rebuild"), ("projections", "skip"), ("keys", "create"),
             ("keys", "list"), ("keys", "revoke"), ("audit", "export"), ("audit", "verify"),
             ("audit", "replay")]  # fmt: skip
    for verb in verbs:
        shown = run_cli(stack, *verb, "--help")
        assert shown.returncode == 0, shown.stderr
        example = shown.stdout.split("Example")[-1]
        assert re.search(rf"agentboard {' '.join(verb)}\b", example), (verb, shown.stdout)
