"""Artifacts: what an execution's agent stored (in the NATS object store), listed from its
``ArtifactAdded`` events and downloaded checked against the SHA-256 the event recorded."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import quote
from uuid import UUID

import anyio
from litestar import Request, get
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Response
from nats.js.errors import ObjectNotFoundError

from api.http.errors import NotFound, Unavailable
from infra.bootstrap import Container
from infra.keys import Principal
from infra.nats import artifacts_store
from infra.webhooks.payload import artifacts


def artifacts_of(container: Container, execution_id: UUID) -> list[dict[str, Any]]:
    """The execution's artifacts, the latest of each name, in the order first stored (as
    a webhook's payload lists them, from the same function)."""
    return artifacts(execution_id, container.service.timeline(execution_id))


@get("/v1/executions/{execution_id:uuid}/artifacts/{name:str}", operation_id="getArtifact",
     tags=["executions"], media_type="application/octet-stream")  # fmt: skip
async def download_artifact(
    request: Request[Principal, Any, State], execution_id: FromPath[UUID], name: FromPath[str]
) -> Response[bytes]:
    """One artifact's bytes, as stored by the agent (checked against its recorded hash)."""
    container: Container = request.app.state.container
    state = await anyio.to_thread.run_sync(container.service.state, execution_id)
    if state.tenant != request.user.tenant:
        raise NotFound(f"execution {execution_id} does not exist")
    listed = await anyio.to_thread.run_sync(artifacts_of, container, execution_id)
    artifact = next((a for a in listed if a["name"] == name), None)
    if artifact is None:
        raise NotFound(f"execution {execution_id} has no artifact named {name!r}")
    services = request.app.state.get("services")
    if services is None or services.nc is None:
        raise Unavailable("artifacts are kept in NATS, which this process is not connected to")
    store = await artifacts_store(services.nc.jetstream())
    try:
        data = (await store.get(artifact["object_key"])).data or b""
    except ObjectNotFoundError:
        raise NotFound(f"artifact {name!r} is recorded but its bytes are gone") from None
    if hashlib.sha256(data).hexdigest() != artifact["sha256"]:
        raise Unavailable(f"artifact {name!r} in the object store does not match its record")
    return Response(
        data,
        media_type=artifact["media_type"],
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"},
    )
