"""The built-in agents, driven through an in-memory context that records what they did.

``script`` is checked step kind by step kind; ``shell`` runs real commands in bash, so its
tests also look at the processes it leaves behind (none).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import psutil
import pytest

from domain.execution.values import FailureReason, InputKind, ToolOutcome
from tests.eventually import eventually, eventually_async
from tests.unit.fake_context import Artifact, Question, RecordingContext
from workers.agent import AgentContext, AgentFailed
from workers.agents import BUILTIN_AGENTS, UnknownAgent, resolve_agent
from workers.agents.script import script
from workers.agents.shell import shell

# What asyncio.run and create_task accept; workers.agent.Agent promises only an Awaitable.
Agent = Callable[[AgentContext], Coroutine[Any, Any, Any]]


def run(agent: Agent, context: RecordingContext) -> Any:
    return asyncio.run(agent(context))


def failure_of(agent: Agent, context: RecordingContext) -> AgentFailed:
    with pytest.raises(AgentFailed) as failure:
        run(agent, context)
    return failure.value


def seconds_until_cancelled(
    agent: Agent,
    context: RecordingContext,
    cancel: Callable[[asyncio.Task[Any]], None],
    while_running: Callable[[], Awaitable[None]] | None = None,
) -> float:
    """Start the agent, wait for ``while_running()`` (without it: give the agent 0.1 s),
    then ``cancel(task)``; return how long the agent took to end after that."""

    async def scenario() -> float:
        task = asyncio.create_task(agent(context))
        if while_running:
            await asyncio.wait_for(while_running(), 2)
        else:  # nothing to see from outside: time for the agent to reach its step
            await asyncio.sleep(0.1)
        cancelled_at = time.monotonic()
        cancel(task)
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - cancelled_at

    return asyncio.run(scenario())


def set_cancelled(context: RecordingContext) -> Callable[[asyncio.Task[Any]], None]:
    return lambda _task: context.cancelled.set()


def cancel_task(task: asyncio.Task[Any]) -> None:
    task.cancel()


# --- the registry ---------------------------------------------------------------------------


def test_the_builtin_agents_are_found_by_id() -> None:
    assert set(BUILTIN_AGENTS) == {"shell", "script"}
    assert resolve_agent("shell") is shell
    assert resolve_agent("script") is script


def test_an_unknown_agent_fails_with_a_named_error() -> None:
    with pytest.raises(UnknownAgent) as unknown:
        resolve_agent("reviewer")
    assert "'reviewer'" in str(unknown.value)
    assert unknown.value.reason is FailureReason.MISSING_PREREQUISITE
    assert isinstance(unknown.value, AgentFailed)


# --- script ---------------------------------------------------------------------------------


def script_context(*steps: Any, answers: tuple[Any, ...] = ()) -> RecordingContext:
    return RecordingContext(parameters={"steps": list(steps)}, answers=answers)


def test_script_performs_every_kind_of_step_in_order() -> None:
    context = script_context(
        {"say": "Looking at the repository"},
        {"tool": "read_file", "args": {"path": "README.md"}, "seconds": 0.05},
        {"ask": "Which branch?"},
        {"ask": "Merge it?", "kind": "approval", "schema": {"type": "boolean"}},
        {"sleep": 0.05},
        {"artifact": {"name": "notes.txt", "text": "naïve résumé"}},
        {"artifact": {"name": "report.md", "text": "# Done", "media_type": "text/markdown"}},
        {"say": "Finished"},
        answers=("main", True),
    )

    result = run(script, context)

    assert result == {"answers": ["main", True]}
    assert context.said == ["Looking at the repository", "Finished"]
    [call] = context.tool_calls
    assert (call.name, call.arguments, call.outcome) == (
        "read_file",
        {"path": "README.md"},
        ToolOutcome.SUCCESS,
    )
    assert call.ended_at is not None
    assert call.ended_at - call.started_at >= 0.05
    assert context.questions == [
        Question("Which branch?", InputKind.CLARIFICATION, None),
        Question("Merge it?", InputKind.APPROVAL, {"type": "boolean"}),
    ]
    assert context.artifacts == [
        Artifact("notes.txt", "naïve résumé".encode(), "text/plain"),
        Artifact("report.md", b"# Done", "text/markdown"),
    ]


def test_script_without_steps_of_its_own_completes_with_no_answers() -> None:
    assert run(script, script_context()) == {"answers": []}


def test_a_failing_tool_fails_the_execution_with_tool_error() -> None:
    context = script_context(
        {"tool": "deploy", "args": {"env": "prod"}, "fails": True}, {"say": "?"}
    )

    failure = failure_of(script, context)

    assert failure.reason is FailureReason.TOOL_ERROR
    assert "deploy" in failure.error
    [call] = context.tool_calls
    assert call.outcome == ToolOutcome.FAILED
    assert context.said == []


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        ({"fail": "the build is red"}, FailureReason.AGENT_ERROR),
        (
            {"fail": "the build is red", "reason": "policy_violation"},
            FailureReason.POLICY_VIOLATION,
        ),
    ],
)
def test_a_fail_step_fails_the_execution_with_its_text_and_reason(
    step: dict[str, Any], reason: FailureReason
) -> None:
    context = script_context({"say": "checking"}, step, {"say": "never said"})

    failure = failure_of(script, context)

    assert (failure.error, failure.reason) == ("the build is red", reason)
    assert context.said == ["checking"]


@pytest.mark.parametrize(
    ("step", "complaint"),
    [
        ("say hi", "a step must be an object, got a string"),
        ({"shout": "hi"}, "exactly one of tool, say, ask, sleep, artifact, fail; none"),
        ({"say": "hi", "sleep": 1}, "'say' and 'sleep'"),
        ({"say": "hi", "loud": True}, "unexpected key 'loud'"),
        ({"say": 42}, "say must be a string, got 42"),
        ({"say": None}, "say must be a string, got null"),
        ({"tool": ""}, "tool must be a non-empty string"),
        ({"tool": "grep", "args": ["-r"]}, "args must be an object, got an array"),
        ({"tool": "grep", "seconds": "2"}, 'seconds must be a number of seconds, got "2"'),
        ({"tool": "grep", "seconds": -1}, "seconds must be a finite number of seconds, 0 or more"),
        ({"tool": "grep", "fails": "yes"}, 'fails must be true or false, got "yes"'),
        ({"sleep": True}, "sleep must be a number of seconds, got true"),
        ({"ask": "Go?", "kind": "vote"}, 'kind must be one of clarification, approval, got "vote"'),
        ({"ask": "Go?", "schema": "boolean"}, "schema must be an object"),
        ({"artifact": "notes.txt"}, "artifact must be an object"),
        ({"artifact": {"text": "hi"}}, "artifact.name is required"),
        ({"artifact": {"name": "a", "text": b"hi"}}, "artifact.text must be a string"),
        ({"artifact": {"name": "a", "text": "", "mime": "x"}}, "unexpected key 'artifact.mime'"),
        ({"fail": "no", "reason": "bad luck"}, "reason must be one of tool_error"),
        ({"fail": "no", "reason": ["tool_error"]}, "reason must be one of"),
    ],
)
def test_a_malformed_step_fails_the_execution_saying_which_and_why(
    step: Any, complaint: str
) -> None:
    context = script_context({"say": "first"}, step)

    failure = failure_of(script, context)

    assert failure.reason is FailureReason.AGENT_ERROR
    assert failure.error.startswith("steps[1]: ")
    assert complaint in failure.error
    assert context.said == []  # checked before the first step ran


@pytest.mark.parametrize(
    ("parameters", "complaint"),
    [({}, "it is missing"), ({"steps": {"say": "hi"}}, "got an object")],
)
def test_script_needs_a_list_of_steps(parameters: dict[str, Any], complaint: str) -> None:
    failure = failure_of(script, RecordingContext(parameters=parameters))

    assert failure.reason is FailureReason.AGENT_ERROR
    assert "parameters.steps" in failure.error
    assert complaint in failure.error


def test_cancel_during_a_sleep_ends_the_script_at_once() -> None:
    context = script_context({"say": "napping"}, {"sleep": 30}, {"say": "awake"})

    async def napping() -> None:
        await eventually_async(lambda: context.said, what="the script to say it naps")

    took = seconds_until_cancelled(script, context, set_cancelled(context), napping)

    assert took < 1
    assert context.said == ["napping"]


def test_cancel_during_a_tool_call_ends_it_as_failed() -> None:
    context = script_context({"tool": "build", "seconds": 30}, {"say": "built"})

    async def building() -> None:
        await eventually_async(lambda: context.tool_calls, what="the build tool call")

    took = seconds_until_cancelled(script, context, set_cancelled(context), building)

    assert took < 1
    [call] = context.tool_calls
    assert call.outcome == ToolOutcome.FAILED
    assert context.said == []


def test_cancelling_the_task_ends_the_script_too() -> None:
    context = script_context({"sleep": 30}, {"say": "awake"})

    assert seconds_until_cancelled(script, context, cancel_task) < 1
    assert context.said == []


def test_a_script_cancelled_before_it_starts_does_nothing() -> None:
    context = script_context({"say": "hello"})
    context.cancelled.set()

    with pytest.raises(asyncio.CancelledError):
        run(script, context)
    assert context.said == []


# --- shell ----------------------------------------------------------------------------------


def shell_context(prompt: str = "", **parameters: Any) -> RecordingContext:
    return RecordingContext(agent_id="shell", prompt=prompt, parameters=parameters)


def test_shell_runs_each_command_as_a_bash_tool_call() -> None:
    context = shell_context(commands=["echo hello", "printf 'a\\nb\\nc\\n'", "printf 'no newline'"])

    result = run(shell, context)

    assert result == {"exit_codes": [0, 0, 0], "commands": 3}
    assert [(call.name, call.arguments) for call in context.tool_calls] == [
        ("bash", {"command": "echo hello"}),
        ("bash", {"command": "printf 'a\\nb\\nc\\n'"}),
        ("bash", {"command": "printf 'no newline'"}),
    ]
    assert [call.output_text for call in context.tool_calls] == [
        "hello\n",
        "a\nb\nc\n",
        "no newline",
    ]
    assert [call.summary for call in context.tool_calls] == [
        "exit 0, 1 line",
        "exit 0, 3 lines",
        "exit 0, 1 line",
    ]
    assert all(call.outcome == ToolOutcome.SUCCESS for call in context.tool_calls)


def test_shell_merges_stderr_into_the_output() -> None:
    context = shell_context(commands=["echo out; echo err >&2"])

    run(shell, context)

    assert context.tool_calls[0].output_text == "out\nerr\n"


def test_a_non_zero_exit_fails_the_tool_call_and_stops_the_shell() -> None:
    context = shell_context(commands=["echo before", "echo about to fail; exit 3", "echo after"])

    failure = failure_of(shell, context)

    assert failure.reason is FailureReason.TOOL_ERROR
    assert "command 2 of 3" in failure.error
    assert "exit 3" in failure.error
    first, second = context.tool_calls
    assert first.outcome == ToolOutcome.SUCCESS
    assert (second.outcome, second.summary) == (ToolOutcome.FAILED, "exit 3, 1 line")
    assert second.output_text == "about to fail\n"


def test_a_command_killed_by_a_signal_says_so() -> None:
    context = shell_context(commands=["kill -KILL $$"])

    failure = failure_of(shell, context)

    assert failure.reason is FailureReason.TOOL_ERROR
    assert context.tool_calls[0].summary == "killed by SIGKILL, 0 lines"


def test_output_streams_while_the_command_runs() -> None:
    context = shell_context(commands=["for i in 1 2 3; do echo $i; sleep 0.2; done"])

    run(shell, context)

    [call] = context.tool_calls
    assert call.output_text == "1\n2\n3\n"
    assert len(call.chunks) >= 2
    assert call.ended_at is not None
    assert call.chunk_times[0] < call.ended_at - 0.3  # the first line came before the end


def test_the_prompt_runs_as_one_script_when_there_are_no_commands() -> None:
    script_text = "greeting=hi\necho $greeting\necho there"
    context = shell_context(prompt=script_text)

    assert run(shell, context) == {"exit_codes": [0], "commands": 1}
    [call] = context.tool_calls
    assert call.arguments == {"command": script_text}
    assert call.output_text == "hi\nthere\n"


def test_commands_run_in_cwd_with_env_added_to_the_environment(tmp_path: Any) -> None:
    context = shell_context(
        commands=["pwd", 'echo "$GREETING"', 'test -n "$PATH" && echo path kept'],
        cwd=str(tmp_path),
        env={"GREETING": "hello from env"},
    )

    run(shell, context)

    assert [call.output_text for call in context.tool_calls] == [
        f"{tmp_path.resolve()}\n",
        "hello from env\n",
        "path kept\n",
    ]


def test_a_command_that_cannot_start_fails_its_tool_call(tmp_path: Any) -> None:
    context = shell_context(commands=["pwd"], cwd=str(tmp_path / "missing"))

    failure = failure_of(shell, context)

    assert failure.reason is FailureReason.TOOL_ERROR
    assert "could not start" in failure.error
    assert context.tool_calls[0].outcome == ToolOutcome.FAILED


def test_a_command_that_runs_too_long_times_out() -> None:
    context = shell_context(commands=["echo started; sleep 5", "echo never"], timeout_seconds=0.3)
    started = time.monotonic()

    failure = failure_of(shell, context)

    assert time.monotonic() - started < 2
    assert failure.reason is FailureReason.TOOL_ERROR
    assert "timed out" in failure.error
    [call] = context.tool_calls
    assert call.outcome == ToolOutcome.FAILED
    assert call.summary.startswith("timed out after 0.3 s")
    assert call.output_text == "started\n"


def children_of_this_test() -> list[psutil.Process]:
    children = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.name() in {"sleep", "bash"}:
                children.append(child)
    return children


def is_gone(process: psutil.Process) -> bool:
    try:
        return bool(process.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def assert_gone_soon(processes: list[psutil.Process]) -> None:
    # gone, not left to run its 30 s: how fast the agent stops is `took` (< 1 s); reaping
    # the killed processes on a loaded machine is the kernel's time, not the agent's
    eventually(lambda: [process for process in processes if not is_gone(process)],
               lambda alive: not alive, timeout=5, interval=0.02,
               what="the command's processes to be gone")  # fmt: skip


@pytest.mark.parametrize("cancel", ["event", "task"])
def test_cancelling_kills_the_running_command(cancel: str) -> None:
    context = shell_context(commands=["sleep 30; echo never", "echo never"])
    running: dict[str, psutil.Process] = {}

    async def find_the_sleep() -> None:
        def seen() -> dict[str, psutil.Process]:
            running.update((child.name(), child) for child in children_of_this_test())
            return running

        await eventually_async(seen, lambda found: "sleep" in found, interval=0.02,
                               what="the command's sleep process")  # fmt: skip

    how = set_cancelled(context) if cancel == "event" else cancel_task
    took = seconds_until_cancelled(shell, context, how, while_running=find_the_sleep)

    assert took < 1
    assert set(running) == {"bash", "sleep"}
    assert_gone_soon(list(running.values()))
    [call] = context.tool_calls
    assert call.outcome == ToolOutcome.FAILED


def test_nothing_a_command_leaves_in_the_background_outlives_it() -> None:
    context = shell_context(commands=["sleep 30 & echo $!"])
    started = time.monotonic()

    run(shell, context)

    assert time.monotonic() - started < 2
    background = psutil.Process(int(context.tool_calls[0].output_text))
    assert_gone_soon([background])


def test_a_shell_cancelled_before_it_starts_runs_nothing() -> None:
    context = shell_context(commands=["echo hi"])
    context.cancelled.set()

    with pytest.raises(asyncio.CancelledError):
        run(shell, context)
    assert context.tool_calls == []


@pytest.mark.parametrize(
    ("parameters", "complaint"),
    [
        ({"commands": "echo hi"}, "commands must be a list of strings"),
        ({"commands": ["echo hi", 3]}, "commands must be a list of strings"),
        ({"commands": ["pwd"], "cwd": 5}, "cwd must be a string"),
        ({"commands": ["pwd"], "env": {"A": 1}}, "env must map"),
        ({"commands": ["pwd"], "env": {"A=B": "x"}}, "env must map"),
        ({"commands": ["pwd"], "timeout_seconds": "5"}, "timeout_seconds must be a number"),
        ({"commands": ["pwd"], "timeout_seconds": True}, "timeout_seconds must be a number"),
        ({"commands": ["pwd"], "timeout_seconds": 0}, "timeout_seconds must be more than 0"),
        ({}, "needs parameters.commands or a prompt"),
    ],
)
def test_malformed_shell_parameters_fail_before_anything_runs(
    parameters: dict[str, Any], complaint: str
) -> None:
    context = shell_context(prompt="  ", **parameters)

    failure = failure_of(shell, context)

    assert failure.reason is FailureReason.AGENT_ERROR
    assert complaint in failure.error
    assert context.tool_calls == []


def test_an_empty_list_of_commands_runs_nothing() -> None:
    assert run(shell, shell_context(prompt="echo ignored", commands=[])) == {
        "exit_codes": [],
        "commands": 0,
    }
