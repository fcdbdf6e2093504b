"""The pydantic-ai adapter (agentboard_client.pydantic_ai) with pydantic-ai's own
FunctionModel and TestModel: what an execution records of a pydantic-ai agent's run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agentboard_client.agent import ToolFailed
from agentboard_client.pydantic_ai import as_agent
from agentboard_client.testing import RecordingContext
from pydantic import BaseModel
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel


def scripted(*responses: list[Any]) -> FunctionModel:
    """A model that answers the n-th request with the n-th list of parts, and then echoes
    what the tools returned."""

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = sum(isinstance(message, ModelResponse) for message in messages)
        if done < len(responses):
            return ModelResponse(parts=responses[done])
        returned = [part.content for part in messages[-1].parts if isinstance(part, ToolReturnPart)]
        return ModelResponse(parts=[TextPart(f"tools said {returned}")])

    return FunctionModel(answer, model_name="scripted")


def run(agent: Agent[Any, Any], answers: list[Any] = ()) -> tuple[Any, RecordingContext]:  # type: ignore[assignment]
    context = RecordingContext(agent_id="pai", prompt="add things", answers=answers)
    return asyncio.run(as_agent(agent)(context)), context


def test_a_tool_call_is_recorded_with_its_arguments_outcome_and_result() -> None:
    agent = Agent(scripted([TextPart("adding"), ToolCallPart("add", {"a": 1, "b": 2})]))

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        return a + b

    result, context = run(agent)
    assert result == "tools said [3]"
    [call] = context.tool_calls
    assert (call.name, call.arguments, call.outcome, call.summary) == (
        "add", {"a": 1, "b": 2}, "success", "3",
    )  # fmt: skip
    assert context.said == ["adding\n", "tools said [3]\n"]


def test_a_tool_that_asks_the_model_to_retry_is_a_failed_call_and_the_run_goes_on() -> None:
    agent = Agent(scripted([ToolCallPart("lookup", {"key": "x"})]))

    @agent.tool_plain
    def lookup(key: str) -> str:
        raise ModelRetry(f"no such key {key}")

    result, context = run(agent)
    [call] = context.tool_calls
    assert call.outcome == "failed"
    assert "no such key x" in (call.error or "")
    assert result.startswith("tools said")


def test_a_tool_that_raises_fails_the_run_as_a_tools_failure() -> None:
    agent = Agent(scripted([ToolCallPart("explode", {})]))

    @agent.tool_plain
    def explode() -> str:
        raise RuntimeError("disk full")

    with pytest.raises(ToolFailed, match="explode: RuntimeError: disk full"):
        run(agent)


def approval_agent() -> Agent[Any, Any]:
    agent = Agent(scripted([ToolCallPart("deploy", {"env": "prod"})]))

    @agent.tool_plain(requires_approval=True)
    def deploy(env: str) -> str:
        return f"deployed {env}"

    return agent


def test_a_tool_requiring_approval_asks_and_runs_when_approved() -> None:
    result, context = run(approval_agent(), answers=[{"approved": True}])
    [question] = context.questions
    assert question.kind == "approval"
    assert question.text == 'Approve deploy with {"env": "prod"}?'
    assert question.schema is not None
    assert question.schema["required"] == ["approved"]
    [call] = context.tool_calls
    assert (call.name, call.outcome, call.summary) == ("deploy", "success", "deployed prod")
    assert result == "tools said ['deployed prod']"


def test_a_denied_tool_does_not_run_and_the_model_hears_the_reason() -> None:
    result, context = run(approval_agent(), answers=[{"approved": False, "reason": "freeze"}])
    [call] = context.tool_calls
    assert call.outcome == "failed"
    assert "denied" in call.summary
    assert result == "tools said ['freeze']"


def test_the_runs_tokens_are_recorded_once_per_stretch() -> None:
    _, context = run(approval_agent(), answers=[True])
    assert [usage.model for usage in context.usages] == ["scripted", "scripted"]
    assert all(usage.input_tokens > 0 and usage.output_tokens > 0 for usage in context.usages)
    assert all(usage.cost_usd is None for usage in context.usages)  # no price for it


class Verdict(BaseModel):
    severity: str


def test_a_structured_output_completes_the_execution_as_json_with_test_model() -> None:
    agent = Agent(TestModel(custom_output_args={"severity": "high"}), output_type=Verdict)
    result, context = run(agent)
    assert result == {"severity": "high"}
    assert context.usages[0].model == "test"
