"""The ``script`` agent: follows ``parameters.steps``, so tests and demos can drive every path.

Each step is an object with exactly one of these keys (and only the optional keys shown):

- ``{"tool": NAME, "args": {...}, "seconds": S, "fails": bool}``: a tool call named NAME with
  arguments ``args`` (default ``{}``) that takes S seconds (default 0). With
  ``"fails": true`` the tool call is recorded as failed and the execution fails with
  ``tool_error``.
- ``{"say": TEXT}``: agent output.
- ``{"ask": QUESTION, "kind": "approval", "schema": {...}}``: asks a person (``kind``
  defaults to ``clarification``); the answer is appended to the answers.
- ``{"sleep": S}``: waits S seconds.
- ``{"artifact": {"name": N, "text": T, "media_type": M}}``: stores T, encoded UTF-8, as the
  file N (``media_type`` defaults to ``text/plain``).
- ``{"fail": ERROR, "reason": R}``: fails the execution with the text ERROR and the
  FailureReason value R (default ``agent_error``).

It completes with ``{"answers": [...]}``, the answers in the order asked.

All steps are checked before the first one runs: a malformed step (not an object, no kind or
two kinds, an unexpected key, a value of the wrong type) fails the execution with
``MalformedStep``, an ``AgentFailed`` with reason ``agent_error`` whose message names the
step as ``steps[i]`` (counted from 0) and what is wrong with it.

Cancellation is checked before every step and watched during every wait (``sleep`` and a
tool's ``seconds``): once ``context.cancelled`` is set the agent raises
``asyncio.CancelledError``. Cancelling the agent's task works at any point too.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from typing import Any, TypeVar

from domain.execution.values import FailureReason, InputKind
from workers.agent import AgentContext, AgentFailed, ToolFailed


class MalformedStep(AgentFailed):
    def __init__(self, index: int, problem: str) -> None:
        self.index = index
        self.problem = problem
        super().__init__(f"steps[{index}]: {problem}", FailureReason.AGENT_ERROR)


@dataclass(frozen=True)
class ToolStep:
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    fails: bool = False


@dataclass(frozen=True)
class SayStep:
    text: str


@dataclass(frozen=True)
class AskStep:
    question: str
    kind: InputKind = InputKind.CLARIFICATION
    schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class SleepStep:
    seconds: float


@dataclass(frozen=True)
class ArtifactStep:
    name: str
    text: str
    media_type: str = "text/plain"


@dataclass(frozen=True)
class FailStep:
    error: str
    reason: FailureReason = FailureReason.AGENT_ERROR


Step = ToolStep | SayStep | AskStep | SleepStep | ArtifactStep | FailStep
Choice = TypeVar("Choice", InputKind, FailureReason)


async def script(context: AgentContext) -> dict[str, Any]:
    steps = parse_steps(context.execution.parameters)
    answers: list[Any] = []
    for step in steps:
        if context.cancelled.is_set():
            raise asyncio.CancelledError("cancelled between steps")
        await _perform(context, step, answers)
    return {"answers": answers}


async def _perform(context: AgentContext, step: Step, answers: list[Any]) -> None:
    match step:
        case ToolStep():
            await _call_tool(context, step)
        case SayStep(text=text):
            await context.say(text)
        case AskStep(question=question, kind=kind, schema=schema):
            answers.append(await context.ask(question, kind=kind, schema=schema))
        case SleepStep(seconds=seconds):
            await wait_unless_cancelled(context.cancelled, seconds)
        case ArtifactStep(name=name, text=text, media_type=media_type):
            await context.artifact(name, text.encode("utf-8"), media_type)
        case FailStep(error=error, reason=reason):
            raise AgentFailed(error, reason)


async def _call_tool(context: AgentContext, step: ToolStep) -> None:
    try:
        async with context.tool(step.name, step.args) as call:
            await wait_unless_cancelled(context.cancelled, step.seconds)
            if step.fails:
                call.summary = "failed, as the script says"
                raise ToolFailed(f"{step.name} failed, as the script says")
            call.summary = "done"
    except ToolFailed as failure:
        raise AgentFailed(str(failure), FailureReason.TOOL_ERROR) from failure


async def wait_unless_cancelled(cancelled: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``; raise ``asyncio.CancelledError`` as soon as ``cancelled`` is set."""
    try:
        async with asyncio.timeout(seconds):
            await cancelled.wait()
    except TimeoutError:
        return
    raise asyncio.CancelledError("cancelled while waiting")


def parse_steps(parameters: dict[str, Any]) -> list[Step]:
    steps = parameters.get("steps")
    if not isinstance(steps, list):
        got = f"got {_json_type(steps)}" if "steps" in parameters else "it is missing"
        raise AgentFailed(
            f"script needs parameters.steps, a list of steps; {got}", FailureReason.AGENT_ERROR
        )
    return [_parse_step(index, raw) for index, raw in enumerate(steps)]


