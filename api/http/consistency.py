"""Read-your-writes: a query right after a command sees the state the command produced.

Commands answer with the state they stored (and its log position). The read models follow
the log a few milliseconds behind, so this process remembers, per tenant, the last position
it wrote, and a query waits (briefly, bounded) until the board view has applied it. Another
API process behind a load balancer does not know this process's writes: its queries show
what the views have applied (documented in docs/decisions.md).
"""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Request
from litestar.datastructures import State

from infra.bootstrap import Container
from infra.keys import Principal

WAIT_SECONDS = 2.0


def note_written(request: Request[Principal, Any, State], position: int | None) -> None:
    """Remember that this tenant's data now includes ``position``."""
    if position is None:
        return
    written: dict[str, int] = request.app.state.setdefault("written", {})
    tenant = request.user.tenant
    if position > written.get(tenant, 0):
        written[tenant] = position


async def caught_up(request: Request[Principal, Any, State], *views: str) -> None:
    """Wait until the views (default: the board) have applied everything this process
    wrote for the caller's tenant (at most ``WAIT_SECONDS`` each; after that, answer with
    what the views have)."""
    container: Container = request.app.state.container
    wanted = request.app.state.get("written", {}).get(request.user.tenant, 0)
    if wanted == 0:
        return
    for view in views or ("board",):
        if container.views.position(view) < wanted:
            await anyio.to_thread.run_sync(container.views.wait_for, view, wanted, WAIT_SECONDS)
