"""An in-memory agent context that records what an agent did, for unit tests of agents
(docs/agents.md, "Test it"): no server, no worker.

    context = RecordingContext(parameters={"steps": [{"ask": "Go on?"}]}, answers=["yes"])
    result = asyncio.run(script(context))
    [question] = context.questions
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from agentboard_client.agent import ExecutionInfo, InputKind

SUCCESS = "success"
FAILED = "failed"


@dataclass
class RecordedToolCall:
    name: str
    arguments: dict[str, Any]
    summary: str = ""
    chunks: list[str] = field(default_factory=list)
    chunk_times: list[float] = field(default_factory=list)
    outcome: str | None = None  # "success" or "failed"; None while the call runs
    error: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None

    async def output(self, text: str) -> None:
        self.chunks.append(text)
        self.chunk_times.append(time.monotonic())

    @property
    def output_text(self) -> str:
        return "".join(self.chunks)


@dataclass(frozen=True)
class Question:
    text: str
    kind: str
    schema: dict[str, Any] | None


@dataclass(frozen=True)
class Usage:
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None


@dataclass(frozen=True)
class Artifact:
    name: str
    data: bytes
    media_type: str


class NoAnswerScripted(Exception):
    """The agent asked more questions than the test scripted answers for."""


class RecordingContext:
    def __init__(
        self,
        *,
        agent_id: str = "script",
        prompt: str = "",
        parameters: dict[str, Any] | None = None,
        answers: Iterable[Any] = (),
    ) -> None:
        self._execution = ExecutionInfo(
            id=uuid4(), agent_id=agent_id, prompt=prompt, parameters=parameters or {}, attempt=1
        )
        self._cancelled = asyncio.Event()
        self._answers = deque(answers)
        self.tool_calls: list[RecordedToolCall] = []
        self.said: list[str] = []
        self.questions: list[Question] = []
        self.artifacts: list[Artifact] = []
        self.usages: list[Usage] = []

    @property
    def execution(self) -> ExecutionInfo:
        return self._execution

    @property
    def cancelled(self) -> asyncio.Event:
        return self._cancelled

    @asynccontextmanager
    async def tool(self, name: str, arguments: dict[str, Any]) -> AsyncIterator[RecordedToolCall]:
        call = RecordedToolCall(name, dict(arguments))
        self.tool_calls.append(call)
        try:
            yield call
        except BaseException as error:
            call.outcome, call.error = FAILED, str(error) or type(error).__name__
            raise
        else:
            call.outcome = SUCCESS
        finally:
            call.ended_at = time.monotonic()

    async def say(self, text: str) -> None:
        self.said.append(text)

    async def ask(
        self,
        question: str,
        *,
        kind: str = InputKind.CLARIFICATION,
        schema: dict[str, Any] | None = None,
    ) -> Any:
        self.questions.append(Question(question, InputKind(kind), schema))
        if not self._answers:
            raise NoAnswerScripted(question)
        return self._answers.popleft()

    async def artifact(self, name: str, data: bytes, media_type: str = "text/plain") -> None:
        self.artifacts.append(Artifact(name, data, media_type))

    async def usage(
        self, model: str, input_tokens: int, output_tokens: int, cost_usd: float | None = None
    ) -> None:
        self.usages.append(Usage(model, input_tokens, output_tokens, cost_usd))
