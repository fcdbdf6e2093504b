"""Token usage: an agent's report becomes UsageRecorded, the execution sums it (``usage``),
a report delivered twice counts once, and values the domain refuses are named."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest
from agentboard_client.testing import RecordingContext, Usage

from api.cli.format import usage_text
from domain.execution import commands as c
from domain.execution import wire
from domain.execution.errors import InvalidCommand, LeaseLost
from domain.execution.events import NO_USAGE
from domain.execution.state import ExecutionState
from infra.settings import Settings, Unconfigured
from tests.unit.test_execution import running
from workers.context import cost_of


def test_usage_reports_add_up_on_the_execution_and_a_resend_counts_once() -> None:
    execution = running()
    execution.record_usage(execution.lease, "gpt-4o", 1000, 200, 0.01, "u1")
    execution.record_usage(execution.lease, "claude", 500, 100, None, "u2")
    execution.record_usage(execution.lease, "gpt-4o", 1000, 200, 0.01, "u1")  # resent
    recorded = execution.collect_events()
    assert [type(event).__name__ for event in recorded] == ["UsageRecorded", "UsageRecorded"]
    assert recorded[0].model == "gpt-4o"
    assert ExecutionState.of(execution).usage == {
        "input_tokens": 1500, "output_tokens": 300, "cost_usd": 0.01, "reports": 2,
    }  # fmt: skip


def test_an_execution_without_reports_shows_zero_tokens_and_no_cost() -> None:
    assert ExecutionState.of(running()).usage == NO_USAGE


def test_usage_from_a_lease_no_longer_held_is_refused() -> None:
    execution = running()
    with pytest.raises(LeaseLost):
        execution.record_usage(execution.lease + 1, "gpt-4o", 1, 1, None, "u1")


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"model": ""}, "model is 1-200 characters"),
        ({"input_tokens": -1}, "input_tokens is a whole number"),
        ({"output_tokens": 1.5}, "output_tokens is a whole number"),
        ({"cost_usd": -0.1}, "cost_usd is a number, 0 or more"),
        ({"cost_usd": "1"}, "cost_usd is a number"),
        ({"usage_id": ""}, "usage_id is 1-128 characters"),
    ],
)
def test_a_usage_report_with_a_wrong_value_is_refused_naming_it(
    fields: dict[str, object], says: str
) -> None:
    given = {"execution_id": uuid4(), "lease": 1, "model": "m", "input_tokens": 1,
             "output_tokens": 1, "usage_id": "u", "cost_usd": None, **fields}  # fmt: skip
    with pytest.raises(InvalidCommand, match=says):
        c.RecordUsage(**given)  # type: ignore[arg-type]
    name, payload = "record_usage", wire.json.dumps({**given, "execution_id": str(uuid4())})
    with pytest.raises(InvalidCommand, match=says):
        wire.decode_command(name, payload.encode())


def test_a_recording_context_keeps_what_an_agent_reported() -> None:
    async def agent(context: RecordingContext) -> None:
        await context.usage("gpt-4o", 10, 2, cost_usd=0.001)

    context = RecordingContext()
    asyncio.run(agent(context))
    assert context.usages == [Usage("gpt-4o", 10, 2, 0.001)]


def test_execution_get_shows_usage_in_one_line_and_nothing_without_reports() -> None:
    shown = usage_text({"input_tokens": 1200, "output_tokens": 300, "cost_usd": 0.0066,
                        "reports": 2})  # fmt: skip
    assert shown == "1,200 in + 300 out tokens, $0.0066 (2 reports)"
    assert usage_text(dict(NO_USAGE)) == ""
    assert usage_text(None) == ""


def test_the_price_table_gives_a_cost_to_a_report_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTBOARD_PRICES", '{"gpt-4o": {"input": 2.5, "output": 10}}')
    prices = {m: (p.input, p.output) for m, p in Settings().prices.items()}
    assert cost_of(prices, "gpt-4o", 1_000_000, 100_000) == pytest.approx(2.5 + 1.0)
    assert cost_of(prices, "unknown-model", 10, 10) is None


def test_a_price_table_with_a_wrong_entry_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTBOARD_PRICES", '{"gpt-4o": {"input": -1, "output": 10}}')
    with pytest.raises(Unconfigured, match="PRICES"):  # one line naming the variable
        Settings()
