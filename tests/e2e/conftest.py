"""The running stack: `agentboard up` as a subprocess on a free port and its own data dir.

Starting a stack costs seconds, so tests share one where they can:

- ``shared_stack`` (session): one stack for every module whose tests only use it. A test
  there works in a tenant of its own (``tenant``, ``new_tenant``), or, in tenant
  ``default``, only on queues and labels of its own, so no test sees another's executions,
  boards, counts, keys or idempotency keys; a count of the whole stack (/metrics) is
  compared with its value before.
- ``module_stack`` (a module's own fixture): for a module whose tests read what the whole
  of tenant ``default`` holds; the module's fixture says why.
- ``stack`` (per test): for a test that stops, kills or restarts what it runs on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from infra.processes import free_port
from tests.eventually import eventually


@dataclass
class RunningStack:
    process: subprocess.Popen[bytes]
    data_dir: Path
    url: str
    log: Path

    @property
    def stack(self) -> dict[str, str]:
        loaded: dict[str, str] = json.loads((self.data_dir / "stack.json").read_text())
        return loaded

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout)


def start_stack(data_dir: Path, port: int | None = None, timeout: float = 90) -> RunningStack:
    port = port or free_port()
    env = {
        **os.environ,
        "AGENTBOARD_DATA_DIR": str(data_dir),
        "AGENTBOARD_HTTP_PORT": str(port),
        # as the integration fixtures: no test survives power loss, and none need to
        "AGENTBOARD_EMBEDDED_POSTGRES_FSYNC": "false",
    }
    env.pop("AGENTBOARD_DATABASE_URL", None)
    env.pop("AGENTBOARD_NATS_URL", None)
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "up.log"
    agentboard = Path(sys.executable).parent / "agentboard"
    with log.open("ab") as out:
        process = subprocess.Popen([str(agentboard), "up"], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"

    def ready() -> int:
        if process.poll() is not None:
            raise RuntimeError(f"agentboard up exited early:\n{log.read_text()}")
        return httpx.get(f"{url}/readyz", timeout=1).status_code

    try:
        eventually(ready, lambda status: status == 200, what="agentboard up to be ready",
                   timeout=timeout, interval=0.1, ignoring=(httpx.HTTPError,))  # fmt: skip
    except AssertionError as late:
        process.kill()
        raise RuntimeError(f"{late}\n{log.read_text()}") from None
    return RunningStack(process, data_dir, url, log)


def module_stack(factory: pytest.TempPathFactory, name: str) -> Iterator[RunningStack]:
    """The body of a module's stack fixture: ``yield from module_stack(factory, "cli")``."""
    running = start_stack(factory.mktemp(name) / "data")
    yield running
    running.stop()


def admin_client(stack: RunningStack) -> httpx.Client:
    """An HTTP client of ``stack`` with the admin key ``agentboard up`` wrote."""
    key = (stack.data_dir / "admin.key").read_text().strip()
    return httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """One stack for the whole session; a test on it keeps to a tenant of its own."""
    yield from module_stack(tmp_path_factory, "shared")


def new_tenant() -> str:
    """A tenant name nobody else uses."""
    return f"t-{uuid4().hex[:12]}"


@pytest.fixture
def tenant() -> str:
    """A tenant of this test's own."""
    return new_tenant()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[RunningStack]:
    """A stack of this test's own: for a test that stops, kills or restarts its processes."""
    running = start_stack(tmp_path / "data")
    yield running
    if running.process.poll() is None:
        running.stop()
