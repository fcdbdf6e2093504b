"""Bulk actions from the CLI against the running stack: list, confirm, act, report.

On the shared stack, in tenant `default` as a user of `up` is (the CLI takes the admin key
from the data dir): every test filters by a queue or label of its own, so what other
modules leave in `default` is never selected.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.keys import KeyStore, Role
from tests.e2e.conftest import RunningStack, admin_client
from tests.eventually import eventually


@pytest.fixture(scope="module")
def stack(shared_stack: RunningStack) -> RunningStack:
    return shared_stack


@pytest.fixture(scope="module")
def api(stack: RunningStack) -> httpx.Client:
    return admin_client(stack)


def agentboard(
    stack: RunningStack, *args: str, stdin: int | None = subprocess.DEVNULL, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENTBOARD_URL": stack.url, "AGENTBOARD_DATA_DIR": str(stack.data_dir)}
    env.pop("AGENTBOARD_API_KEY", None)
    if key:
        env["AGENTBOARD_API_KEY"] = key
    command = [str(Path(sys.executable).parent / "agentboard"), *args]
    return subprocess.run(command, env=env, stdin=stdin, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def pending_on_a_queue(api: httpx.Client, queue: str, count: int) -> list[str]:
    """Executions that stay pending, once the list shows them."""
    ids = [
        api.post("/v1/executions",
                 json={"agent_id": "script", "worker_queue": queue, "prompt": f"tidy {n}"}
                 ).json()["id"]
        for n in range(count)
    ]  # fmt: skip
    listed(api, {"queue": queue}, count)
    return ids


def listed(api: httpx.Client, params: dict[str, Any], count: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = eventually(  # the list follows the log within milliseconds
        lambda: api.get("/v1/executions", params=params).json()["items"],
        lambda items: len(items) >= count, timeout=15,
        what=f"the list of {params} to show {count} executions",
    )  # fmt: skip
    return items


def statuses(api: httpx.Client, ids: list[str]) -> set[str]:
    return {api.get(f"/v1/executions/{i}").json()["status"] for i in ids}


def test_a_dry_run_lists_ids_and_prompts_and_changes_nothing(
    stack: RunningStack, api: httpx.Client
) -> None:
    ids = pending_on_a_queue(api, "dry", 3)

    shown = agentboard(stack, "execution", "cancel", "--status", "pending", "--queue", "dry",
                       "--dry-run")  # fmt: skip

    assert shown.returncode == 0, shown.stderr
    for execution_id in ids:
        assert execution_id in shown.stdout
    assert "tidy 0" in shown.stdout
    assert "would change" in shown.stdout
    assert statuses(api, ids) == {"pending"}


def test_without_a_terminal_it_asks_for_yes_and_with_yes_it_acts(
    stack: RunningStack, api: httpx.Client
) -> None:
    ids = pending_on_a_queue(api, "tidy", 3)
    args = ("execution", "cancel", "--status", "pending", "--queue", "tidy", "--older-than", "1s")
    time.sleep(1.1)  # the time under test: they are older than 1s

    asked = agentboard(stack, *args)
    assert asked.returncode == 2
    assert "pass --yes" in asked.stderr
    assert statuses(api, ids) == {"pending"}

    done = agentboard(stack, *args, "--yes")
    assert done.returncode == 0, done.stderr
    assert "cancel: changed 3, refused 0" in done.stdout
    assert statuses(api, ids) == {"cancelled"}
    events = api.get(f"/v1/executions/{ids[0]}/events").json()
    assert events[-1]["type"] == "Cancelled"


def test_on_a_terminal_it_asks_before_acting(stack: RunningStack, api: httpx.Client) -> None:
    ids = pending_on_a_queue(api, "asked", 2)
    args = ("execution", "cancel", "--status", "pending", "--queue", "asked")
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"n\n")
        declined = agentboard(stack, *args, stdin=terminal)
        assert declined.returncode == 1
        assert "cancel 2 executions?" in declined.stderr
        assert statuses(api, ids) == {"pending"}

        os.write(controller, b"y\n")
        accepted = agentboard(stack, *args, "--output", "json", stdin=terminal)
    finally:
        os.close(controller)
        os.close(terminal)
    assert accepted.returncode == 0, accepted.stderr
    assert '"changed": 2' in accepted.stdout
    assert statuses(api, ids) == {"cancelled"}


def test_refusals_are_reported_per_execution_and_exit_1(
    stack: RunningStack, api: httpx.Client
) -> None:
    ids = pending_on_a_queue(api, "refuse", 2)

    refused = agentboard(stack, "execution", "complete", "--status", "pending", "--queue",
                         "refuse", "--yes")  # fmt: skip

    assert refused.returncode == 1
    assert "changed 0, refused 2" in refused.stdout
    assert "cannot complete" in refused.stdout
    assert refused.stderr.strip() == "agentboard: 2 of 2 refused"
    assert statuses(api, ids) == {"pending"}


def test_retry_in_bulk_starts_a_new_attempt(stack: RunningStack, api: httpx.Client) -> None:
    failing = {"agent_id": "shell", "prompt": "exit 3", "labels": {"batch": "retry-me"}}
    execution_id = api.post("/v1/executions", json=failing).json()["id"]
    listed(api, {"status": "failed", "label": "batch=retry-me"}, 1)

    retried = agentboard(stack, "execution", "retry", "--status", "failed", "--label",
                         "batch=retry-me", "--yes")  # fmt: skip

    assert retried.returncode == 0, retried.stderr
    assert "retry: changed 1, refused 0" in retried.stdout
    assert api.get(f"/v1/executions/{execution_id}").json()["attempt"] == 2


def test_bad_input_is_one_line_and_exit_2_and_a_viewer_is_refused(
    stack: RunningStack, api: httpx.Client
) -> None:
    cases = [
        (("execution", "complete", "--status", "running", "--older-than", "7x"), "--older-than"),
        (("execution", "cancel", "--status", "sleeping"), "unknown status"),
        (("execution", "cancel"), "needs an execution id"),
        (("execution", "retry", "some-id", "--status", "failed"), "not both"),
        (("execution", "complete", "--status", "running", "--url", "http://127.0.0.1:9"),
         "cannot reach"),
    ]  # fmt: skip
    for args, words in cases:
        result = agentboard(stack, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert words in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr

    wrong_key = agentboard(stack, "execution", "cancel", "--status", "pending", key="ab_x_y")
    assert wrong_key.returncode == 2
    assert "unknown or revoked" in wrong_key.stderr
    viewer = KeyStore(stack.stack["database_url"]).create("default", Role.VIEWER, "test")
    refused = agentboard(stack, "execution", "cancel", "--status", "pending", "--dry-run",
                         key=viewer)  # fmt: skip
    assert refused.returncode == 1
    assert "operator role" in refused.stderr
    nothing = agentboard(stack, "execution", "cancel", "--status", "pending", "--queue", "none")
    assert nothing.returncode == 0
    assert "no executions match" in nothing.stdout
