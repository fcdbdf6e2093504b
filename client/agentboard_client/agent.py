"""The agent protocol: what an agent is given, and what it may do.

An agent is an async callable ``agent(context) -> result``. The result (any JSON value)
completes the execution; raising ``AgentFailed`` fails it with a reason; everything the
agent does on the way goes through its context, which records it:

    async def hello(context: AgentContext) -> Any:
        async with context.tool("bash", {"command": "echo hi"}) as call:
            await call.output("hi\\n")
            call.summary = "printed hi"
        await context.usage("gpt-4o", input_tokens=1200, output_tokens=300, cost_usd=0.006)
        answer = await context.ask("Shall I go on?")
        await context.artifact("answer.txt", str(answer).encode())
        return {"answer": answer}

An agent package depends on this slim distribution only; ``agentboard worker --agent
NAME=module:callable`` (or the entry-point group ``agentboard.agents``) runs it
(docs/agents.md). The built-in agents of the server plug in the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID


class FailureReason(StrEnum):
    """Why an execution failed, as the API shows it in ``failure_reason``."""

    TOOL_ERROR = "tool_error"
    POLICY_VIOLATION = "policy_violation"
    MISSING_PREREQUISITE = "missing_prerequisite"
    WORKER_LOST = "worker_lost"
    TIMEOUT = "timeout"
    AGENT_ERROR = "agent_error"
    INVALID_OUTPUT = "invalid_output"  # a result its output schema refuses (pipelines)


class InputKind(StrEnum):
    """What a question asks for: an answer, or a decision (``{"approved": bool}``)."""

    CLARIFICATION = "clarification"
    APPROVAL = "approval"


class AgentFailed(Exception):
    """The agent gives up: the execution fails with ``reason``."""

    def __init__(self, error: str, reason: str = FailureReason.AGENT_ERROR) -> None:
        super().__init__(error)
        self.error = error
        self.reason = reason


class ToolFailed(Exception):
    """Raised inside ``context.tool(...)``: the tool call is recorded as failed, and the
    exception propagates (an agent that does not catch it fails with ``tool_error``)."""


@dataclass(frozen=True)
class ExecutionInfo:
    id: UUID
    agent_id: str
    prompt: str
    parameters: dict[str, Any]
    attempt: int
    labels: dict[str, str] = field(default_factory=dict)


class ToolCall(Protocol):
    """One tool call in progress. Set ``summary`` to describe its result."""

    summary: str

    async def output(self, text: str) -> None:
        """Stream output of this tool (live to boards, and into the execution's output)."""


class AgentContext(Protocol):
    @property
    def execution(self) -> ExecutionInfo: ...

    @property
    def cancelled(self) -> asyncio.Event:
        """Set when someone asked to cancel; long waits should watch it."""

    def tool(self, name: str, arguments: dict[str, Any]) -> AbstractAsyncContextManager[ToolCall]:
        """Record a tool call: ToolCalled on entry, ToolCallFinished on exit (failed when the
        block raises)."""

    async def say(self, text: str) -> None:
        """Agent output (streamed live, stored coalesced)."""

    async def ask(
        self,
        question: str,
        *,
        kind: str = InputKind.CLARIFICATION,
        schema: dict[str, Any] | None = None,
    ) -> Any:
        """Ask a person; the execution shows ``requires_input`` until the answer comes back.
        ``kind`` is ``clarification`` or ``approval``."""

    async def artifact(self, name: str, data: bytes, media_type: str = "text/plain") -> None:
        """Store a file produced by the run (object store, with its sha256)."""

    async def usage(
        self, model: str, input_tokens: int, output_tokens: int, cost_usd: float | None = None
    ) -> None:
        """Record tokens a model used for this run (``UsageRecorded``), and their cost in US
        dollars when known; the execution's ``usage`` sums them."""


Agent = Callable[[AgentContext], Awaitable[Any]]
