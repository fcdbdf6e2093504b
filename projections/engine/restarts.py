"""Keeping a thread's loop alive: what the listeners and the supervisor run in their threads.

``run_until_stopped`` calls its function again whenever it returns, and after a pause
(tenacity's wait: a backoff, or a fixed pause) whenever it raises; the pauses start over
after each return, and ``stopping`` ends a pause at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type
from tenacity.wait import wait_base

Failed = Callable[[BaseException, float], None]
"""Told of each failure and of the pause before the next call."""


def run_until_stopped(
    run: Callable[[], None], stopping: threading.Event, wait: wait_base, failed: Failed
) -> None:
    def attempt() -> None:
        if not stopping.is_set():  # stopped during the pause: do not start again
            run()

    def tell(state: RetryCallState) -> None:
        if state.outcome is not None and (error := state.outcome.exception()) is not None:
            failed(error, state.upcoming_sleep)

    def pause(seconds: float) -> None:
        stopping.wait(seconds)  # or until stopped

    restarting = Retrying(
        retry=retry_if_exception_type(Exception),
        wait=wait,
        stop=lambda _: stopping.is_set(),
        sleep=pause,
        before_sleep=tell,
        retry_error_callback=lambda _: None,  # it failed as it was being stopped
    )
    while not stopping.is_set():
        restarting(attempt)
