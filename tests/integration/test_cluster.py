"""Faults under load on a 3-node NATS JetStream cluster (DESIGN §10, §11; issue #18).

Three nats-server processes with routes and JetStream, streams at three replicas; the roles
as processes of their own, each twice (api, relay, projections run, worker) against one
PostgreSQL. While executions are created at a steady rate, a NATS node that leads no stream
is SIGKILLed and started again, then the node leading AGENTBOARD_EVENTS, then the active
relay, then the projections process running the board. Afterwards every acknowledged
create has completed exactly once (one Completed, its one tool call made once), every
stored event is in AGENTBOARD_EVENTS exactly once, and the board counts them all; the time
each fault took to recover from is printed.

``make test`` runs a short version; ``make soak`` (marker ``soak``) a long one.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import nats
import pytest

from infra.keys import KeyStore, Role
from infra.nats import EVENTS_STREAM, STREAMS, WORK_STREAM
from infra.processes import free_port
from infra.relay import RELAY_LOCK
from projections.engine.election import VIEW_LOCKS, view_lock
from tests.integration.cluster_support import (
    AGENTBOARD,
    NatsCluster,
    Node,
    Roles,
    holder_of_lock,
    positions_in_events_stream,
    role_env,
    stored_events,
    until,
    workers_present,
)

pytestmark = pytest.mark.integration

TAKEOVER_SECONDS = 10.0  # DESIGN §11: another process takes over within 10 s


@dataclass
class ClusterStack:
    cluster: NatsCluster
    roles: Roles
    database_url: str
    api_urls: list[str]
    headers: dict[str, str]

    def http(self, index: int = 0) -> httpx.Client:
        url = self.api_urls[index % len(self.api_urls)]
        return httpx.Client(base_url=url, headers=self.headers, timeout=10)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    running = NatsCluster(tmp_path / "nats").start()
    yield running
    running.stop()


@pytest.fixture
def stack(cluster: NatsCluster, database_url: str, tmp_path: Path) -> Iterator[ClusterStack]:
    logs = tmp_path / "logs"
    logs.mkdir()
    roles = Roles(role_env(database_url, cluster.url, tmp_path / "data"), logs)
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        made = subprocess.run([AGENTBOARD, "init"], env=roles.env, capture_output=True,
                              text=True, check=True, timeout=120)  # fmt: skip
        headers = {"Authorization": f"Bearer {made.stdout.strip()}"}
        worker_key = KeyStore(database_url).create("default", Role.WORKER, "test")
        for index in (1, 2):
            roles.start(f"api-{index}", "api", AGENTBOARD_HTTP_PORT=str(ports[index - 1]))
            roles.start(f"relay-{index}", "relay")
            roles.start(f"projections-{index}", "projections", "run")
            roles.start(f"worker-{index}", "worker", "--concurrency", "8",
                        AGENTBOARD_API_KEY=worker_key)  # fmt: skip
        for url in urls:
            until(partial(ready, url), 90, f"{url} is ready\n{roles.log_tails()}")
        until(lambda: asyncio.run(workers_present(cluster.url)) == 2, 60,
              f"both workers are present\n{roles.log_tails()}")  # fmt: skip
        yield ClusterStack(cluster, roles, database_url, urls, headers)
    finally:
        codes = roles.stop()
    # every process stopped cleanly; one the test started again moments ago may still have
    # been starting (Python's default SIGTERM: -15), which is a clean stop too
    restarted = {role.name for role in roles.started if role.starts > 1}
    failed = {
        name: code
        for name, code in codes.items()
        if code not in (0, None) and not (name in restarted and code == -signal.SIGTERM)
    }
    assert not failed, f"{failed}\n{roles.log_tails(40)}"


def ready(url: str) -> bool:
    return httpx.get(f"{url}/readyz").status_code == 200


# -- the load --------------------------------------------------------------------------


@dataclass
class Load:
    """Creates ``total`` executions at a steady rate over ``seconds``, round robin over the
    API processes, each a script with one tool call; ``acknowledged`` holds the ids the
    API answered 201 for."""

    stack: ClusterStack
    total: int
    seconds: float
    acknowledged: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Load:
        threading.Thread(target=self._run, name="load", daemon=True).start()
        return self

    def _run(self) -> None:
        clients = [self.stack.http(index) for index in range(len(self.stack.api_urls))]
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(4) as pool:
                for number in range(self.total):
                    due = started + number * self.seconds / self.total
                    time.sleep(max(0.0, due - time.monotonic()))
                    pool.submit(self._create, clients[number % len(clients)], number)
        finally:
            for client in clients:
                client.close()
            self.done.set()

    def _create(self, client: httpx.Client, number: int) -> None:
        body = {
            "agent_id": "script", "worker_queue": "default", "prompt": f"load {number}",
            "parameters": {"steps": [{"tool": "lookup", "args": {"n": number}},
                                     {"say": f"done {number}"}]},
        }  # fmt: skip
        try:
            response = client.post("/v1/executions", json=body)
        except httpx.HTTPError as error:
            self.refused.append(f"{number}: {error}")
            return
        if response.status_code == 201:
            self.acknowledged.append(response.json()["id"])
        else:
            self.refused.append(f"{number}: {response.status_code} {response.text[:200]}")


def probe(stack: ClusterStack, what: str, timeout: float = 60) -> float:
    """Seconds from now until a new execution completes: the whole path (API, store, relay,
    NATS, a worker, its reports, the command side) works again."""
    started = time.monotonic()
    with stack.http() as http:
        created = http.post("/v1/executions", json={
            "agent_id": "script", "worker_queue": "default", "prompt": f"probe: {what}",
            "parameters": {"steps": [{"say": "probe"}]},
        }).json()  # fmt: skip
        until(
            lambda: http.get(f"/v1/executions/{created['id']}").json()["status"] == "completed",
            timeout, f"a probe completes after {what}\n{stack.roles.log_tails()}",
        )  # fmt: skip
    return time.monotonic() - started


# -- the faults ------------------------------------------------------------------------


async def _stream_leaders(url: str) -> dict[str, str]:
    nc = await nats.connect(url.split(","))
    try:
        js = nc.jetstream()
        leaders: dict[str, str] = {}
        for name in (EVENTS_STREAM, WORK_STREAM):
            info = await js.stream_info(name)
            leaders[name] = (info.cluster.leader if info.cluster else None) or ""
        return leaders
    finally:
        await nc.close()


async def _replicas(url: str) -> dict[str, tuple[int, int]]:
    """Each stream's replicas: (configured, current copies)."""
    nc = await nats.connect(url.split(","))
    try:
        js = nc.jetstream()
        found = {}
        for config in STREAMS:
            info = await js.stream_info(config.name or "")
            peers = info.cluster.replicas if info.cluster else None
            current = 1 + sum(1 for peer in peers or () if peer.current and not peer.offline)
            found[config.name or ""] = (info.config.num_replicas or 1, current)
        return found
    finally:
        await nc.close()


