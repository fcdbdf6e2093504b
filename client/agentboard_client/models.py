"""The API's answers as typed values (pydantic). Unknown fields are kept, so a newer server
never breaks an older client; ``Execution.model_extra`` holds what this version does not name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

TERMINAL = ("completed", "failed", "cancelled")


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class Execution(Answer):
    """An execution as ``GET /v1/executions/{id}`` shows it (a list item leaves
    ``time_in_status``, ``tool_calls`` and ``artifacts`` null)."""

    id: UUID
    tenant: str
    type: str
    agent_id: str
    team_id: str | None = None
    worker_queue: str
    prompt: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    priority: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    status: str
    attempt: int
    worker_id: str | None = None
    created_by: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    deadline: datetime | None = None
    not_before: datetime | None = None
    result: Any = None
    error: str | None = None
    failure_reason: str | None = None
    completion_notes: str | None = None
    question: str | None = None
    cancel_requested: bool = False
    last_tool: str | None = None
    last_tool_call_id: str | None = None
    last_tool_outcome: str | None = None
    status_entered_at: datetime
    version: int
    position: int | None = None
    time_in_status: dict[str, float] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    artifacts: list[dict[str, Any]] | None = None

    @property
    def ended(self) -> bool:
        """Completed, failed or cancelled."""
        return self.status in TERMINAL


class ExecutionPage(Answer):
    """One page of ``GET /v1/executions``; ``next_cursor`` is null on the last."""

    items: list[Execution]
    next_cursor: str | None = None


class Event(Answer):
    """One event of an execution's stream (``follow``): ``type`` as the SSE ``event:``
    (``OutputAppended``, ``ToolCalled``, ...; last ``end``), ``id`` its log position,
    ``data`` as an item of ``GET /v1/executions/{id}/events`` (for ``end``: its
    ``status``)."""

    type: str
    id: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def text(self) -> str:
        """The output an ``OutputAppended`` carries, else ``""``."""
        inner = self.data.get("data")
        return str(inner.get("text", "")) if isinstance(inner, dict) else ""
