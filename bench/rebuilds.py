"""Rebuild rates (part 1 of ``bench.projections``): each view alone, and every view at
once — a process per view (what ``agentboard projections rebuild`` does) and, for
comparison, all in one process — each beside the raw read rate of the same rows through
``select_notifications`` measured in the same run; medians of several runs.

The machine is shared: rates move with whatever else runs, so the raw read is measured
just before each rebuild, and each ratio is a rebuild's rate over that raw read.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial

from domain.application import ExecutionService
from projections.engine.rebuild import RebuildReport, rebuild, rebuild_views
from projections.engine.rebuild_processes import rebuild_in_processes
from projections.engine.registry import datastore_for, view_names
from projections.engine.supervisor import ProjectionSupervisor

PAGE = 5000
THE_FIRST_THREE = ["board", "status_intervals", "tool_calls"]
"""The views issue #3's target was first measured on (printed apart when there are more)."""


def raw_read_rate(service: ExecutionService) -> tuple[int, float]:
    started, position, events = time.perf_counter(), 0, 0
    while page := service.recorder.select_notifications(position, PAGE, inclusive_of_start=False):
        position, events = page[-1].id, events + len(page)
    return events, events / (time.perf_counter() - started)


def measure_rebuilds(service: ExecutionService, url: str, runs: int) -> None:
    datastore = datastore_for(url, pool_size=4)
    ProjectionSupervisor(service, datastore, database_url=url).create_tables()
    names = view_names()
    cases: dict[str, Callable[[], RebuildReport]] = {
        name: partial(rebuild, service, datastore, name, page_size=PAGE) for name in names
    }
    cases[f"all {len(names)} views, a process each"] = lambda: rebuild_in_processes(
        service, datastore, names, page_size=PAGE
    )
    if set(THE_FIRST_THREE) < set(names):
        cases["board+intervals+tool calls, a process each"] = lambda: rebuild_in_processes(
            service, datastore, THE_FIRST_THREE, page_size=PAGE
        )
    cases[f"all {len(names)} views in one process"] = lambda: rebuild(
        service, datastore, page_size=PAGE
    )
    if set(THE_FIRST_THREE) < set(names):
        cases["board+intervals+tool calls in one process"] = lambda: rebuild_views(
            service, datastore, THE_FIRST_THREE, PAGE
        )
    raws: list[float] = []
    rates: dict[str, list[float]] = {label: [] for label in cases}
    ratios: dict[str, list[float]] = {label: [] for label in cases}
    events = 0
    for _ in range(runs):
        for label, case in cases.items():
            events, raw = raw_read_rate(service)  # just before: the load on the machine moves
            raws.append(raw)
            rate = case().events_per_second
            rates[label].append(rate)
            ratios[label].append(rate / raw)
    datastore.close()
    print(
        f"\n1. rebuild over {events:,} stored events (pages of {PAGE:,}); "
        f"medians of {runs} runs (min-max)"
    )
    width = max(len(label) for label in cases) + len("rebuild ")
    print(f"   {'raw select_notifications':<{width}} {_spread(raws)} events/s  (baseline)")
    for label in cases:
        print(
            f"   {'rebuild ' + label:<{width}} {_spread(rates[label])} events/s  "
            f"{statistics.median(ratios[label]):.2f} x raw"
        )


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):>8,.0f} ({min(values):,.0f}-{max(values):,.0f})"
