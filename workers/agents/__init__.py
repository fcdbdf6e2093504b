"""The built-in agents, by the ``agent_id`` an execution names.

    agent = resolve_agent(execution.agent_id)
    result = await agent(context)

An id this worker does not know fails with ``UnknownAgent``, itself an ``AgentFailed``
(reason ``missing_prerequisite``), so a worker that runs ``resolve_agent`` inside its usual
``except AgentFailed`` fails the execution with a message instead of crashing.
"""

from __future__ import annotations

from domain.execution.values import FailureReason
from workers.agent import Agent, AgentFailed
from workers.agents.script import script
from workers.agents.shell import shell

BUILTIN_AGENTS: dict[str, Agent] = {"shell": shell, "script": script}


class UnknownAgent(AgentFailed):
    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        known = ", ".join(sorted(BUILTIN_AGENTS))
        super().__init__(
            f"no agent named {agent_id!r} on this worker (known: {known})",
            FailureReason.MISSING_PREREQUISITE,
        )


def resolve_agent(agent_id: str) -> Agent:
    try:
        return BUILTIN_AGENTS[agent_id]
    except KeyError:
        raise UnknownAgent(agent_id) from None


__all__ = ["BUILTIN_AGENTS", "UnknownAgent", "resolve_agent"]