def in_sync(cluster: NatsCluster) -> bool:
    return all(
        configured == current == 3
        for configured, current in asyncio.run(_replicas(cluster.url)).values()
    )


def kill_node(stack: ClusterStack, node: Node, report: Callable[[str], None]) -> None:
    """SIGKILL ``node``; print how long until the path works again, and until the node is
    back and every stream has its three copies in sync."""
    stack.cluster.kill(node)
    killed = time.monotonic()
    report(f"NATS node {node.name} killed: a new execution completed "
           f"{probe(stack, f'killing {node.name}'):.1f}s later")  # fmt: skip
    stack.cluster.restart(node)
    until(lambda: in_sync(stack.cluster), 60, f"streams in sync after {node.name} restarted")
    report(f"NATS node {node.name} back, streams in sync "
           f"{time.monotonic() - killed:.1f}s after the kill")  # fmt: skip


def kill_active(
    stack: ClusterStack, role: str, lock: tuple[int, int, int], report: Callable[[str], None]
) -> None:
    """SIGKILL the process of ``role`` that holds ``lock``; another must hold it within
    10 s, and the whole path work again."""
    processes = stack.roles.named(role)
    active = until(lambda: holder_of_lock(stack.database_url, lock, processes), 10,
                   f"one {role} process holds its lock")  # fmt: skip
    active.kill()
    killed = time.monotonic()
    others = [process for process in processes if process is not active]
    successor = until(lambda: holder_of_lock(stack.database_url, lock, others),
                      TAKEOVER_SECONDS, f"another {role} process takes over")  # fmt: skip
    took = time.monotonic() - killed
    report(
        f"{active.name} killed: {successor.name} active {took:.1f}s later; "
        f"a new execution completed {probe(stack, f'killing {active.name}'):.1f}s later"
    )
    assert took < TAKEOVER_SECONDS
    active.start()  # as a supervisor would: it waits now, the other being active


RELAY = (0, RELAY_LOCK, 1)
BOARD_RUNNER = (VIEW_LOCKS, view_lock("board"), 2)


