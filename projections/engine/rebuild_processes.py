"""Rebuild several views at once, each in its own process.

One process folds a page with the GIL held: rebuilding every view in one process used
one core for Python, and PostgreSQL the other. Here each view's rebuild (``rebuild`` of
one view: its own lock, fresh tables, replay, indexes, swap) runs in a process of its
own, so the views' Python work spreads over the cores: the first view in this process
(which has everything imported already), every other in a child process,
``python -m projections.engine.rebuild_processes``. Each reads and decodes the log itself: that
costs a few microseconds an event (``projections.engine.log``), less than sending decoded
events between processes would.

A child reads its request (the event store's settings, the view, the page size) as
JSON on stdin and writes its progress, then its report or its error, as JSON lines on
stdout. Plain subprocesses, not ``multiprocessing``: a multiprocessing child imports
the parent's main script again, and ``agentboard``'s imports the whole API.

The caller sees one progress for the whole (its slowest view's) and one report. Each
view's swap is atomic as before; the views swap one by one, each when it is ready. A
view whose rebuild fails (a bad event, say) is named in the error raised once all have
ended; the others are rebuilt and swapped in regardless. A child whose parent has gone
fails at its next page, when its progress finds no reader.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

from eventsourcing.postgres import PostgresDatastore
from psycopg.conninfo import make_conninfo

from domain.application import ExecutionService
from projections.engine.errors import ProjectionError
from projections.engine.rebuild import (
    Progress,
    RebuildProgress,
    RebuildReport,
    rebuild,
    rebuild_locks,
)
from projections.engine.registry import datastore_for, view_names

CHILD = [sys.executable, "-m", "projections.engine.rebuild_processes"]
PHASES = ("replaying", "indexing", "swapping", "done")
Message = tuple[str, dict[str, Any] | None]
"""A view, and a line its child wrote (None: its output ended)."""


def rebuild_in_processes(
    service: ExecutionService,
    datastore: PostgresDatastore,
    names: list[str] | None = None,
    *,
    page_size: int = 5000,
    progress: Progress | None = None,
) -> RebuildReport:
    """Rebuild ``names`` (every view when None), each in a process of its own (the first
    in this one), while the live views keep serving; returns one report for all."""
    names = names or view_names()
    with rebuild_locks(datastore, names):
        pass  # refuse at once if any of them is being rebuilt (each child locks its own)
    started = time.monotonic()
    messages: queue.Queue[Message] = queue.Queue()
    request = {"env": dict(service.env), "page_size": page_size}
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in names[1:]:
            children[name] = _start({**request, "view": name}, messages)
        here = threading.Thread(
            target=_rebuild_here, args=(service, datastore, names[0], page_size, messages),
            name=f"rebuild-{names[0]}", daemon=True,
        )  # fmt: skip
        here.start()
        reports = _follow(names, children, messages, started, progress or (lambda _: None))
    finally:
        for child in children.values():
            if child.poll() is None:
                child.terminate()
            child.wait()
    return RebuildReport(
        names,
        min(report.events for report in reports.values()),
        min(report.position for report in reports.values()),
        time.monotonic() - started,
    )


def _start(request: dict[str, Any], messages: queue.Queue[Message]) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(CHILD, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    stdin, stdout = child.stdin, child.stdout
    if stdin is None or stdout is None:  # never: both are pipes
        raise ProjectionError("could not talk to a rebuild process")
    stdin.write(json.dumps(request).encode())  # not argv: it holds the password
    stdin.close()
    relay = threading.Thread(target=_relay, args=(request["view"], stdout, messages), daemon=True)
    relay.start()
    return child


def _rebuild_here(
    service: ExecutionService,
    datastore: PostgresDatastore,
    name: str,
    page_size: int,
    messages: queue.Queue[Message],
) -> None:
    """Rebuild one view in this process, telling ``messages`` what a child would."""
    try:
        report = rebuild(
            service, datastore, name, page_size=page_size,
            progress=lambda p: messages.put((name, {"progress": dataclasses.astuple(p)})),
        )  # fmt: skip
        messages.put((name, {"report": dataclasses.asdict(report)}))
    except Exception as error:  # told to the caller's thread, which raises it
        messages.put((name, {"error": str(error) or type(error).__name__}))
    finally:
        messages.put((name, None))


def _relay(view: str, output: IO[bytes], messages: queue.Queue[Message]) -> None:
    for line in output:
        messages.put((view, json.loads(line)))
    messages.put((view, None))


def _follow(
    names: list[str],
    children: Mapping[str, subprocess.Popen[bytes]],
    messages: queue.Queue[Message],
    started: float,
    progress: Progress,
) -> dict[str, RebuildReport]:
    """Pass on the views' progress until each rebuild has ended; raise, naming every
    view that failed, once all have."""
    latest: dict[str, RebuildProgress] = {}
    reports: dict[str, RebuildReport] = {}
    failures: dict[str, str] = {}
    ended = 0
    while ended < len(names):
        view, message = messages.get()
        if message is None:
            ended += 1
            if view not in reports and view not in failures:
                code = children[view].wait()
                failures[view] = f"its process ended with exit code {code}"
        elif "progress" in message:
            latest[view] = RebuildProgress(*message["progress"])
            progress(_overall(latest, len(names), started))
        elif "report" in message:
            reports[view] = RebuildReport(**message["report"])
        else:
            failures[view] = str(message.get("error"))
    if failures:
        raise ProjectionError(
            "; ".join(f"rebuild of {name} failed: {error}" for name, error in failures.items())
        )
    return reports


def _overall(latest: dict[str, RebuildProgress], views: int, started: float) -> RebuildProgress:
    """The whole is as far as its slowest view (nowhere until every view has begun)."""
    elapsed = time.monotonic() - started
    head = max(p.head for p in latest.values())
    if len(latest) < views:
        return RebuildProgress(PHASES[0], 0, head, 0, elapsed)
    slowest = min(latest.values(), key=lambda p: (PHASES.index(p.phase), p.position))
    events = min(p.events for p in latest.values())
    return RebuildProgress(slowest.phase, slowest.position, head, events, elapsed)


def main() -> int:
    """A child: rebuild the view of the request on stdin, reporting on stdout."""
    request = json.load(sys.stdin)
    env: dict[str, str] = request["env"]

    def tell(**message: Any) -> None:
        sys.stdout.write(json.dumps(message, default=str) + "\n")
        sys.stdout.flush()

    service = ExecutionService(env)
    datastore = datastore_for(_conninfo(env), pool_size=3)
    try:
        report = rebuild(
            service, datastore, request["view"], page_size=request["page_size"],
            progress=lambda p: tell(progress=dataclasses.astuple(p)),
        )  # fmt: skip
        tell(report=dataclasses.asdict(report))
        return 0
    except ProjectionError as error:
        tell(error=str(error))
        return 1
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent says it
        return 130
    except Exception as error:  # told to the parent, which names the view and raises
        tell(error=f"{type(error).__name__}: {error}")
        return 1
    finally:
        datastore.close()
        service.close()


def _conninfo(env: dict[str, str]) -> str:
    """The event store's database, where the read side lives too."""
    return make_conninfo(
        dbname=env.get("POSTGRES_DBNAME", "postgres"),
        host=env.get("POSTGRES_HOST", "127.0.0.1"),
        port=env.get("POSTGRES_PORT", "5432"),
        user=env.get("POSTGRES_USER", "postgres"),
        password=env.get("POSTGRES_PASSWORD", ""),
    )


if __name__ == "__main__":
    sys.exit(main())
