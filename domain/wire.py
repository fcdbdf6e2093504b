"""Worker reports as JSON: the one encoding shared by the worker SDK and the command
service that receives its reports (over NATS request/reply)."""

from __future__ import annotations

import json
from dataclasses import fields
from enum import Enum
from typing import Any
from uuid import UUID

from domain import commands as c
from domain.exceptions import InvalidCommand
from domain.state import CommandResult

WORKER_COMMANDS: dict[str, type[c.Command]] = {
    "pick_up": c.PickUp,
    "record_tool_call": c.RecordToolCall,
    "finish_tool_call": c.FinishToolCall,
    "append_output": c.AppendOutput,
    "add_artifact": c.AddArtifact,
    "request_input": c.RequestInput,
    "complete": c.Complete,
    "fail": c.Fail,
    "confirm_cancel": c.ConfirmCancel,
    "expire_lease": c.ExpireLease,
}
NAMES = {command_type: name for name, command_type in WORKER_COMMANDS.items()}


def encode_command(command: c.Command) -> tuple[str, bytes]:
    data = {field.name: _plain(getattr(command, field.name)) for field in fields(command)}
    return NAMES[type(command)], json.dumps(data).encode()


def decode_command(name: str, payload: bytes) -> c.Command:
    command_type = WORKER_COMMANDS.get(name)
    if command_type is None:
        raise InvalidCommand(f"unknown command {name!r}")
    try:
        data = json.loads(payload)
        data["execution_id"] = UUID(str(data["execution_id"]))
        return command_type(**data)
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidCommand(f"malformed {name} command: {error}") from None


def encode_result(result: CommandResult, *, card: bool = False) -> bytes:
    """The reply to a worker report; ``card`` adds what a worker needs to run the execution
    (sent with the reply to a pick-up)."""
    reply: dict[str, Any] = {"ok": True, "position": result.position, "recorded": result.recorded}
    reply.update(result.brief())
    if card:
        state = result.execution
        reply["execution"] = {
            "id": str(state.id),
            "tenant": state.tenant,
            "agent_id": state.agent_id,
            "prompt": state.prompt,
            "parameters": state.parameters,
            "labels": state.labels,
            "attempt": state.attempt,
            "timeout_seconds": state.timeout_seconds,
        }
    return json.dumps(reply).encode()


def encode_error(error: BaseException) -> bytes:
    return json.dumps({"ok": False, "error": type(error).__name__, "detail": str(error)}).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value
