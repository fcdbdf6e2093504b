"""One handler per command: which aggregate method a command calls, and with what.

Pure functions of (execution, command); no I/O. Creation is handled by the
application service, because it has no execution to call yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain.execution import commands as c
from domain.execution.aggregate import Execution
from domain.execution.values import FailureReason, Status
from domain.pipeline.rules import output_problem


def pick_up(execution: Execution, command: c.PickUp) -> None:
    execution.pick_up(command.worker_id, command.claim_token)


def record_tool_call(execution: Execution, command: c.RecordToolCall) -> None:
    execution.record_tool_call(command.lease, command.call_id, command.tool, command.arguments)


def finish_tool_call(execution: Execution, command: c.FinishToolCall) -> None:
    execution.finish_tool_call(
        command.lease,
        command.call_id,
        command.outcome,
        command.result_summary,
        command.duration_seconds,
    )


def append_output(execution: Execution, command: c.AppendOutput) -> None:
    execution.append_output(command.lease, command.text, command.sequence)


def add_artifact(execution: Execution, command: c.AddArtifact) -> None:
    execution.add_artifact(
        command.lease,
        command.name,
        command.media_type,
        command.size,
        command.sha256,
        command.object_key,
    )


def record_usage(execution: Execution, command: c.RecordUsage) -> None:
    execution.record_usage(
        command.lease, command.model, command.input_tokens, command.output_tokens,
        command.cost_usd, command.usage_id,
    )  # fmt: skip


def request_input(execution: Execution, command: c.RequestInput) -> None:
    execution.request_input(command.lease, command.question, command.kind, command.answer_schema)


def provide_input(execution: Execution, command: c.ProvideInput) -> None:
    execution.provide_input(command.answer, command.actor, command.idempotency_key)


def block(execution: Execution, command: c.Block) -> None:
    execution.block(command.reason, command.actor, command.idempotency_key)


def unblock(execution: Execution, command: c.Unblock) -> None:
    execution.unblock(command.reason, command.actor, command.idempotency_key)


def request_cancel(execution: Execution, command: c.RequestCancel) -> None:
    execution.request_cancel(command.reason, command.actor, command.idempotency_key)


def confirm_cancel(execution: Execution, command: c.ConfirmCancel) -> None:
    execution.confirm_cancel(command.lease)


def complete(execution: Execution, command: c.Complete) -> None:
    """Complete, or, when the result does not satisfy the execution's output schema (a
    pipeline column's), fail it with ``invalid_output``: retried as its policy allows."""
    if execution.output_schema is not None:
        execution.check_lease(command.lease, "complete")
        execution.check_status("complete", Status.RUNNING)
        problem = output_problem(execution.output_schema, command.result)
        if problem is not None:
            error = f"the result does not satisfy the output schema: {problem}"
            execution.fail(command.lease, error, FailureReason.INVALID_OUTPUT)
            return
    execution.complete(command.lease, command.result, command.completion_notes)


def force_complete(execution: Execution, command: c.ForceComplete) -> None:
    execution.force_complete(
        command.actor, command.result, command.completion_notes, command.idempotency_key
    )


def fail(execution: Execution, command: c.Fail) -> None:
    execution.fail(command.lease, command.error, command.reason)


def expire_lease(execution: Execution, command: c.ExpireLease) -> None:
    execution.expire_lease(command.lease)


def retry(execution: Execution, command: c.Retry) -> None:
    execution.retry(command.actor, command.idempotency_key)


Handler = Callable[[Execution, Any], None]

HANDLERS: dict[type[c.Command], Handler] = {
    c.PickUp: pick_up,
    c.RecordToolCall: record_tool_call,
    c.FinishToolCall: finish_tool_call,
    c.AppendOutput: append_output,
    c.AddArtifact: add_artifact,
    c.RecordUsage: record_usage,
    c.RequestInput: request_input,
    c.ProvideInput: provide_input,
    c.Block: block,
    c.Unblock: unblock,
    c.RequestCancel: request_cancel,
    c.ConfirmCancel: confirm_cancel,
    c.Complete: complete,
    c.ForceComplete: force_complete,
    c.Fail: fail,
    c.ExpireLease: expire_lease,
    c.Retry: retry,
}
