"""GET /v1/audit/export: the caller's tenant's stored events with their hash chain,
streamed (NDJSON or CSV), ending with a manifest signed with the deployment's audit key.
Every role may export its own tenant; naming another tenant is refused (403)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import anyio
from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.params import QueryParameter
from litestar.response import Stream

from api.http.errors import Forbidden
from api.http.queries import Text
from infra.bootstrap import Container
from infra.keys import Principal
from projections.audit.export import MEDIA_TYPES, Export, ExportQuery
from projections.audit.key import ensure_audit_key

CHAIN_WAIT_SECONDS = 5.0


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["audit"]

    @get("/export", operation_id="exportAudit", media_type=MEDIA_TYPES["ndjson"])
    async def export(
        self,
        request: Request[Principal, Any, State],
        start: Annotated[
            datetime | None,
            QueryParameter(name="from", required=False,
                      description="first event stamped at or after (ISO 8601; no zone: UTC)"),
        ] = None,
        end: Annotated[
            datetime | None,
            QueryParameter(name="to", required=False,
                      description="last event stamped at or before (ISO 8601; no zone: UTC)"),
        ] = None,
        execution: Annotated[UUID | None, QueryParameter(required=False)] = None,
        agent: Text = None,
        tenant: Annotated[
            str | None,
            QueryParameter(required=False, max_length=64, description="the key's own tenant"),
        ] = None,
        format_: Annotated[
            Literal["ndjson", "csv"], QueryParameter(name="format", required=False)
        ] = "ndjson",
    ) -> Stream:  # fmt: skip
        """Stream the audit trail: one event a line with its chain fields, then a signed
        manifest; `agentboard audit verify FILE` checks it offline."""
        principal = request.user
        if tenant is not None and tenant != principal.tenant:
            raise Forbidden(
                f"this key belongs to tenant {principal.tenant!r}; it cannot export {tenant!r}"
            )
        container: Container = request.app.state.container
        key = await anyio.to_thread.run_sync(ensure_audit_key, container.settings.data_dir)
        query = ExportQuery(principal.tenant, start, end, execution, agent, format_)
        query.check()
        await _chain_caught_up(container)
        opened = await anyio.to_thread.run_sync(Export, container.database_url, query, key)
        extension = "csv" if format_ == "csv" else "ndjson"
        return Stream(
            _chunks(opened),
            media_type=MEDIA_TYPES[format_],
            headers={
                "Content-Disposition": (
                    f'attachment; filename="agentboard-audit-{principal.tenant}.{extension}"'
                )
            },
        )


async def _chain_caught_up(container: Container) -> None:
    """Wait (briefly) until the chain covers everything stored when the export began,
    wherever the projections run (``container.views``: this process's supervisor, or
    what the projections process announces); the manifest says how far it got if it did
    not."""
    head = await anyio.to_thread.run_sync(container.service.recorder.max_notification_id)
    if head:
        await anyio.to_thread.run_sync(
            container.views.wait_for, "audit_chain", head, CHAIN_WAIT_SECONDS
        )


async def _chunks(export: Export) -> AsyncIterator[bytes]:
    chunks = export.chunks()
    try:
        while (chunk := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
            yield chunk
    finally:
        await anyio.to_thread.run_sync(chunks.close)
        await anyio.to_thread.run_sync(export.close)
