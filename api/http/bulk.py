"""POST /v1/executions/bulk: cancel, complete or retry every execution a filter matches.

Matching reads the board view: the list's filters, paged, or the ids it is given.
Acting sends one domain command per execution through the group-commit writer, a chunk at
a time, so a thousand actions share one or a few transactions; the state machine of each
execution decides, and a refusal of one does not stop the others.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import anyio
from litestar import Request, post
from litestar.datastructures import State
from litestar.params import JSONBody
from litestar.plugins.problem_details import ProblemDetailsException
from pydantic import BaseModel, Field

from api.http.auth import operators
from api.http.consistency import note_written
from api.http.executions import IdempotencyKey, actor_of
from api.http.queries import read_models
from api.http.schemas import Strict
from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.errors import DomainError, ExecutionNotFound
from domain.execution.state import CommandResult
from domain.execution.values import LEASED, Actor, Status
from infra.bootstrap import Container
from infra.keys import Principal
from projections.views.filters import ExecutionFilter, parse_age
from projections.views.read_models import ReadModels

MAX_IDS = 500
MAX_MATCHED = 10_000
PAGE = 500
EXCERPT = 120

Action = Literal["cancel", "complete", "retry"]
StatusName = Literal[
    "pending", "running", "requires_input", "blocked", "completed", "failed", "cancelled"
]
Outcome = Literal["would_change", "changed", "refused"]

# The statuses in which each action's state machine accepts it: only to predict a dry run.
# The action itself asks each execution, which decides (and may have moved on meanwhile).
ACCEPTS: dict[str, frozenset[str]] = {
    "cancel": frozenset({Status.PENDING, *LEASED}),
    "complete": frozenset(LEASED),
    "retry": frozenset({Status.FAILED}),
}


class BulkFilter(Strict):
    status: list[StatusName] | None = Field(default=None, max_length=7)
    agent: str | None = Field(default=None, max_length=256)
    team: str | None = Field(default=None, max_length=256)
    type: Literal["agent", "team"] | None = None
    queue: str | None = Field(default=None, max_length=256)
    label: str | None = Field(default=None, max_length=256, description="key=value, or key")
    created_by: str | None = Field(default=None, max_length=256, description="kind:id, or id")
    overdue: bool = False
    older_than: str | None = Field(
        default=None, pattern=r"^\d{1,9}[smhdw]$", description="an age: 30m, 12h, 7d, 2w"
    )
    q: str | None = Field(default=None, max_length=256, description="text in the prompt")
    ids: list[UUID] | None = Field(default=None, max_length=MAX_IDS)

    def execution_filter(self) -> ExecutionFilter:
        return ExecutionFilter(
            status=tuple(self.status or ()), agent=self.agent, team=self.team, type=self.type,
            queue=self.queue, label=self.label, created_by=self.created_by,
            overdue=self.overdue, q=self.q or None,
            older_than=parse_age(self.older_than) if self.older_than else None,
        )  # fmt: skip


class BulkRequest(Strict):
    action: Action
    filter: BulkFilter
    dry_run: bool = False
    reason: str = Field(
        default="", max_length=2000, description="recorded as the cancel reason or completion notes"
    )


class BulkItem(BaseModel):
    id: UUID
    prompt: str | None = Field(description="the start of its prompt; null when not found")
    status: str | None = Field(description="after the action (before it on a dry run)")
    outcome: Outcome
    detail: str | None = None


class BulkResult(BaseModel):
    action: Action
    dry_run: bool
    matched: int
    truncated: bool = Field(description=f"more than {MAX_MATCHED:,} matched; only those acted on")
    items: list[BulkItem]


@dataclass(frozen=True, slots=True)
class Matches:
    found: list[Any]  # board cards, or execution states for ids the view has not seen yet
    missing: list[UUID]
    truncated: bool


def excerpt(prompt: str) -> str:
    return prompt if len(prompt) <= EXCERPT else prompt[: EXCERPT - 1] + "…"


def find(
    models: ReadModels, service: ExecutionService, tenant: str, where: ExecutionFilter,
    ids: list[UUID] | None,
) -> Matches:  # fmt: skip
    """The caller's executions that the filter matches, in the list's order."""
    if ids is None:
        return _page_through(models, tenant, where)
    unique = list(dict.fromkeys(ids))
    cards = models.board.cards(unique)  # one query; the tenant is checked below
    found, missing = [], []
    now = datetime.now(UTC)
    for execution_id in unique:
        card = cards.get(execution_id)
        if card is None or card.tenant != tenant:
            card = _stored(service, tenant, execution_id)
        if card is None:
            missing.append(execution_id)
        elif where.is_empty or where.matches(card, now):
            found.append(card)
    return Matches(found, missing, truncated=False)


def _page_through(models: ReadModels, tenant: str, where: ExecutionFilter) -> Matches:
    found: list[Any] = []
    cursor: str | None = None
    while True:
        page = models.board.list(tenant, where, limit=PAGE, cursor=cursor)
        found.extend(page.items)
        cursor = page.next_cursor
        if cursor is None or len(found) >= MAX_MATCHED:
            truncated = len(found) > MAX_MATCHED or cursor is not None
            return Matches(found[:MAX_MATCHED], [], truncated)


def _stored(service: ExecutionService, tenant: str, execution_id: UUID) -> Any:
    """The execution as stored, for one the view has not caught up with yet; None when it
    does not exist in the caller's tenant."""
    try:
        state = service.state(execution_id)
    except ExecutionNotFound:
        return None
    return state if state.tenant == tenant else None


