"""/v1/keys: admins make API keys (shown once)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.params import JSONBody
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api.auth import admins
from api.errors import Forbidden
from api.schemas import NAME_PATTERN
from infra.keys import KeyStore, Principal, Role

# The admin of this tenant administers the deployment: it may make keys for any tenant.


Queue = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(pattern=NAME_PATTERN)
    role: Role
    queues: list[Queue] | None = Field(
        default=None, min_length=1, max_length=100,
        description="a worker key only: the queues it reports for (absent: every queue)",
    )  # fmt: skip

    @model_validator(mode="after")
    def _queues_for_workers(self) -> KeyCreate:
        if self.queues is not None and self.role is not Role.WORKER:
            raise ValueError(f"queues limit worker keys only, not a key of role {self.role}")
        return self


class KeyCreated(BaseModel):
    key: str = Field(description="the key; it is shown only this once")
    tenant: str
    role: Role
    queues: list[str] | None = None


class KeyController(Controller):
    path = "/v1/keys"
    tags = ["keys"]

    @post("/", operation_id="createKey", guards=[admins], status_code=201)
    async def create(
        self, request: Request[Principal, Any, State], data: JSONBody[KeyCreate]
    ) -> KeyCreated:
        """Make a key for a tenant and a role."""
        principal = request.user
        if principal.tenant != data.tenant and not principal.of_deployment:
            raise Forbidden(f"an admin of {principal.tenant!r} makes keys for that tenant only")
        store: KeyStore = request.app.state.key_store
        queues = tuple(sorted(set(data.queues))) if data.queues is not None else None
        key = await anyio.to_thread.run_sync(
            store.create, data.tenant, data.role, f"key:{principal.key_id}", queues
        )
        return KeyCreated(
            key=key, tenant=data.tenant, role=data.role,
            queues=list(queues) if queues is not None else None,
        )  # fmt: skip
