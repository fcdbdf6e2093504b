"""The agent protocol lives in the slim client (agentboard_client/agent.py), so an agent
package depends on that only; the worker's modules import it from here."""

from agentboard_client.agent import (
    Agent,
    AgentContext,
    AgentFailed,
    ExecutionInfo,
    InputKind,
    ToolCall,
    ToolFailed,
)

__all__ = ["Agent", "AgentContext", "AgentFailed", "ExecutionInfo", "InputKind", "ToolCall",
           "ToolFailed"]  # fmt: skip