def command_for(data: BulkRequest, execution_id: UUID, actor: Actor, key: str | None) -> c.Command:
    if data.action == "cancel":
        return c.RequestCancel(execution_id, data.reason or "bulk cancel", actor, key)
    if data.action == "complete":
        notes = data.reason or "completed in bulk by an operator"
        return c.ForceComplete(execution_id, actor, completion_notes=notes, idempotency_key=key)
    return c.Retry(execution_id, actor, key)


def predicted(action: str, card: Any) -> BulkItem:
    if card.status in ACCEPTS[action]:
        return BulkItem(id=card.id, prompt=excerpt(card.prompt), status=card.status,
                        outcome="would_change")  # fmt: skip
    return BulkItem(
        id=card.id, prompt=excerpt(card.prompt), status=card.status, outcome="refused",
        detail=f"cannot {action} execution {card.id}: it is {card.status}",
    )  # fmt: skip


def acted(card: Any, outcome: CommandResult | BaseException) -> BulkItem:
    if isinstance(outcome, DomainError):
        return BulkItem(id=card.id, prompt=excerpt(card.prompt), status=card.status,
                        outcome="refused", detail=str(outcome))  # fmt: skip
    if isinstance(outcome, BaseException):
        raise outcome  # not a refusal: the writer or the store failed
    state = outcome.execution
    stopping = state.cancel_requested and state.status in LEASED
    detail = "asked its worker to stop" if stopping else None
    return BulkItem(id=card.id, prompt=excerpt(card.prompt), status=state.status,
                    outcome="changed", detail=detail)  # fmt: skip


def not_found(execution_id: UUID) -> BulkItem:
    return BulkItem(id=execution_id, prompt=None, status=None, outcome="refused",
                    detail=f"execution {execution_id} does not exist")  # fmt: skip


async def act(container: Container, commands: list[c.Command]) -> list[Any]:
    """Every command through the group-commit writer, a writer's batch at a time."""
    chunk = max(1, container.writer.max_batch)
    outcomes: list[Any] = []
    for start in range(0, len(commands), chunk):
        sends = [container.writer.send(command) for command in commands[start : start + chunk]]
        outcomes.extend(await asyncio.gather(*sends, return_exceptions=True))
    return outcomes


@post("/v1/executions/bulk", operation_id="bulkExecutions", guards=[operators], status_code=200,
      tags=["executions"])  # fmt: skip
async def bulk(
    request: Request[Principal, Any, State], data: JSONBody[BulkRequest],
    idempotency_key: IdempotencyKey = None,
) -> BulkResult:  # fmt: skip
    """Cancel, complete or retry every execution the filter matches (`filter.status` or
    `filter.ids` is required); `dry_run` shows what would change and changes nothing."""
    if not data.filter.status and not data.filter.ids:
        raise ProblemDetailsException(
            status_code=422, title="Filter too broad",
            detail="a bulk action needs filter.status or filter.ids: "
            "acting on every execution at once is refused",
        )  # fmt: skip
    container: Container = request.app.state.container
    where, models = data.filter.execution_filter(), read_models(request)
    matches = await anyio.to_thread.run_sync(
        find, models, container.service, request.user.tenant, where, data.filter.ids
    )
    found = matches.found
    if data.dry_run:
        items = [predicted(data.action, card) for card in found]
    else:
        actor = actor_of(request)
        commands = [command_for(data, card.id, actor, idempotency_key) for card in found]
        outcomes = await act(container, commands)
        note_written(request, max((o.position for o in outcomes if isinstance(o, CommandResult)
                                   and o.position is not None), default=None))  # fmt: skip
        items = [acted(card, outcome) for card, outcome in zip(found, outcomes, strict=True)]
    items.extend(not_found(execution_id) for execution_id in matches.missing)
    return BulkResult(action=data.action, dry_run=data.dry_run, matched=len(items),
                      truncated=matches.truncated, items=items)  # fmt: skip