# -- the checks ------------------------------------------------------------------------


def check_nothing_lost(stack: ClusterStack, load: Load, report: Callable[[str], None]) -> None:
    assert load.done.wait(120)
    assert not load.refused, load.refused[:5]
    acknowledged = set(load.acknowledged)
    assert len(acknowledged) == load.total

    def completed() -> list[tuple[int, str, str]] | None:
        events = stored_events(stack.database_url)
        done = {execution for _, execution, kind in events if kind == "Completed"}
        return events if acknowledged <= done else None

    try:
        events = until(completed, 120, "every acknowledged execution completes", every=0.5)
    except AssertionError:
        raise AssertionError(
            f"{unfinished(stack, acknowledged)}\n{stack.roles.log_tails()}"
        ) from None
    per_kind = {
        kind: Counter(execution for _, execution, k in events if k == kind)
        for kind in ("Created", "PickedUp", "ToolCalled", "Completed")
    }
    for execution in acknowledged:
        assert per_kind["Created"][execution] == 1
        assert per_kind["Completed"][execution] == 1, f"{execution} completed twice"
        assert per_kind["ToolCalled"][execution] == 1, f"{execution}'s tool called twice"
    pickups = sum(per_kind["PickedUp"][execution] for execution in acknowledged)
    report(f"{len(acknowledged)} executions, each completed once; {len(events)} events "
           f"stored; {pickups - len(acknowledged)} picked up again after a fault")  # fmt: skip

    last = events[-1][0]
    positions = asyncio.run(positions_in_events_stream(stack.cluster.url, len(events), 60))
    assert sorted(positions) == [position for position, _, _ in events], (
        f"AGENTBOARD_EVENTS holds {len(positions)} of {len(events)} events (up to position {last})"
    )

    def board_counts_them() -> bool:
        with stack.http() as http:
            board = http.get("/v1/board").json()
        [done] = [column for column in board["columns"] if column["status"] == "completed"]
        return bool(done["count"] >= len(acknowledged))

    until(board_counts_them, 60, "the board counts every completed execution")


def unfinished(stack: ClusterStack, acknowledged: set[str]) -> str:
    """The acknowledged executions that have not completed, with their stored events."""
    histories: dict[str, list[str]] = {}
    for _, execution, kind in stored_events(stack.database_url):
        histories.setdefault(execution, []).append(kind)
    waiting = [e for e in sorted(acknowledged) if "Completed" not in histories.get(e, [])]
    shown = "\n".join(f"  {e}: {histories.get(e)}" for e in waiting[:10])
    return f"{len(waiting)} of {len(acknowledged)} acknowledged executions unfinished:\n{shown}"


# -- the tests -------------------------------------------------------------------------


def run_faults(
    stack: ClusterStack, *, executions: int, seconds: float, rounds: int, say: Callable[[str], None]
) -> None:
    assert in_sync(stack.cluster), asyncio.run(_replicas(stack.cluster.url))
    load = Load(stack, executions, seconds).start()
    for _ in range(rounds):
        leaders = asyncio.run(_stream_leaders(stack.cluster.url))
        followers = [node for node in stack.cluster.nodes if node.name not in leaders.values()]
        followers += [node for node in stack.cluster.nodes if node.name != leaders[EVENTS_STREAM]]
        kill_node(stack, followers[0], say)  # one that leads neither stream, if there is one
        leader = asyncio.run(_stream_leaders(stack.cluster.url))[EVENTS_STREAM]
        kill_node(stack, stack.cluster.node(leader), say)
        kill_active(stack, "relay", RELAY, say)
        kill_active(stack, "projections", BOARD_RUNNER, say)
    check_nothing_lost(stack, load, say)


def test_nothing_is_lost_when_a_nats_node_and_the_active_relay_die_under_load(
    stack: ClusterStack, capsys: pytest.CaptureFixture[str]
) -> None:
    def say(line: str) -> None:
        with capsys.disabled():
            print(f"\n[cluster] {line}", end="")

    run_faults(stack, executions=200, seconds=12, rounds=1, say=say)


@pytest.mark.soak
def test_soak_nothing_is_lost_through_rounds_of_faults_under_load(
    stack: ClusterStack, capsys: pytest.CaptureFixture[str]
) -> None:
    def say(line: str) -> None:
        with capsys.disabled():
            print(f"\n[cluster soak] {line}", end="")

    run_faults(stack, executions=3000, seconds=120, rounds=3, say=say)
