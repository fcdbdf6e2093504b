"""/v1/keys: admins make API keys (shown once)."""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.params import JSONBody
from pydantic import BaseModel, ConfigDict, Field

from api.auth import admins
from api.errors import Forbidden
from api.schemas import NAME_PATTERN
from infra.keys import KeyStore, Principal, Role

# The admin of this tenant administers the deployment: it may make keys for any tenant.


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(pattern=NAME_PATTERN)
    role: Role


class KeyCreated(BaseModel):
    key: str = Field(description="the key; it is shown only this once")
    tenant: str
    role: Role


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
        key = await anyio.to_thread.run_sync(
            store.create, data.tenant, data.role, f"key:{principal.key_id}"
        )
        return KeyCreated(key=key, tenant=data.tenant, role=data.role)
