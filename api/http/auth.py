"""Who is calling: ``Authorization: Bearer <key>`` names a principal (tenant and role).

Every route reads ``request.user`` (a Principal); guards say which roles may call it. The
guards are coroutines: Litestar runs a plain function guard in a worker thread, a hop that
cost more than the whole check.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from api.http.errors import Forbidden, Unauthorized
from infra.keys import KeyStore, Principal

PUBLIC_PATHS = {"/healthz", "/readyz", "/metrics", "/"}


class KeyAuthentication(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:  # type: ignore[type-arg]
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("send your API key as 'Authorization: Bearer <key>'")
        store: KeyStore = connection.app.state.key_store
        principal = await store.verify_async(token.strip())
        if principal is None:
            raise Unauthorized("this API key is unknown or revoked")
        return AuthenticationResult(user=principal, auth=token)


async def operators(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    principal: Principal = connection.user
    if not principal.can_operate:
        raise Forbidden(f"this needs the operator role; the key has the {principal.role} role")


async def admins(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    principal: Principal = connection.user
    if not principal.is_admin:
        raise Forbidden(f"this needs the admin role; the key has the {principal.role} role")
