"""The CLI starts fast: a verb imports what it uses, never the server (docs/cli.md, "Start
time"), and its help wraps to the terminal."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from infra.client_settings import ClientSettings
from infra.settings import Settings

AGENTBOARD = Path(sys.executable).parent / "agentboard"
SERVER = {"psycopg", "eventsourcing", "litestar", "nats", "uvicorn", "pgserver", "msgspec"}
PYDANTIC = {"pydantic", "pydantic_settings"}  # typer 0.29 and Settings brought it to every verb
CLIENT = {"httpx", "httpcore", "rich"}


def run(*args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``agentboard ARGS`` under ``-X importtime``: what it printed, and the top-level
    packages it imported."""
    shown = subprocess.run(
        [sys.executable, "-X", "importtime", str(AGENTBOARD), *args],
        env={**os.environ, "AGENTBOARD_API_KEY": "ab_unused_key", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in shown.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return shown, imported


def nothing_listens() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_help_imports_neither_the_server_nor_the_http_client() -> None:
    shown, imported = run("--help")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "execution" in shown.stdout
    assert imported & (SERVER | PYDANTIC | CLIENT) == set()


def test_a_verb_that_talks_to_the_api_imports_no_server() -> None:
    shown, imported = run("execution", "list", AGENTBOARD_URL=nothing_listens())
    assert shown.returncode == 2
    assert "cannot reach" in shown.stderr
    assert "httpx" in imported
    assert imported & (SERVER | PYDANTIC) == set()


def test_offline_verify_imports_no_server(tmp_path: Path) -> None:
    shown, imported = run("audit", "verify", str(tmp_path / "missing.ndjson"))
    assert shown.returncode == 2
    assert imported & (SERVER | PYDANTIC | CLIENT) == set()


@pytest.mark.parametrize("columns", [60, 120])
def test_help_paragraphs_wrap_to_the_terminal(columns: int) -> None:
    shown = subprocess.run(
        [str(AGENTBOARD), "execution", "list", "--help"],
        env={**os.environ, "COLUMNS": str(columns)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = shown.stdout.splitlines()
    examples = [line for line in lines if line.lstrip().startswith("agentboard ")]
    assert len(examples) == 2  # kept whole, one a line, as written
    prose = [line for line in lines if line not in examples]
    assert max(len(line) for line in prose) <= columns
    paragraph = shown.stdout.split("Filtered, ")[1].split("\n\n")[0]
    # the docstring breaks this paragraph in 3 lines; it takes the room the terminal has
    assert len(paragraph.splitlines()) == (2 if columns == 120 else 4)


def test_the_cli_reads_its_settings_as_settings_does(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.upper().startswith("AGENTBOARD_")]:
        monkeypatch.delenv(name)
    cases = [
        {},
        {"AGENTBOARD_URL": "http://api:9000", "AGENTBOARD_DATA_DIR": "/srv/ab"},
        {"agentboard_api_key": "ab_k_s", "Agentboard_Data_Dir": "rel/dir"},
    ]
    for environment in cases:
        with monkeypatch.context() as patched:
            for name, value in environment.items():
                patched.setenv(name, value)
            full = Settings()
            light = ClientSettings.from_environment()
        assert (light.url, light.api_key, light.data_dir) == (
            full.url,
            full.api_key,
            full.data_dir,
        ), environment
