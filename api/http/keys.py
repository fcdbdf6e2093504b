"""/v1/keys: admins make API keys (shown once), list them (never their secrets) and revoke
them. An admin of tenant `default` does so for every tenant, any other admin for its own."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import anyio
from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody, QueryParameter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.http.auth import admins
from api.http.errors import BadRequest, Forbidden, NotFound
from api.http.schemas import NAME_PATTERN
from infra.keys import KeyInfo, KeyNotFound, KeyNotPossible, KeyStore, Principal, Role, key_queues

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


class KeyCreated(BaseModel):
    key: str = Field(description="the key; it is shown only this once")
    tenant: str
    role: Role
    queues: list[str] | None = None


class KeyOut(BaseModel):
    key_id: str = Field(description="the key's public part: ab_<key id>_<secret>")
    tenant: str
    role: Role
    queues: list[str] | None = None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, info: KeyInfo) -> KeyOut:
        return cls(
            key_id=info.key_id, tenant=info.tenant, role=Role(info.role), queues=info.queues,
            created_by=info.created_by, created_at=info.created_at, revoked_at=info.revoked_at,
        )  # fmt: skip


class KeyList(BaseModel):
    items: list[KeyOut]


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
        try:
            queues = key_queues(data.role, data.queues)
        except KeyNotPossible as refused:
            raise BadRequest(str(refused)) from None
        key = await anyio.to_thread.run_sync(
            store.create, data.tenant, data.role, f"key:{principal.key_id}", queues
        )
        return KeyCreated(
            key=key, tenant=data.tenant, role=data.role,
            queues=list(queues) if queues is not None else None,
        )  # fmt: skip

    @get("/", operation_id="listKeys", guards=[admins])
    async def list_keys(
        self, request: Request[Principal, Any, State],
        tenant: Annotated[str | None, QueryParameter(
            required=False, pattern=NAME_PATTERN,
            description="only this tenant's keys (an admin of another tenant sees its own)")
        ] = None,
    ) -> KeyList:  # fmt: skip
        """The keys, oldest first, revoked ones too; never their secrets."""
        principal = request.user
        if not principal.of_deployment:
            if tenant not in (None, principal.tenant):
                raise Forbidden(f"an admin of {principal.tenant!r} sees that tenant's keys only")
            tenant = principal.tenant
        store: KeyStore = request.app.state.key_store
        infos = await anyio.to_thread.run_sync(store.list_keys, tenant)
        return KeyList(items=[KeyOut.of(info) for info in infos])

    @delete("/{key_id:str}", operation_id="revokeKey", guards=[admins], status_code=200)
    async def revoke(
        self, request: Request[Principal, Any, State], key_id: FromPath[str]
    ) -> KeyOut:
        """Revoke a key: it stops working at once on this API process, within 30 s on others
        (which remember verified keys that long). The revocation is on the audit trail."""
        principal = request.user
        store: KeyStore = request.app.state.key_store
        scope = None if principal.of_deployment else principal.tenant
        try:
            info = await anyio.to_thread.run_sync(
                store.revoke, key_id, scope, f"key:{principal.key_id}"
            )
        except KeyNotFound as missing:
            raise NotFound(f"{missing}: unknown, another tenant's, or revoked already") from None
        return KeyOut.of(info)
