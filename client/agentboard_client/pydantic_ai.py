"""A pydantic-ai ``Agent`` as an agentboard agent (``agentboard-client[pydantic-ai]``).

    from pydantic_ai import Agent
    from agentboard_client.pydantic_ai import as_agent

    triage = Agent("openai:gpt-4o", instructions="Triage the ticket.")

    @triage.tool_plain(requires_approval=True)
    def page_on_call(team: str) -> str: ...

    run = as_agent(triage)   # agentboard worker --agent triage=my_agents:run

It runs the agent on the execution's prompt and records what it does:

- each tool call as a recorded tool call (``ToolCalled`` on the call, ``ToolCallFinished``
  with its outcome and a summary of what it returned; a tool that asked the model to retry
  or was denied is a failed call);
- the text of each model response as output, as each response arrives;
- a tool declared ``requires_approval`` as a question of kind ``approval`` naming the tool
  and its arguments, answered ``{"approved": true|false, "reason"?: ...}`` (``true``/``false``
  alone, or ``"yes"`` and ``"no"``, are taken too); the run resumes with the decision
  (pydantic-ai's deferred tools), a denial telling the model the reason;
- the tokens of each stretch of the run as ``UsageRecorded`` (with the cost, where
  pydantic-ai's price table knows the model).

The execution completes with the agent's output (a pydantic model as its JSON). A tool that
raises fails the execution with ``tool_error``; a tool deferred for external execution
(``CallDeferred``) is not supported and fails it with ``missing_prerequisite``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from pydantic import BaseModel
from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults, ToolApproved, ToolDenied
from pydantic_ai.messages import (
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    ModelMessage,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)

from agentboard_client.agent import Agent as AgentboardAgent
from agentboard_client.agent import (
    AgentContext,
    AgentFailed,
    FailureReason,
    InputKind,
    ToolCall,
    ToolFailed,
)

APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["approved"],
}
SUMMARY_CHARS = 200
YES = {"yes", "y", "approve", "approved", "true", "ok"}


def as_agent(
    agent: Agent[Any, Any], *, deps: Callable[[AgentContext], Any] | None = None,
    max_approval_rounds: int = 20,
) -> AgentboardAgent:  # fmt: skip
    """An agentboard agent that runs ``agent`` on the execution's prompt; ``deps``, given the
    context, makes the run's dependencies."""

    async def run(context: AgentContext) -> Any:
        return await _Run(agent, context, deps(context) if deps else None).run(max_approval_rounds)

    run.__name__ = getattr(agent, "name", None) or "pydantic_ai_agent"
    return run


