"""/v1/webhooks: admins register endpoints that are told when executions enter statuses
(DESIGN §14), list them, see every delivery attempt, delete them, and enable again one
that was disabled for failing. Everything is scoped to the admin's tenant. Bad input is a
422 naming the field."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

import anyio
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.plugins.problem_details import ProblemDetailsException
from pydantic import BaseModel, Field, field_validator

from api.http.auth import admins
from api.http.errors import NotFound
from api.http.schemas import Strict
from infra.bootstrap import Container
from infra.keys import Principal
from infra.webhooks.outbox import EVERY_STATUS, subscription_filter
from infra.webhooks.store import Webhook, WebhookNotFound, WebhookStore
from projections.engine.errors import InvalidQuery
from projections.views.filters import STATUSES

MAX_URL_LENGTH = 2048
WEBHOOK_ID = re.compile(r"wh_[0-9a-f]{16}")
LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}

Status = Literal["pending", "running", "requires_input", "blocked", "completed", "failed",
                 "cancelled"]  # fmt: skip
Text = Annotated[str | None, Field(default=None, min_length=1, max_length=256)]


class Unprocessable(ProblemDetailsException):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(
            status_code=422, title="Invalid webhook", detail=f"{field}: {message}",
            extra=[{"key": field, "message": message, "source": "body"}],
        )  # fmt: skip


class WebhookFilter(Strict):
    """The list's filters (``GET /v1/executions``), matched against the execution as it
    was at the event announced."""

    status: list[Status] | None = None
    agent: Text = None
    team: Text = None
    type: Literal["agent", "team"] | None = None
    queue: Text = None
    label: Text = Field(default=None, description="key=value, or key (has the label)")
    created_by: Text = Field(default=None, description="kind:id, or id")
    overdue: bool | None = None
    older_than: Text = Field(default=None, description="an age: 30m, 12h, 7d, 2w")
    q: Text = Field(default=None, description="text in the prompt")


class WebhookCreate(Strict):
    url: str = Field(max_length=MAX_URL_LENGTH, description="http or https, no credentials")
    events: list[str] = Field(
        min_length=1, max_length=len(STATUSES),
        description='statuses whose entry is announced, or ["*"] for every one',
    )  # fmt: skip
    filter: WebhookFilter = Field(default_factory=WebhookFilter)

    @field_validator("url")
    @classmethod
    def url_is_http(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        if not parts.hostname:
            raise ValueError("must name a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry credentials (user:password@); the signature "
                             "tells the receiver who sent it")  # fmt: skip
        try:
            _ = parts.port
        except ValueError:
            raise ValueError("has a port that is not a number from 0 to 65535") from None
        return url

    @field_validator("events")
    @classmethod
    def known_statuses(cls, events: list[str]) -> list[str]:
        if EVERY_STATUS in events:
            if set(events) != {EVERY_STATUS}:
                raise ValueError('is ["*"] alone, or a list of statuses')
            return [EVERY_STATUS]
        unknown = [event for event in events if event not in STATUSES]
        if unknown:
            raise ValueError(f"must be among {', '.join(STATUSES)} or * (got {unknown[0]!r})")
        return sorted(set(events))


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    filter: dict[str, Any]
    enabled: bool
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    failing_since: datetime | None = Field(
        default=None, description="since when every delivery failed (none succeeding since)"
    )
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, webhook: Webhook) -> WebhookOut:
        return cls(
            id=webhook.id, url=webhook.url, events=webhook.events, filter=webhook.filter,
            enabled=webhook.enabled, disabled_at=webhook.disabled_at,
            disabled_reason=webhook.disabled_reason, failing_since=webhook.failing_since,
            created_by=webhook.created_by, created_at=webhook.created_at,
        )  # fmt: skip


class WebhookCreated(WebhookOut):
    secret: str = Field(description="whsec_...: verifies the signatures; shown only this once")


class WebhookList(BaseModel):
    items: list[WebhookOut]


class DeliveryAttempt(BaseModel):
    webhook_id: str = Field(description="the message id, sent as webhook-id on every try")
    type: str
    execution_id: UUID
    attempt: int
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float
    delivered: bool


class DeliveryList(BaseModel):
    items: list[DeliveryAttempt]


def _unprocessable(request: Request[Any, Any, Any], error: ValidationException) -> Response[Any]:
    """Bad registrations are 422 (the other routes' bad input stays 400), naming the field."""
    problems = [item for item in error.extra if isinstance(item, dict)] if isinstance(
        error.extra, list) else []  # fmt: skip
    for item in problems:  # pydantic's wording, not ours
        item["message"] = str(item.get("message", "")).removeprefix("Value error, ")
    detail = "; ".join(f"{item.get('key') or 'body'}: {item['message']}" for item in problems)
    return ProblemDetailsException(
        status_code=422, title="Invalid webhook", detail=detail or str(error.detail),
        extra=problems or None,
    ).to_response(request)  # fmt: skip


def _store(request: Request[Principal, Any, State]) -> WebhookStore:
    container: Container = request.app.state.container
    return container.webhooks


def _check_not_the_api(request: Request[Principal, Any, State], url: str) -> None:
    """A webhook to the API itself would post its announcements back to it."""
    target = urlsplit(url)
    target_port = target.port or (443 if target.scheme == "https" else 80)
    host = (target.hostname or "").lower()
    own = urlsplit(str(request.base_url))
    own_port = own.port or (443 if own.scheme == "https" else 80)
    container: Container = request.app.state.container
    ours = {(own.hostname or "").lower(), container.settings.http_host.lower()}
    if target_port in (own_port, container.settings.http_port) and (
        host in ours or _is_local(host)
    ):
        raise Unprocessable("url", "points at this API itself")


def _is_local(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


class WebhookController(Controller):
    path = "/v1/webhooks"
    tags = ["webhooks"]
    exception_handlers = {ValidationException: _unprocessable}

    @post("/", operation_id="createWebhook", guards=[admins], status_code=201)
    async def create(
        self, request: Request[Principal, Any, State], data: JSONBody[WebhookCreate]
    ) -> Response[WebhookOut]:
        """Register an endpoint: 201 with its secret (shown this once); the same URL,
        events and filter again: 200 with the one already registered, without it."""
        _check_not_the_api(request, data.url)
        where = data.filter.model_dump(exclude_none=True)
        try:
            subscription_filter(where)
        except InvalidQuery as bad:
            raise Unprocessable("filter", str(bad)) from None
        principal = request.user
        registered = await anyio.to_thread.run_sync(
            _store(request).register, principal.tenant, data.url, data.events, where,
            f"key:{principal.key_id}",
        )  # fmt: skip
        out = WebhookOut.of(registered.webhook)
        if registered.secret is None:
            return Response(out, status_code=200)
        return Response(WebhookCreated(**out.model_dump(), secret=registered.secret),
                        status_code=201)  # fmt: skip

    @get("/", operation_id="listWebhooks", guards=[admins])
    async def list_webhooks(self, request: Request[Principal, Any, State]) -> WebhookList:
        """The tenant's endpoints, enabled or not; never their secrets."""
        webhooks = await anyio.to_thread.run_sync(
            _store(request).list_webhooks, request.user.tenant
        )
        return WebhookList(items=[WebhookOut.of(webhook) for webhook in webhooks])

    @get("/{webhook_id:str}", operation_id="getWebhook", guards=[admins])
    async def get_one(
        self, request: Request[Principal, Any, State], webhook_id: FromPath[str]
    ) -> WebhookOut:
        """One endpoint."""
        store, tenant = _store(request), request.user.tenant
        return WebhookOut.of(await _call(store.get, tenant, webhook_id))

    @delete("/{webhook_id:str}", operation_id="deleteWebhook", guards=[admins], status_code=204)
    async def delete_one(
        self, request: Request[Principal, Any, State], webhook_id: FromPath[str]
    ) -> None:
        """Delete an endpoint, with what it had still to be delivered and its attempts."""
        await _call(_store(request).delete, request.user.tenant, webhook_id)

    @post("/{webhook_id:str}/enable", operation_id="enableWebhook", guards=[admins],
          status_code=200)  # fmt: skip
    async def enable(
        self, request: Request[Principal, Any, State], webhook_id: FromPath[str]
    ) -> WebhookOut:
        """Enable again an endpoint disabled after a day of failed deliveries: it hears of
        events from now on."""
        return WebhookOut.of(await _call(_store(request).enable, request.user.tenant, webhook_id))

    @get("/{webhook_id:str}/deliveries", operation_id="listWebhookDeliveries", guards=[admins])
    async def deliveries(
        self, request: Request[Principal, Any, State], webhook_id: FromPath[str],
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> DeliveryList:  # fmt: skip
        """Every delivery attempt, newest first: when, the answer's status code, what went
        wrong, how long it took."""
        rows = await _call(_store(request).attempts, request.user.tenant, webhook_id, limit)
        return DeliveryList(
            items=[DeliveryAttempt(webhook_id=row.pop("message_id"), type=row.pop("event_type"),
                                   **row) for row in rows]
        )  # fmt: skip


async def _call(function: Any, tenant: str, webhook_id: str, *args: Any) -> Any:
    if not WEBHOOK_ID.fullmatch(webhook_id):  # not one of ours; and no NUL reaches the SQL
        raise NotFound(f"webhook {webhook_id[:40]!r} does not exist")
    try:
        return await anyio.to_thread.run_sync(function, tenant, webhook_id, *args)
    except WebhookNotFound:
        raise NotFound(f"webhook {webhook_id} does not exist") from None