# Each kind of step, with every key it may have.
STEP_KEYS: dict[str, frozenset[str]] = {
    "tool": frozenset({"tool", "args", "seconds", "fails"}),
    "say": frozenset({"say"}),
    "ask": frozenset({"ask", "kind", "schema"}),
    "sleep": frozenset({"sleep"}),
    "artifact": frozenset({"artifact"}),
    "fail": frozenset({"fail", "reason"}),
}
ARTIFACT_KEYS = frozenset({"name", "text", "media_type"})


def _parse_step(index: int, raw: Any) -> Step:
    if not isinstance(raw, dict):
        raise MalformedStep(index, f"a step must be an object, got {_json_type(raw)}")
    kinds = [kind for kind in STEP_KEYS if kind in raw]
    if len(kinds) != 1:
        found = " and ".join(repr(kind) for kind in kinds) or "none"
        raise MalformedStep(index, f"a step has exactly one of {', '.join(STEP_KEYS)}; {found}")
    fields = _StepFields(index, raw, STEP_KEYS[kinds[0]])
    match kinds[0]:
        case "tool":
            args = fields.mapping("args") or {}
            name = fields.text("tool", non_empty=True)
            return ToolStep(name, args, fields.seconds("seconds"), fields.flag("fails"))
        case "say":
            return SayStep(fields.text("say"))
        case "ask":
            kind = fields.choice("kind", InputKind, InputKind.CLARIFICATION)
            return AskStep(fields.text("ask"), kind, fields.mapping("schema"))
        case "sleep":
            return SleepStep(fields.seconds("sleep"))
        case "artifact":
            artifact = fields.nested("artifact", ARTIFACT_KEYS)
            name = artifact.text("name", non_empty=True)
            media_type = artifact.text("media_type", "text/plain", non_empty=True)
            return ArtifactStep(name, artifact.text("text"), media_type)
        case _:  # "fail", the one kind left
            reason = fields.choice("reason", FailureReason, FailureReason.AGENT_ERROR)
            return FailStep(fields.text("fail"), reason)


class _StepFields:
    """Reads one step's fields; anything wrong raises MalformedStep saying what and where."""

    def __init__(
        self, index: int, raw: dict[str, Any], allowed: frozenset[str], prefix: str = ""
    ) -> None:
        unexpected = sorted(set(raw) - allowed)
        if unexpected:
            allowed_keys = ", ".join(sorted(allowed))
            raise MalformedStep(
                index, f"unexpected key '{prefix}{unexpected[0]}' (allowed: {allowed_keys})"
            )
        self._index, self._raw, self._prefix = index, raw, prefix

    def text(self, key: str, default: str | None = None, *, non_empty: bool = False) -> str:
        value = self._value(key, default)
        if not isinstance(value, str):
            raise self._wrong(key, "a string", value)
        if non_empty and not value:
            raise self._wrong(key, "a non-empty string", value)
        return value

    def seconds(self, key: str) -> float:
        value = self._value(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(key, "a number of seconds", value)
        if not (math.isfinite(value) and value >= 0):
            raise self._wrong(key, "a finite number of seconds, 0 or more", value)
        return float(value)

    def flag(self, key: str) -> bool:
        value = self._value(key, False)
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false", value)
        return value

    def mapping(self, key: str) -> dict[str, Any] | None:
        value = self._raw.get(key)
        if value is not None and not isinstance(value, dict):
            raise self._wrong(key, "an object", value)
        return value

    def choice(self, key: str, choices: type[Choice], default: Choice) -> Choice:
        value = self._value(key, default.value)
        try:
            return choices(value)
        except ValueError:
            names = ", ".join(choice.value for choice in choices)
            raise self._wrong(key, f"one of {names}", value) from None

    def nested(self, key: str, allowed: frozenset[str]) -> _StepFields:
        value = self._raw.get(key)
        if not isinstance(value, dict):
            raise self._wrong(key, "an object", value)
        return _StepFields(self._index, value, allowed, prefix=f"{self._prefix}{key}.")

    def _value(self, key: str, default: Any) -> Any:
        if key in self._raw:
            return self._raw[key]
        if default is None:
            raise MalformedStep(self._index, f"{self._prefix}{key} is required")
        return default

    def _wrong(self, key: str, expected: str, value: Any) -> MalformedStep:
        scalar = value is None or isinstance(value, str | int | float)
        got = json.dumps(value) if scalar else _json_type(value)
        return MalformedStep(self._index, f"{self._prefix}{key} must be {expected}, got {got}")


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, as someone writing the steps would call it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__
