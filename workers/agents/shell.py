"""The ``shell`` agent: runs shell commands, one ``bash`` tool call each.

Parameters (all optional):

- ``commands``: a list of strings, each run as ``bash -c COMMAND``. Without it the prompt is
  run as one script; a blank prompt then fails the execution (``agent_error``), since it is
  almost always a mistake. An explicit empty list runs nothing and completes.
- ``cwd``: the directory the commands run in.
- ``env``: variables (str -> str) added to the worker's own environment.
- ``timeout_seconds``: a limit for each command.

Each command is a tool call named ``bash`` with arguments ``{"command": COMMAND}``. Its
stdout and stderr, merged, stream to the tool call chunk by chunk as they arrive (decoded as
UTF-8, undecodable bytes replaced); stdin is empty. The summary reads ``exit 0, 3 lines``
(or ``killed by SIGKILL, ...``, ``timed out after 5 s, ...``, ``cancelled, ...``). A non-zero
exit, a timeout or a command that cannot be started fails the tool call, and the execution
then fails with ``tool_error`` without running the commands after it (like ``set -e``). It
completes with ``{"exit_codes": [...], "commands": n}``.

Every command runs in a session (and process group) of its own, and that whole group is
ended when the tool call ends: with SIGTERM, then SIGKILL after ``KILL_AFTER_SECONDS``, when
it times out, when ``context.cancelled`` is set (the agent then raises
``asyncio.CancelledError``) or when the agent's task is cancelled; with SIGKILL when bash has
exited but left something running in the background. No command outlives its tool call.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import enum
import math
import os
import signal
from dataclasses import dataclass
from typing import Any

from domain.execution.values import FailureReason
from workers.agent import AgentContext, AgentFailed, ExecutionInfo, ToolCall, ToolFailed

KILL_AFTER_SECONDS = 2.0
# In Python 3.11 Process.wait() returns only once bash's output is closed too, which a
# background job can hold open long after bash exited; so the exit itself is also polled.
EXIT_POLL_SECONDS = 0.05
# How long to keep reading once the process group is gone: only something that left the
# group (setsid) can still hold the pipe open, and its output is not this command's.
DRAIN_SECONDS = 1.0
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class ShellPlan:
    commands: list[str]
    cwd: str | None = None
    env: dict[str, str] | None = None
    timeout_seconds: float | None = None

    @classmethod
    def from_execution(cls, execution: ExecutionInfo) -> ShellPlan:
        parameters = execution.parameters
        commands = parameters.get("commands")
        if commands is None:
            if not execution.prompt.strip():
                raise _invalid("shell needs parameters.commands or a prompt to run as a script")
            commands = [execution.prompt]
        if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
            raise _invalid("parameters.commands must be a list of strings")
        cwd = parameters.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise _invalid("parameters.cwd must be a string")
        return cls(commands, cwd, _env(parameters.get("env")), _timeout(parameters))

    def argv(self, command: str) -> list[str]:
        """bash running ``command`` in the worker's own environment (inherited, as a shell
        would) plus ``env``, which the ``env`` utility adds: only infra/settings.py reads
        this process's environment."""
        added = [f"{name}={value}" for name, value in (self.env or {}).items()]
        return ["env", "--", *added, "bash", "-c", command] if added else ["bash", "-c", command]


def _env(env: Any) -> dict[str, str] | None:
    if env is None:
        return None
    if not isinstance(env, dict) or not all(
        isinstance(name, str) and name and "=" not in name and isinstance(value, str)
        for name, value in env.items()
    ):
        raise _invalid("parameters.env must map variable names (without '=') to strings")
    return env


def _timeout(parameters: dict[str, Any]) -> float | None:
    timeout = parameters.get("timeout_seconds")
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise _invalid("parameters.timeout_seconds must be a number")
    if not (math.isfinite(timeout) and timeout > 0):
        raise _invalid("parameters.timeout_seconds must be more than 0")
    return float(timeout)


def _invalid(problem: str) -> AgentFailed:
    return AgentFailed(problem, FailureReason.AGENT_ERROR)


async def shell(context: AgentContext) -> dict[str, Any]:
    plan = ShellPlan.from_execution(context.execution)
    exit_codes: list[int] = []
    for number, command in enumerate(plan.commands, start=1):
        if context.cancelled.is_set():
            raise asyncio.CancelledError(f"cancelled before command {number}")
        try:
            async with context.tool("bash", {"command": command}) as call:
                exit_codes.append(await run_command(command, plan, call, context.cancelled))
        except ToolFailed as failure:
            raise AgentFailed(
                f"command {number} of {len(plan.commands)} ({_headline(command)}) failed: "
                f"{failure}",
                FailureReason.TOOL_ERROR,
            ) from failure
    return {"exit_codes": exit_codes, "commands": len(plan.commands)}


