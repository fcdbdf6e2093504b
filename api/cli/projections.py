"""``agentboard projections status [-o json] | rebuild [NAME] | skip NAME POSITION --reason R``.

Plain functions that the Typer app registers; each returns the exit code (0 done,
1 failed, 2 bad usage) and prints with rich.
"""

from __future__ import annotations

import json
from typing import Any

from eventsourcing.persistence import ProgrammingError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from domain.application import ExecutionService
from projections.engine.control import Control
from projections.engine.errors import ProjectionError, UnknownView
from projections.engine.rebuild import RebuildProgress, rebuild
from projections.engine.rebuild_processes import rebuild_in_processes
from projections.engine.registry import datastore_for, make_projection, view_names


def status_command(
    service: ExecutionService,
    database_url: str,
    console: Console | None = None,
    *,
    as_json: bool = False,
) -> int:
    """Print each view's position, the log's end, the lag between them and its health (a
    table, or one JSON document: ``{"head", "views": [...], "skips": [...]}``)."""
    console = console or Console()
    datastore = datastore_for(database_url, pool_size=1)
    try:
        control = Control(datastore)
        control.create_tables()
        health = control.health()
        head = service.recorder.max_notification_id() or 0
        views: list[dict[str, Any]] = []
        for name in view_names():
            try:
                position: int | None = make_projection(name, datastore).view.position()
            except ProgrammingError:
                position = None  # its tables do not exist yet
            view_health = health.get(name)
            state = view_health.state if view_health else ("not built" if position is None else "?")
            views.append({
                "view": name, "state": state, "position": position,
                "lag": head - position if position is not None else None,
                "restarts": view_health.restarts if view_health else 0,
                "error": (view_health.error or None) if view_health else None,
            })  # fmt: skip
        skips = control.all_skips()
        if as_json:
            document = {"head": head, "views": views, "skips": [
                {"view": s.view, "position": s.position, "topic": s.topic, "reason": s.reason}
                for s in skips
            ]}  # fmt: skip
            console.print_json(json.dumps(document))
            return 0
        table = Table("view", "state", "position", "head", "lag", "restarts", "error")
        for view in views:
            table.add_row(
                view["view"], view["state"], _cell(view["position"]), str(head),
                _cell(view["lag"]), str(view["restarts"]), Text(view["error"] or ""),
            )  # fmt: skip
        console.print(table)
        for skip in skips:
            console.print(
                f"[yellow]skip[/] {skip.view} passes over position {skip.position} "
                f"({skip.topic}): {skip.reason}"
            )
        return 0
    finally:
        datastore.close()


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def rebuild_command(
    service: ExecutionService,
    database_url: str,
    name: str | None = None,
    console: Console | None = None,
) -> int:
    """Replay the log into fresh tables for NAME (or every view, each in a process of its
    own) and swap them in, while the live views keep serving."""
    console = console or Console()
    datastore = datastore_for(database_url, pool_size=3)
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>10,.0f} events/s"), TimeElapsedColumn(),
    )  # fmt: skip
    try:
        label = name or "all views"
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(f"rebuilding {label}", total=None, rate=0.0)

            def show(progress: RebuildProgress) -> None:
                rate = progress.events / progress.seconds if progress.seconds else 0.0
                bar.update(
                    task, completed=progress.position, total=progress.head, rate=rate,
                    description=f"{progress.phase} {label}",
                )  # fmt: skip

            if name is None:
                report = rebuild_in_processes(service, datastore, progress=show)
            else:
                report = rebuild(service, datastore, name, progress=show)
        console.print(
            f"rebuilt {', '.join(report.views)}: {report.events:,} events in "
            f"{report.seconds:.1f}s ({report.events_per_second:,.0f} events/s), "
            f"now at position {report.position}"
        )
        return 0
    except UnknownView as error:
        console.print(f"[red]{error}[/]")
        return 2
    except ProjectionError as error:
        console.print(f"[red]rebuild failed:[/] {error}")
        return 1
    finally:
        datastore.close()


def skip_command(
    service: ExecutionService,
    database_url: str,
    name: str,
    position: int,
    reason: str,
    console: Console | None = None,
) -> int:
    """Record that view NAME passes over the stored event at POSITION, and why."""
    console = console or Console()
    datastore = datastore_for(database_url, pool_size=1)
    try:
        view_names(name)
        control = Control(datastore)
        control.create_tables()
        skip = control.record_skip(service.recorder, name, position, reason)
        console.print(f"{skip.view} will pass over position {skip.position} ({skip.topic})")
        return 0
    except ProjectionError as error:
        console.print(f"[red]{error}[/]")
        return 2
    finally:
        datastore.close()
