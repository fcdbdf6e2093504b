"""Worker reports as JSON: the one encoding shared by the worker SDK and the command
service that receives its reports (over NATS request/reply)."""

from __future__ import annotations

import json
from dataclasses import fields
from enum import Enum
from typing import Any
from uuid import UUID

from domain.execution import commands as c
from domain.execution.errors import InvalidCommand
from domain.execution.state import CommandResult

WORKER_COMMANDS: dict[str, type[c.Command]] = {
    "pick_up": c.PickUp,
    "record_tool_call": c.RecordToolCall,
    "finish_tool_call": c.FinishToolCall,
    "append_output": c.AppendOutput,
    "add_artifact": c.AddArtifact,
    "record_usage": c.RecordUsage,
    "request_input": c.RequestInput,
    "complete": c.Complete,
    "fail": c.Fail,
    "confirm_cancel": c.ConfirmCancel,
    "expire_lease": c.ExpireLease,
}
NAMES = {command_type: name for name, command_type in WORKER_COMMANDS.items()}


def encode_command(command: c.Command) -> tuple[str, bytes]:
    return NAMES[type(command)], json.dumps(command_data(command)).encode()


def command_data(command: c.Command) -> dict[str, Any]:
    return {field.name: _plain(getattr(command, field.name)) for field in fields(command)}


def decode_command(name: str, payload: bytes) -> c.Command:
    try:
        data = json.loads(payload)
    except ValueError as error:
        raise InvalidCommand(f"malformed {name} command: {error}") from None
    return command_from(name, data)


def command_from(name: str, data: Any) -> c.Command:
    command_type = WORKER_COMMANDS.get(name)
    if command_type is None:
        raise InvalidCommand(f"unknown command {name!r}")
    try:
        given = dict(data)
        given["execution_id"] = UUID(str(given["execution_id"]))
        return command_type(**given)
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidCommand(f"malformed {name} command: {error}") from None


BATCH = "batch"
"""The subject (``agentboard.cmd.batch``) of several reports of one run in one request."""
MAX_BATCH = 100


def encode_batch(commands: list[c.Command]) -> bytes:
    """Several reports, in the order they must be applied."""
    items = [{"command": NAMES[type(each)], "data": command_data(each)} for each in commands]
    return json.dumps(items).encode()


def decode_batch(payload: bytes) -> list[c.Command]:
    try:
        items = json.loads(payload)
    except ValueError as error:
        raise InvalidCommand(f"malformed batch: {error}") from None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise InvalidCommand(f"a batch is a list of 1 to {MAX_BATCH} commands")
    commands = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("command"), str):
            raise InvalidCommand('each item of a batch is {"command": NAME, "data": {...}}')
        commands.append(command_from(item["command"], item.get("data")))
    return commands


def encode_result(result: CommandResult, *, card: bool = False) -> bytes:
    """The reply to a worker report; ``card`` adds what a worker needs to run the execution
    (sent with the reply to a pick-up)."""
    return json.dumps(result_reply(result, card=card)).encode()


def result_reply(result: CommandResult, *, card: bool = False) -> dict[str, Any]:
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
    return reply


def encode_error(error: BaseException) -> bytes:
    return json.dumps(error_reply(error)).encode()


def error_reply(error: BaseException) -> dict[str, Any]:
    return {"ok": False, "error": type(error).__name__, "detail": str(error)}


def _plain(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value