class _Ending(enum.Enum):
    EXITED = enum.auto()
    CANCELLED = enum.auto()
    TIMED_OUT = enum.auto()
    OUTPUT_FAILED = enum.auto()


async def run_command(
    command: str, plan: ShellPlan, call: ToolCall, cancelled: asyncio.Event
) -> int:
    """Run one command inside its tool call; return its exit code, or raise ToolFailed."""
    process = await _start(command, plan, call)
    if process.stdout is None:  # started with stdout=PIPE, so never; narrows the type
        raise ToolFailed("the command's output could not be read")
    transcript = _Transcript(call)
    pump = asyncio.create_task(transcript.pump(process.stdout))
    try:
        ending = await _wait_for_ending(process, pump, cancelled, plan.timeout_seconds)
    finally:
        exit_code = await _end_process_group(process)
        await _drain(pump)
    if not pump.cancelled():
        pump.result()  # when the output could not be recorded, that is the call's failure
    if ending is _Ending.CANCELLED:
        call.summary = f"cancelled, {transcript.describe()}"
        raise asyncio.CancelledError("cancelled while a command ran")
    if ending is _Ending.TIMED_OUT:
        call.summary = f"timed out after {plan.timeout_seconds:g} s, {transcript.describe()}"
        raise ToolFailed(f"timed out after {plan.timeout_seconds:g} s")
    call.summary = f"{_describe_exit(exit_code)}, {transcript.describe()}"
    if exit_code != 0:
        raise ToolFailed(_describe_exit(exit_code))
    return exit_code


def _describe_exit(exit_code: int) -> str:
    if exit_code < 0:  # asyncio's way of saying a signal ended bash
        return f"killed by {signal.Signals(-exit_code).name}"
    return f"exit {exit_code}"


async def _start(command: str, plan: ShellPlan, call: ToolCall) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *plan.argv(command),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=plan.cwd,
            start_new_session=True,
        )
    except (OSError, ValueError) as error:  # no such cwd, no bash, a NUL in the command
        call.summary = "could not start"
        raise ToolFailed(f"could not start bash: {error}") from error


async def _wait_for_ending(
    process: asyncio.subprocess.Process,
    pump: asyncio.Task[None],
    cancelled: asyncio.Event,
    timeout: float | None,
) -> _Ending:
    exited = asyncio.ensure_future(_bash_exited(process))
    cancel_requested = asyncio.ensure_future(cancelled.wait())
    watched: set[asyncio.Future[Any]] = {exited, cancel_requested, pump}
    try:
        async with asyncio.timeout(timeout):
            while True:
                done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                if exited in done:
                    return _Ending.EXITED
                if cancel_requested in done:
                    return _Ending.CANCELLED
                if pump.exception() is not None:
                    return _Ending.OUTPUT_FAILED
                watched.discard(pump)  # bash closed its output but still runs
    except TimeoutError:
        return _Ending.TIMED_OUT
    finally:
        exited.cancel()
        cancel_requested.cancel()


async def _end_process_group(process: asyncio.subprocess.Process) -> int:
    """SIGTERM, then SIGKILL after a grace period, to the command's whole process group;
    returns bash's exit code.

    The final SIGKILL is sent even when bash has exited (it kills what it left in the
    background) and even when this task is cancelled again while waiting.
    """
    try:
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_bash_exited(process), KILL_AFTER_SECONDS)
    finally:
        _signal_group(process.pid, signal.SIGKILL)
    return await _bash_exited(process)


async def _bash_exited(process: asyncio.subprocess.Process) -> int:
    waiting = asyncio.ensure_future(process.wait())
    try:
        while process.returncode is None:
            await asyncio.wait({waiting}, timeout=EXIT_POLL_SECONDS)
        return process.returncode
    finally:
        waiting.cancel()


def _signal_group(group_id: int, signal_number: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group_id, signal_number)


async def _drain(pump: asyncio.Task[None]) -> None:
    _, still_reading = await asyncio.wait({pump}, timeout=DRAIN_SECONDS)
    for task in still_reading:
        task.cancel()


class _Transcript:
    """Streams a command's output to its tool call as it arrives, counting lines."""

    def __init__(self, call: ToolCall) -> None:
        self._call = call
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._newlines = 0
        self._open_line = False

    async def pump(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(CHUNK_BYTES):
            await self._emit(self._decoder.decode(chunk))
        await self._emit(self._decoder.decode(b"", final=True))

    async def _emit(self, text: str) -> None:
        if text:
            self._newlines += text.count("\n")
            self._open_line = not text.endswith("\n")
            await self._call.output(text)

    def describe(self) -> str:
        lines = self._newlines + self._open_line
        return "1 line" if lines == 1 else f"{lines} lines"


def _headline(command: str) -> str:
    first_line = command.strip().splitlines()[0] if command.strip() else command
    return first_line if len(first_line) <= 60 else first_line[:57] + "..."
