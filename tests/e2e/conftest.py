"""The running stack: `agentboard up` as a subprocess on a free port and its own data dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from infra.processes import free_port


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
    }
    env.pop("AGENTBOARD_DATABASE_URL", None)
    env.pop("AGENTBOARD_NATS_URL", None)
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "up.log"
    agentboard = Path(sys.executable).parent / "agentboard"
    with log.open("ab") as out:
        process = subprocess.Popen([str(agentboard), "up"], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"agentboard up exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return RunningStack(process, data_dir, url, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"agentboard up did not answer in {timeout}s:\n{log.read_text()}")


def module_stack(factory: pytest.TempPathFactory, name: str) -> Iterator[RunningStack]:
    """The body of a module's stack fixture: ``yield from module_stack(factory, "cli")``."""
    running = start_stack(factory.mktemp(name) / "data")
    yield running
    running.stop()


def admin_client(stack: RunningStack) -> httpx.Client:
    """An HTTP client of ``stack`` with the admin key ``agentboard up`` wrote."""
    key = (stack.data_dir / "admin.key").read_text().strip()
    return httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[RunningStack]:
    running = start_stack(tmp_path / "data")
    yield running
    if running.process.poll() is None:
        running.stop()
