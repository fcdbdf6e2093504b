"""How many copies JetStream keeps of each stream, bucket and object store (DESIGN §10).

``AGENTBOARD_NATS_REPLICAS`` set: that many, on creation and on every existing stream
(up or down). Unset: 3 when the client knows of three or more servers (those it was given
and those the cluster announced), else 1; a default only ever raises an existing stream's
count (a server down while a process starts must not shrink it), and where JetStream
cannot place it (fewer JetStream servers than it looks, or one of them down) the stream is
made with one copy, with a warning, and raised when a later start finds the servers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from nats.aio.client import Client
from nats.js.errors import APIError

from infra.settings import Unconfigured

log = logging.getLogger(__name__)

CLUSTER_REPLICAS = 3
# JetStream's answers when it cannot place the copies asked for: no suitable peers,
# insufficient resources, replicas > 1 on a server that is not clustered.
CANNOT_PLACE = (10005, 10023, 10074)

T = TypeVar("T")


class ReplicasNotPlaced(Unconfigured):
    """JetStream cannot keep as many copies as AGENTBOARD_NATS_REPLICAS asks for."""


@dataclass(frozen=True)
class Replicas:
    count: int = 1
    exact: bool = False
    """Set by the operator (applied up or down), else a default from the cluster's size
    (``Replicas()``: one copy for what is made, what exists kept as it is)."""

    def for_existing(self, current: int) -> int:
        """The count an existing stream of ``current`` copies should have."""
        return self.count if self.exact else max(self.count, current)


def replicas_for(nc: Client, setting: int | None) -> Replicas:
    """The replicas that ``setting`` (``AGENTBOARD_NATS_REPLICAS``) asks for on the cluster
    ``nc`` is connected to."""
    if setting is not None:
        return Replicas(setting, exact=True)
    known = len(nc.servers)  # given and announced (INFO connect_urls) cluster members
    return Replicas(CLUSTER_REPLICAS if known >= CLUSTER_REPLICAS else 1, exact=False)


def cannot_place(error: Exception) -> bool:
    return isinstance(error, APIError) and error.err_code in CANNOT_PLACE


async def placed(
    name: str, replicas: int, exact: bool, make: Callable[[int], Awaitable[T]], fallback: int = 1
) -> T:
    """``make(replicas)``; where JetStream cannot place that many copies, a default falls
    back to ``fallback`` copies (what the stream has, or one for a new one; warning) and a
    setting raises ``ReplicasNotPlaced``."""
    try:
        return await make(replicas)
    except APIError as error:
        if not cannot_place(error) or replicas <= fallback:
            raise
        if exact:
            raise ReplicasNotPlaced(
                f"AGENTBOARD_NATS_REPLICAS={replicas}: JetStream cannot keep {replicas} "
                f"copies of {name} ({error.description})"
            ) from None
        log.warning(
            "JetStream cannot keep %d copies of %s (%s); it keeps %d until a later start "
            "finds the servers (or set AGENTBOARD_NATS_REPLICAS)",
            replicas, name, error.description, fallback,
        )  # fmt: skip
        return await make(fallback)
