"""agentboard's slim Python client: the HTTP API (``Client``, ``AsyncClient``) and the
protocol agents are written against (``agentboard_client.agent``).

It depends on httpx, httpx-sse and pydantic only. Importing the package costs nothing:
each name is imported when first used, so a command line built on it starts fast.

    from agentboard_client import Client

    with Client("http://127.0.0.1:8000", api_key="ab_...") as client:
        execution = client.executions.create(agent_id="shell", prompt="echo hi")
        done = client.executions.wait(execution.id)
        print(done.status, done.result)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentboard_client.client import AsyncClient, Client
    from agentboard_client.errors import ApiError, NotFound, Unreachable
    from agentboard_client.models import Event, Execution, ExecutionPage

_WHERE = {
    "Client": "agentboard_client.client",
    "AsyncClient": "agentboard_client.client",
    "ApiError": "agentboard_client.errors",
    "NotFound": "agentboard_client.errors",
    "Unreachable": "agentboard_client.errors",
    "Event": "agentboard_client.models",
    "Execution": "agentboard_client.models",
    "ExecutionPage": "agentboard_client.models",
}


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'agentboard_client' has no attribute {name!r}") from None
    return getattr(import_module(module), name)


__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "Event",
    "Execution",
    "ExecutionPage",
    "NotFound",
    "Unreachable",
]
