"""run_until_stopped: what keeps the listeners and the view runners going."""

from __future__ import annotations

import threading
import time

from tenacity import wait_exponential, wait_fixed

from projections.engine.restarts import run_until_stopped


def test_pauses_double_while_it_fails_and_start_over_once_it_returns() -> None:
    stopping = threading.Event()
    script = iter(["fail", "fail", "fail", "return", "fail", "stop"])
    pauses: list[float] = []

    def run() -> None:
        step = next(script)
        if step == "fail":
            raise RuntimeError(step)
        if step == "stop":
            stopping.set()

    backoff = wait_exponential(multiplier=0.001, max=0.004)
    run_until_stopped(run, stopping, backoff, lambda error, pause: pauses.append(pause))

    assert pauses == [0.001, 0.002, 0.004, 0.001]


def test_stopping_ends_a_pause_at_once_and_nothing_runs_after_it() -> None:
    stopping = threading.Event()
    runs = []

    def run() -> None:
        runs.append(time.monotonic())
        raise RuntimeError("down")

    started = time.monotonic()
    run_until_stopped(run, stopping, wait_fixed(60), lambda error, pause: stopping.set())

    assert time.monotonic() - started < 5
    assert len(runs) == 1
