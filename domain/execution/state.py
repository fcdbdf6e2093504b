"""Copies of an execution handed back to callers of the command side."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from domain.execution.aggregate import Execution
from domain.execution.shape import ExecutionFields


@dataclass(slots=True)
class ExecutionState(ExecutionFields):
    """The execution as the command side left it: its fields, and what only the command
    side hands out (the lease, the answer to its question, its time limits)."""

    lease: int
    answer: Any
    timeout_seconds: float | None
    heartbeat_timeout_seconds: float | None

    @classmethod
    def of(cls, execution: Execution) -> ExecutionState:
        return cls.from_snapshot(snapshot(execution))

    @classmethod
    def from_snapshot(cls, state: dict[str, Any]) -> ExecutionState:
        values = {name: state[_ATTRIBUTE.get(name, name)] for name in _NAMES}
        values["status"] = values["status"].value
        reason = values["failure_reason"]
        values["failure_reason"] = reason.value if reason else None
        return cls(**values)


_NAMES = tuple(field.name for field in fields(ExecutionState))
_ATTRIBUTE = {"id": "_id", "version": "_version", "created_at": "_created_on",
              "updated_at": "_modified_on"}  # fmt: skip
"""The aggregate's own names for the fields eventsourcing keeps."""


def snapshot(execution: Execution) -> dict[str, Any]:
    """A shallow copy of the aggregate's attributes: cheap enough for the writer thread;
    the caller turns it into an ExecutionState in its own thread. Safe because the fields
    an ExecutionState exposes are replaced by events, never changed in place."""
    return dict(vars(execution))


class CommandResult:
    """What a command produced: the execution as it left it, and where its last event
    stands in the log (``position``), so a query can wait for a view to catch up."""

    __slots__ = ("_snapshot", "_state", "position", "recorded")

    def __init__(self, state: dict[str, Any], position: int | None, recorded: int) -> None:
        self._snapshot = state
        self._state: ExecutionState | None = None
        self.position = position
        self.recorded = recorded

    @property
    def execution(self) -> ExecutionState:
        if self._state is None:
            self._state = ExecutionState.from_snapshot(self._snapshot)
        return self._state

    @property
    def lease(self) -> int:
        lease: int = self._snapshot["lease"]
        return lease

    def brief(self) -> dict[str, Any]:
        """The few fields a worker's report needs back, without building the whole state."""
        state = self._snapshot
        return {
            "lease": state["lease"],
            "status": state["status"].value,
            "attempt": state["attempt"],
            "cancel_requested": state["cancel_requested"],
        }

    def __repr__(self) -> str:
        return f"CommandResult(position={self.position}, recorded={self.recorded})"