class _Run:
    def __init__(self, agent: Agent[Any, Any], context: AgentContext, deps: Any) -> None:
        self.agent = agent
        self.context = context
        self.deps = deps
        self.open: dict[str, tuple[AbstractAsyncContextManager[ToolCall], ToolCall, str]] = {}
        self.seen: list[ModelMessage] = []

    async def run(self, max_rounds: int) -> Any:
        history: list[ModelMessage] | None = None
        decisions: DeferredToolResults | None = None
        prompt: str | None = self.context.execution.prompt
        for _ in range(max_rounds):
            try:
                result = await self.stretch(prompt, history, decisions)
            except asyncio.CancelledError as cancelled:
                await self.close_open(cancelled)
                raise
            except Exception as error:
                calls = [tool for _, _, tool in self.open.values()]
                await self.close_open(error)
                if calls:  # a tool raised: the run fails as a tool's failure
                    raise ToolFailed(f"{calls[-1]}: {type(error).__name__}: {error}") from error
                raise
            output = result.output
            if not isinstance(output, DeferredToolRequests):
                return _json(output)
            if output.calls:
                names = ", ".join(call.tool_name for call in output.calls)
                raise AgentFailed(
                    f"tools deferred for external execution are not supported here: {names}",
                    FailureReason.MISSING_PREREQUISITE,
                )
            decisions = DeferredToolResults()
            for call in output.approvals:
                decisions.approvals[call.tool_call_id] = await self.decide(call)
            history, prompt = result.all_messages(), None
        raise AgentFailed(f"more than {max_rounds} rounds of approvals")

    async def stretch(
        self, prompt: str | None, history: list[ModelMessage] | None,
        decisions: DeferredToolResults | None,
    ) -> Any:  # fmt: skip
        """One run of the agent, until it ends or waits for approvals; its tokens recorded."""
        self.seen = list(history or [])
        run: Any  # AgentRun, whose output type the run-time output_type makes a union
        async with self.agent.iter(
            prompt, message_history=history, deferred_tool_results=decisions, deps=self.deps,
            output_type=_with_deferred(self.agent.output_type),
        ) as run:  # fmt: skip
            async for node in run:
                if Agent.is_call_tools_node(node):
                    await self.responded(node.model_response)
                    async with node.stream(run.ctx) as events:
                        async for event in events:
                            await self.tool_event(event)
            result = run.result
        if result is None:  # pragma: no cover - iter always ends with a result
            raise AgentFailed("the pydantic-ai run ended without a result")
        await self.record_usage(result)
        return result

    async def responded(self, response: ModelResponse) -> None:
        """A model response: its text as output, unless replayed from an earlier stretch."""
        if any(response is message or response == message for message in self.seen):
            return
        self.seen.append(response)
        for part in response.parts:
            if isinstance(part, TextPart) and part.content:
                text = part.content if part.content.endswith("\n") else part.content + "\n"
                await self.context.say(text)

    async def tool_event(self, event: Any) -> None:
        if isinstance(event, FunctionToolCallEvent):
            part = event.part
            if part.tool_call_id in self.open:
                return  # resumed after an approval: already on record
            manager = self.context.tool(part.tool_name, _arguments(part))
            call = await manager.__aenter__()
            self.open[part.tool_call_id] = (manager, call, part.tool_name)
        elif isinstance(event, FunctionToolResultEvent):
            # ``part`` in pydantic-ai 2, ``result`` in 1
            await self.finished(getattr(event, "part", None) or getattr(event, "result", None))

    async def finished(self, part: Any) -> None:
        held = self.open.pop(getattr(part, "tool_call_id", ""), None)
        if held is None:
            return
        manager, call, tool = held
        if isinstance(part, ToolReturnPart) and part.outcome == "success":
            call.summary = _summary(part.content)
            await manager.__aexit__(None, None, None)
            return
        if isinstance(part, RetryPromptPart):
            reason = f"{tool}: the model was asked to retry: {_summary(part.content)}"
        else:
            reason = f"{tool}: {getattr(part, 'outcome', 'failed')}: {_summary(part.content)}"
        call.summary = reason[:SUMMARY_CHARS]
        error = _ToolCallFailed(reason)
        await manager.__aexit__(type(error), error, None)

    async def close_open(self, error: BaseException) -> None:
        """The run broke off (a tool raised, it was cancelled): its open calls failed."""
        for manager, call, tool in list(self.open.values()):
            call.summary = f"{tool}: {type(error).__name__}: {error}"[:SUMMARY_CHARS]
            await manager.__aexit__(type(error), error, None)
        self.open.clear()

    async def decide(self, call: ToolCallPart) -> ToolApproved | ToolDenied:
        arguments = json.dumps(_arguments(call), default=str)
        question = f"Approve {call.tool_name} with {arguments}?"
        answer = await self.context.ask(question, kind=InputKind.APPROVAL, schema=APPROVAL_SCHEMA)
        approved, reason = _decision(answer)
        if approved:
            return ToolApproved()
        return ToolDenied(reason or f"{call.tool_name} was denied by a person")

    async def record_usage(self, result: Any) -> None:
        usage = result.usage  # a property in pydantic-ai 2, a method in 1
        usage = usage if hasattr(usage, "input_tokens") else usage()
        if not (usage.input_tokens or usage.output_tokens):
            return
        response = result.response
        model = response.model_name or "unknown"
        try:
            cost: float | None = float(response.cost().total_price)
        except Exception:  # no price known for this model (or provider)
            cost = None
        await self.context.usage(model, usage.input_tokens, usage.output_tokens, cost)


class _ToolCallFailed(Exception):
    """A tool call pydantic-ai ended otherwise than with its result (retry, denial)."""


def _with_deferred(output_type: Any) -> Sequence[Any]:
    types = list(output_type) if isinstance(output_type, list | tuple) else [output_type]
    return types if DeferredToolRequests in types else [*types, DeferredToolRequests]


def _arguments(part: ToolCallPart) -> dict[str, Any]:
    try:
        arguments = part.args_as_dict()
    except ValueError:
        return {"raw": str(part.args)}
    return arguments if isinstance(arguments, dict) else {"value": arguments}


def _summary(content: Any) -> str:
    text = content if isinstance(content, str) else json.dumps(_json(content), default=str)
    return text[:SUMMARY_CHARS]


def _json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _decision(answer: Any) -> tuple[bool, str | None]:
    """``{"approved": bool, "reason"?}``, a bare bool, or yes/no text."""
    if isinstance(answer, dict):
        reason = answer.get("reason")
        return answer.get("approved") is True, str(reason) if reason else None
    if isinstance(answer, bool):
        return answer, None
    if isinstance(answer, str):
        return answer.strip().lower() in YES, None if answer.strip().lower() in YES else answer
    return False, f"unrecognised answer {answer!r}"
