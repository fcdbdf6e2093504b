"""The read side over HTTP: the list, the board (live or as of a past moment), durations.

Everything here comes from the projections, scoped to the caller's tenant.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import anyio
from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, QueryParameter

from api.http.consistency import caught_up
from infra.bootstrap import Container
from infra.keys import Principal
from projections.engine.errors import InvalidQuery
from projections.views.card import Card
from projections.views.filters import ExecutionFilter, parse_age
from projections.views.read_models import ReadModels

MAX_POSITION = 2**63 - 1  # log positions are PostgreSQL bigints
NO_NUL = r"^[^\x00]*$"  # PostgreSQL compares no text with a NUL character in it
Text = Annotated[str | None, QueryParameter(required=False, max_length=256, pattern=NO_NUL)]
Statuses = Annotated[
    list[str] | None,
    QueryParameter(
        required=False, description="one or more of the seven statuses (repeat or comma)"
    ),
]


def read_models(request: Request[Principal, Any, State]) -> ReadModels:
    container: Container = request.app.state.container
    return container.read_models


_CARD_FIELDS = tuple(field.name for field in fields(Card))


def card_json(card: Card) -> dict[str, Any]:
    """A card as JSON-ready fields (shallow: ``asdict`` deep-copies every nested value and
    cost a 147-card board about as much as its query)."""
    return {name: getattr(card, name) for name in _CARD_FIELDS}


def execution_filter(
    status: Statuses = None, agent: Text = None, team: Text = None,
    type_: Annotated[str | None, QueryParameter(name="type", required=False)] = None,
    queue: Text = None,
    label: Annotated[str | None, QueryParameter(
        required=False, max_length=256, description="key=value, or key (has the label)")] = None,
    created_by: Annotated[str | None, QueryParameter(
        required=False, max_length=256, description="kind:id, or id")] = None,
    overdue: FromQuery[bool] = False,
    older_than: Annotated[str | None, QueryParameter(
        required=False, max_length=32, description="an age: 30m, 12h, 7d, 2w")] = None,
    q: Annotated[str | None, QueryParameter(
        required=False, max_length=256, description="text in the prompt")] = None,
    pipeline: Annotated[UUID | None, QueryParameter(
        required=False, description="a pipeline's steps (its id)")] = None,
) -> ExecutionFilter:  # fmt: skip
    """The list filters from the query string (a dependency shared by every filtered read)."""
    if pipeline is not None:  # its steps are the executions it created (DESIGN §12)
        if created_by is not None:
            raise InvalidQuery("pipeline and created_by cannot be given together")
        created_by = f"pipeline:{pipeline}"
    for name, text in {"label": label, "created_by": created_by, "q": q}.items():
        if text and "\x00" in text:  # as NO_NUL says for the others
            raise InvalidQuery(f"{name} must not contain NUL characters")
    statuses = tuple(s.strip() for value in status or [] for s in value.split(",") if s.strip())
    return ExecutionFilter(
        status=statuses, agent=agent, team=team, type=type_, queue=queue, label=label,
        created_by=created_by, overdue=overdue,
        older_than=parse_age(older_than) if older_than else None, q=q or None,
    )  # fmt: skip


FILTERS = {"where": Provide(execution_filter, sync_to_thread=False)}


class QueryController(Controller):
    tags = ["queries"]

    @get("/v1/board", operation_id="getBoard", dependencies=FILTERS)
    async def board(
        self, request: Request[Principal, Any, State], where: NamedDependency[ExecutionFilter],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 20,
        as_of: Annotated[str | None, QueryParameter(
            required=False, description="a log position, or a time with its zone")] = None,
    ) -> dict[str, Any]:  # fmt: skip
        """The board: a column per status with its count and its first cards; `as_of` shows it
        as it was at a past log position or time."""
        models, tenant = read_models(request), request.user.tenant
        if as_of is None:
            await caught_up(request)
            board = await anyio.to_thread.run_sync(
                lambda: models.board.board(tenant, where, limit=limit)
            )
        else:
            position, at = _as_of(as_of)
            board = await anyio.to_thread.run_sync(
                lambda: models.time_travel.board(
                    tenant, position=position, at=at, where=where, limit=limit
                )
            )
        return {
            "columns": [
                {
                    "status": column.status,
                    "count": column.count,
                    "items": [card_json(card) for card in column.items],
                    "next_cursor": column.next_cursor,
                }
                for column in board.columns
            ],
            "position": board.position,
            "as_of": board.as_of,
        }

    @get("/v1/stats/status-durations", operation_id="getStatusDurations")
    async def status_durations(
        self, request: Request[Principal, Any, State],
        group_by: Annotated[
            str, QueryParameter(description="tenant, agent, team or queue")
        ] = "tenant",
    ) -> list[dict[str, Any]]:  # fmt: skip
        """p50/p95/p99 seconds spent in each status, grouped."""
        models = read_models(request)
        rows = await anyio.to_thread.run_sync(
            lambda: models.durations.status_durations(request.user.tenant, group_by)
        )
        return [asdict(row) for row in rows]

    @get("/v1/stats/usage", operation_id="getUsage")
    async def usage(
        self, request: Request[Principal, Any, State],
        group_by: Annotated[
            str, QueryParameter(description="agent, model, team or queue")
        ] = "agent",
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Tokens and cost the agents reported (`UsageRecorded`), grouped: per group its
        executions, the sums, and p50/p95 per execution of tokens (input + output) and of
        cost (null where no report named a cost)."""
        models = read_models(request)
        await caught_up(request, "usage")
        rows = await anyio.to_thread.run_sync(
            lambda: models.usage.usage(request.user.tenant, group_by)
        )
        return [asdict(row) for row in rows]


def _as_of(text: str) -> tuple[int | None, datetime | None]:
    if text.isascii() and text.isdigit():
        if len(text) > len(str(MAX_POSITION)) or int(text) > MAX_POSITION:
            raise InvalidQuery(f"as_of is past any log position (got {text[:30]!r})")
        return int(text), None
    try:
        return None, datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidQuery(
            f"as_of is a log position or an ISO time such as 2026-11-22T10:00:00Z (got {text!r})"
        ) from None
