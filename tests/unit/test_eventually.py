"""The tests' one waiting helper: it gives back what it waited for, or names it on failure."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.eventually import eventually, eventually_async


def test_it_returns_the_first_value_that_satisfies_the_condition() -> None:
    counter = itertools.count()

    assert eventually(lambda: next(counter), lambda n: n >= 3, what="three", interval=0) == 3


def test_a_timeout_names_what_was_awaited_and_the_last_value_seen() -> None:
    with pytest.raises(AssertionError) as failed:
        eventually(lambda: {"status": "running"}, lambda body: body["status"] == "completed",
                   what="the run to complete", timeout=0.05, interval=0.01)  # fmt: skip

    assert "the run to complete" in str(failed.value)
    assert "{'status': 'running'}" in str(failed.value)


def test_ignored_errors_mean_not_yet_and_other_errors_propagate() -> None:
    answers = iter([ConnectionError("refused"), ConnectionError("refused"), "up"])

    def probe() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert eventually(probe, what="the server", interval=0, ignoring=(ConnectionError,)) == "up"

    def broken() -> str:
        raise ValueError("a bug, not a wait")

    with pytest.raises(ValueError, match="a bug"):
        eventually(broken, what="the server", timeout=5, ignoring=(ConnectionError,))

    def down() -> str:
        raise ConnectionError("down")

    with pytest.raises(AssertionError, match="last seen: ConnectionError"):
        eventually(down, what="the server", timeout=0.02, interval=0.01,
                   ignoring=(ConnectionError,))  # fmt: skip


def test_the_async_form_awaits_coroutines_and_takes_plain_values() -> None:
    counter = itertools.count()

    async def probe() -> int:
        return next(counter)

    async def both() -> tuple[int, int]:
        awaited = await eventually_async(probe, lambda n: n >= 2, what="two", interval=0)
        plain = await eventually_async(lambda: "ready", what="ready")
        return awaited, len(plain)

    assert asyncio.run(both()) == (2, 5)
    with pytest.raises(AssertionError, match=r"waited 0\.02s for never"):
        asyncio.run(eventually_async(probe, lambda n: n < 0, what="never", timeout=0.02))
