"""Live streams (SSE) against the running stack: the board and one execution's events."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any
from uuid import uuid4

import httpx
import pytest

from infra.keys import KeyStore, Role
from infra.processes import free_port
from tests.e2e.conftest import RunningStack, new_tenant
from tests.e2e.sse import SseReader

OURS, ACME = new_tenant(), new_tenant()  # this module's tenants on the shared stack


@pytest.fixture(scope="module")
def running(shared_stack: RunningStack) -> RunningStack:
    return shared_stack


@pytest.fixture(scope="module")
def keys(running: RunningStack) -> dict[str, str]:
    store = KeyStore(running.stack["database_url"])
    return {
        "operator": store.create(OURS, Role.OPERATOR, "streams"),
        "viewer": store.create(OURS, Role.VIEWER, "streams"),
        "acme": store.create(ACME, Role.OPERATOR, "streams"),
    }


def create(running: RunningStack, key: str, steps: list[Any], **fields: Any) -> dict[str, Any]:
    body = {"agent_id": "script", "prompt": "streamed", "parameters": {"steps": steps}, **fields}
    response = httpx.post(
        f"{running.url}/v1/executions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_the_board_stream_shows_a_card_move_from_pending_to_completed(
    running: RunningStack, keys: dict[str, str]
) -> None:
    board = SseReader(running.url, "/v1/board/stream", keys["viewer"])
    assert board.status == 200
    execution = create(running, keys["operator"], [{"tool": "search", "args": {}}])

    seen = board.until(
        lambda e: e.data["execution"]["id"] == execution["id"] and e.data["event"] == "Completed"
    )
    mine = [e for e in seen if e.data["execution"]["id"] == execution["id"]]
    events = [e.data["event"] for e in mine]
    assert events[0] == "Created"
    assert events[-1] == "Completed"
    assert events.index("PickedUp") < events.index("ToolCalled") < events.index("Completed")
    # each message carries the card as the board shows it by then: never going backwards
    order = ["pending", "running", "completed"]
    statuses = [order.index(e.data["execution"]["status"]) for e in mine]
    assert statuses == sorted(statuses)
    assert [e.event for e in mine] == ["execution"] * len(mine)
    assert [e.id for e in mine] == sorted(e.id for e in mine)  # ids are log positions
    board.close()


def test_a_board_client_resumes_from_its_last_event_id(
    running: RunningStack, keys: dict[str, str]
) -> None:
    board = SseReader(running.url, "/v1/board/stream", keys["viewer"])
    first = create(running, keys["operator"], [])
    event = board.until(lambda e: e.data["execution"]["id"] == first["id"])[-1]
    board.close()

    second = create(running, keys["operator"], [{"sleep": 0.2}])  # while disconnected
    resumed = SseReader(running.url, "/v1/board/stream", keys["viewer"], event.id)
    replayed = resumed.until(lambda e: e.data["execution"]["id"] == second["id"])
    assert all(e.id is not None and e.id > (event.id or 0) for e in replayed)
    assert replayed[-1].data["event"] is None  # replayed from the board, not live
    resumed.close()


def test_a_filtered_board_stream_and_another_tenant_see_only_their_cards(
    running: RunningStack, keys: dict[str, str]
) -> None:
    mine = SseReader(running.url, "/v1/board/stream?queue=blue", keys["viewer"])
    theirs = SseReader(running.url, "/v1/board/stream", keys["acme"])
    create(running, keys["operator"], [], prompt="not blue")
    blue = create(running, keys["operator"], [], worker_queue="blue")
    acme = create(running, keys["acme"], [], prompt="acme's")

    first = mine.next()
    assert first is not None
    assert first.data["execution"]["id"] == blue["id"]
    seen = theirs.until(lambda e: e.data["execution"]["id"] == acme["id"])
    assert {e.data["execution"]["tenant"] for e in seen} == {ACME}
    mine.close()
    theirs.close()


def test_following_an_execution_streams_its_output_asks_and_ends(
    running: RunningStack, keys: dict[str, str]
) -> None:
    execution = create(
        running, keys["operator"], [{"say": "hello there"}, {"ask": "which way?"}, {"say": "ok"}]
    )
    path = f"/v1/executions/{execution['id']}/logs?follow=true"
    follow = SseReader(running.url, path, keys["viewer"])
    assert follow.content_type == "text/event-stream"
    asked = follow.until(lambda e: e.event == "InputRequested")
    assert asked[0].event == "Created"  # from the start
    assert asked[-1].data["data"]["question"] == "which way?"
    assert "hello there" in "".join(
        e.data["data"]["text"] for e in asked if e.event == "OutputAppended"
    )
    answered = httpx.post(
        f"{running.url}/v1/executions/{execution['id']}/input",
        json={"answer": "left"},
        headers={"Authorization": f"Bearer {keys['operator']}"},
        timeout=10,
    )
    assert answered.status_code == 200, answered.text
    rest = follow.until(lambda e: e.event == "end")
    assert rest[-1].data["status"] == "completed"
    assert "Completed" in [e.event for e in rest]
    assert follow.next() is None  # the server closed the stream
    follow.close()

    # an ended execution: the whole story, then the end, at once; or only what came after
    again = SseReader(running.url, path, keys["viewer"])
    story = again.until(lambda e: e.event == "end")
    assert story[0].event == "Created"
    assert story[-2].event == "Completed"
    tail = SseReader(running.url, path, keys["viewer"], story[-3].id)
    assert [e.event for e in tail.until(lambda e: e.event == "end")] == ["Completed", "end"]


def test_streams_refuse_what_the_caller_may_not_see(
    running: RunningStack, keys: dict[str, str]
) -> None:
    execution = create(running, keys["operator"], [])
    path = f"/v1/executions/{execution['id']}/logs?follow=true"
    other = SseReader(running.url, path, keys["acme"])
    assert other.status == 404
    nobody = SseReader(running.url, "/v1/board/stream", "ab_wrong_key")
    assert nobody.status == 401
    bad = httpx.get(
        f"{running.url}/v1/board/stream",
        headers={"Authorization": f"Bearer {keys['viewer']}", "Last-Event-ID": "yesterday"},
        timeout=10,
    )
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("application/problem+json")


def test_stored_logs_without_follow_are_plain_text(
    running: RunningStack, keys: dict[str, str], tmp_path: Path
) -> None:
    execution = create(running, keys["operator"], [{"say": "plain words"}])
    path = f"/v1/executions/{execution['id']}/logs?follow=true"
    SseReader(running.url, path, keys["viewer"]).until(lambda e: e.event == "end")
    text = httpx.get(
        f"{running.url}/v1/executions/{execution['id']}/logs",
        headers={"Authorization": f"Bearer {keys['viewer']}"},
        timeout=10,
    )
    assert text.headers["content-type"].startswith("text/plain")
    assert "plain words" in text.text


def cli(running: RunningStack, key: str, *args: str, answer: str = "") -> CompletedProcess[str]:
    env = {**os.environ, "AGENTBOARD_URL": running.url, "AGENTBOARD_API_KEY": key}
    agentboard = Path(sys.executable).parent / "agentboard"
    return subprocess.run(
        [str(agentboard), *args], input=answer, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


def test_exec_follow_streams_output_puts_the_question_and_sends_the_answer(
    running: RunningStack, keys: dict[str, str]
) -> None:
    steps = json.dumps(
        [{"say": "thinking\n"}, {"tool": "search", "args": {"q": "x"}}, {"ask": "colour?"}]
    )
    run = cli(running, keys["operator"], "exec", "pick a colour", "--agent", "script",
              "--param", f"steps={steps}", "--follow", answer="blue\n")  # fmt: skip
    assert run.returncode == 0, run.stderr
    execution_id, *output = run.stdout.splitlines()
    assert "thinking" in output
    # tool calls (name, arguments, call id; then the outcome) and questions go to stderr
    assert re.search(r'^→ search \{"q": "x"\} \(\S+\)$', run.stderr, re.M), run.stderr
    assert re.search(r"^✓ search success in \d+ms \(\S+\) done$", run.stderr, re.M), run.stderr
    assert "colour?" in run.stderr
    assert json.loads(output[-1]) == {"answers": ["blue"]}  # the result, last
    events = httpx.get(
        f"{running.url}/v1/executions/{execution_id}/events",
        headers={"Authorization": f"Bearer {keys['viewer']}"},
        timeout=10,
    ).json()
    provided = [e for e in events if e["type"] == "InputProvided"]
    assert provided[0]["data"]["answer"] == "blue"


def test_exec_follow_exits_1_when_the_execution_fails_and_logs_follow_replays(
    running: RunningStack, keys: dict[str, str]
) -> None:
    steps = json.dumps([{"say": "about to fail\n"}, {"fail": "no luck"}])
    run = cli(running, keys["operator"], "exec", "doomed", "--agent", "script",
              "--param", f"steps={steps}", "--follow")  # fmt: skip
    assert run.returncode == 1
    assert "no luck" in run.stderr
    execution_id = run.stdout.splitlines()[0]

    again = cli(running, keys["viewer"], "execution", "logs", execution_id, "--follow")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "about to fail\n"
    as_json = cli(running, keys["viewer"], "execution", "logs", execution_id, "-f", "-o", "json")
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert lines[0]["type"] == "Created"
    assert lines[-1] == {"type": "end", "status": "failed", "position": lines[-2]["position"]}
    missing = cli(running, keys["viewer"], "execution", "logs", str(uuid4()), "--follow")
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_artifacts_are_listed_on_the_execution_and_download_intact(
    running: RunningStack, keys: dict[str, str]
) -> None:
    execution = create(
        running, keys["operator"], [{"artifact": {"name": "report ü.md", "text": "# done\n"}}]
    )
    path = f"/v1/executions/{execution['id']}/logs?follow=true"
    SseReader(running.url, path, keys["viewer"]).until(lambda e: e.event == "end", timeout=90)
    headers = {"Authorization": f"Bearer {keys['viewer']}"}
    body = httpx.get(
        f"{running.url}/v1/executions/{execution['id']}", headers=headers, timeout=10
    ).json()
    [artifact] = body["artifacts"]
    assert artifact["name"] == "report ü.md"
    assert artifact["size"] == len("# done\n")

    download = httpx.get(f"{running.url}{artifact['url']}", headers=headers, timeout=10)
    assert download.status_code == 200
    assert download.text == "# done\n"
    assert "attachment" in download.headers["content-disposition"]
    other = {"Authorization": f"Bearer {keys['acme']}"}
    assert (
        httpx.get(f"{running.url}{artifact['url']}", headers=other, timeout=10).status_code == 404
    )
    missing = httpx.get(f"{running.url}{artifact['url']}x", headers=headers, timeout=10)
    assert missing.status_code == 404
    assert "no artifact named" in missing.json()["detail"]


def test_following_an_unreachable_server_is_one_line_and_exit_2(
    running: RunningStack, keys: dict[str, str]
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = cli(running, keys["viewer"], "execution", "logs", str(uuid4()), "--follow",
                 "--url", nowhere)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith(f"agentboard: cannot reach {nowhere}")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # no "reconnecting…"
    assert time.monotonic() - started < 15
