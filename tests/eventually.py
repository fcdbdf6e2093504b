"""Waiting in tests: poll until a condition holds, or fail naming what was awaited.

Every test that waits for something to happen uses ``eventually`` (or ``eventually_async``
inside a coroutine) instead of a fixed sleep or a loop of its own::

    done = eventually(lambda: api.get(f"/v1/executions/{i}").json(),
                      lambda body: body["status"] == "completed",
                      what=f"{i} to complete")

The value the probe returned last is given back when the condition holds, so the test can
assert on it; when the deadline passes the ``AssertionError`` names ``what`` and that last
value. A fixed sleep stays only where the time itself is under test (a lease that must
expire, a step that sleeps), with a comment saying so.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")

_NOTHING = object()


def _truthy(value: Any) -> bool:
    return bool(value)


def _failure(what: str, timeout: float, last: object) -> AssertionError:
    shown = "nothing (the probe never answered)" if last is _NOTHING else repr(last)
    if len(shown) > 600:
        shown = shown[:600] + "…"
    return AssertionError(f"waited {timeout:g}s for {what}; last seen: {shown}")


def eventually(
    probe: Callable[[], T],
    until: Callable[[T], bool] = _truthy,
    *,
    what: str,
    timeout: float = 30,
    interval: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """``probe()`` again and again until ``until(value)`` holds; that value.

    An exception of a type in ``ignoring`` counts as "not yet" (and is the last value seen);
    any other propagates at once.
    """
    deadline = time.monotonic() + timeout
    last: object = _NOTHING
    while True:
        try:
            value = probe()
        except ignoring as error:
            last = error
        else:
            if until(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            raise _failure(what, timeout, last)
        time.sleep(interval)


async def eventually_async(
    probe: Callable[[], Awaitable[T] | T],
    until: Callable[[T], bool] = _truthy,
    *,
    what: str,
    timeout: float = 30,
    interval: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """``eventually`` inside a coroutine: ``probe()`` (awaited when it gives an awaitable)
    until ``until(value)`` holds. A blocking probe belongs in ``asyncio.to_thread``."""
    deadline = time.monotonic() + timeout
    last: object = _NOTHING
    while True:
        try:
            answer = probe()
            value = cast(T, await answer if inspect.isawaitable(answer) else answer)
        except ignoring as error:
            last = error
        else:
            if until(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            raise _failure(what, timeout, last)
        await asyncio.sleep(interval)
