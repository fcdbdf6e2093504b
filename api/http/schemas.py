"""Request and response bodies of the HTTP API (DESIGN §6), with their limits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from litestar.params import KwargDefinition
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.execution.shape import ExecutionFields, shape_of
from domain.execution.values import FailureReason

MAX_PROMPT_BYTES = 64 * 1024
MAX_PARAMETERS_BYTES = 256 * 1024
MAX_LABELS = 32
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_JSON_DEPTH = 32
EARLIEST_DEADLINE = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_DEADLINE = datetime(9999, 1, 1, tzinfo=UTC)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def storable(cls, data: Any) -> Any:
        check_storable(data)
        return data


def check_storable(value: Any) -> None:
    """Refuse JSON that the stored log could keep but its readers could not: PostgreSQL
    keeps no NUL character in text or jsonb (one in a prompt would halt the board view), and
    the relay and the views walk values recursively. Iterative, so no input exhausts the
    stack here."""
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("text must not contain NUL characters (\\u0000)")
        elif isinstance(item, dict):
            pending.extend((key, depth + 1) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            pending.extend((child, depth + 1) for child in item)


class RetryIn(Strict):
    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff_seconds: float = Field(default=1.0, ge=0, le=86_400)
    max_backoff_seconds: float = Field(default=300.0, ge=0, le=86_400)
    retry_on: list[FailureReason] = Field(
        default_factory=lambda: [FailureReason.WORKER_LOST, FailureReason.TIMEOUT]
    )


class CreatedByIn(Strict):
    kind: Literal["user", "agent", "heartbeat", "schedule", "api"]
    id: str = Field(min_length=1, max_length=128)


class ExecutionCreate(Strict):
    agent_id: str = Field(min_length=1, max_length=128)
    worker_queue: str = Field(default="default", pattern=NAME_PATTERN)
    prompt: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=0, ge=-100, le=100)
    labels: dict[str, str] = Field(default_factory=dict)
    deadline: AwareDatetime | None = Field(default=None, description="with its time zone")
    type: Literal["agent", "team"] = "agent"
    team_id: str | None = Field(default=None, min_length=1, max_length=128)
    retry: RetryIn | None = None
    timeout_seconds: float | None = Field(default=None, gt=0, le=7 * 86_400)
    heartbeat_timeout_seconds: float | None = Field(default=None, gt=0, le=86_400)
    parent_execution_id: UUID | None = None
    created_by: CreatedByIn | None = None

    @field_validator("prompt")
    @classmethod
    def prompt_fits(cls, prompt: str) -> str:
        if len(prompt.encode()) > MAX_PROMPT_BYTES:
            raise ValueError(f"prompt is larger than {MAX_PROMPT_BYTES // 1024} KiB")
        if not prompt.strip():
            raise ValueError("prompt must not be blank")
        return prompt

    @field_validator("deadline")
    @classmethod
    def deadline_fits(cls, deadline: datetime | None) -> datetime | None:
        """Within the years every reader (PostgreSQL and Python both) can hold in UTC."""
        if deadline is None:
            return None
        try:
            in_utc = deadline.astimezone(UTC)
        except OverflowError:
            in_utc = None
        if in_utc is None or not EARLIEST_DEADLINE <= in_utc <= LATEST_DEADLINE:
            raise ValueError("deadline must fall between 1970-01-01 and 9999-01-01 (UTC)")
        return deadline

    @field_validator("parameters")
    @classmethod
    def parameters_fit(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(parameters).encode()) > MAX_PARAMETERS_BYTES:
            raise ValueError(f"parameters are larger than {MAX_PARAMETERS_BYTES // 1024} KiB")
        return parameters

    @field_validator("labels")
    @classmethod
    def labels_fit(cls, labels: dict[str, str]) -> dict[str, str]:
        if len(labels) > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels")
        for key, value in labels.items():
            if not 0 < len(key) <= 63 or len(value) > 256:
                raise ValueError("a label key is 1-63 characters and its value at most 256")
        return labels


class InputAnswer(Strict):
    answer: Any = Field(description="the answer, any JSON value")


class Reason(Strict):
    reason: str = Field(default="", max_length=2000)


LEFT_OUT = (
    "null in the items of GET /v1/executions, which leave out the parts that cost a query "
    "each; GET /v1/executions/{id} fills it"
)


def described(text: str) -> KwargDefinition:
    return KwargDefinition(description=text)


@dataclass(slots=True)
class Execution(ExecutionFields):
    """An execution as the API shows it, whichever call answers: its fields, declared once
    in the domain (domain/execution/shape.py), the log position of its last change, and
    the parts that only ``GET /v1/executions/{id}`` fills (a list item leaves them null)."""

    position: Annotated[int | None, described("log position of the last change, if known")] = None
    time_in_status: Annotated[
        dict[str, float] | None, described(f"seconds spent in each status; {LEFT_OUT}")
    ] = None
    tool_calls: Annotated[
        list[dict[str, Any]] | None, described(f"its tool calls, every attempt's; {LEFT_OUT}")
    ] = None
    artifacts: Annotated[
        list[dict[str, Any]] | None,
        described(f"name, media type, size, sha256 and url of each; {LEFT_OUT}"),
    ] = None

    @classmethod
    def of(cls, execution: ExecutionFields, position: int | None) -> Execution:
        return cls(**shape_of(execution), position=position)


@dataclass(slots=True)
class ExecutionPage:
    items: Annotated[
        list[Execution], described(f"time_in_status, tool_calls, artifacts: {LEFT_OUT}")
    ]
    next_cursor: Annotated[str | None, described("the next page's `cursor`; null on the last")]
