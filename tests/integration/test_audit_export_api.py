"""GET /v1/audit/export as ``agentboard up`` serves it: the API in one process, the
projections (the audit chain among them) in another, each hearing of the other only
through PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from api.http.app import create_app
from infra.bootstrap import Container
from infra.keys import KeyStore, Role
from infra.nats import connect, ensure_streams
from infra.roles import ProjectionsRole
from infra.settings import Settings
from projections.audit.key import ensure_audit_key
from projections.audit.verify import verify
from tests.integration.audit_support import write_history


async def declare_streams(nats_url: str) -> None:
    nc = await connect(nats_url, "test-audit-export")  # the app's live hub reads them
    await ensure_streams(nc.jetstream())
    await nc.close()


@pytest.fixture
def api(container: Container) -> Iterator[TestClient[Any]]:
    """The API of a container that does not run the projections (``container`` is
    bootstrapped as ``agentboard up`` bootstraps its API process)."""
    assert container.projections is None
    asyncio.run(declare_streams(container.nats_url))
    with TestClient(create_app(container)) as client:
        yield client


def test_an_export_waits_for_the_chain_the_projections_process_keeps(
    api: TestClient[Any], container: Container, settings: Settings, database_url: str,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    viewer = KeyStore(database_url).create("default", Role.VIEWER, "test")
    write_history(container.service, 4)  # 24 events; no projection has chained them yet
    written = container.service.recorder.max_notification_id() or 0
    # The projections process starts once the export has asked how far the chain is, or
    # has answered without asking: then its lines can only be what was chained before.
    under_way = threading.Event()
    wait_for = container.views.wait_for

    def asking(view: str, position: int, timeout: float) -> bool:
        under_way.set()
        return wait_for(view, position, timeout)

    monkeypatch.setattr(container.views, "wait_for", asking)
    with ThreadPoolExecutor(1) as pool:
        request = pool.submit(
            api.get, "/v1/audit/export", headers={"Authorization": f"Bearer {viewer}"}
        )
        request.add_done_callback(lambda _: under_way.set())
        assert under_way.wait(60)
        projections = ProjectionsRole(settings, database_url)  # another process's, in effect
        projections.supervisor.start()
        try:
            response = request.result(timeout=60)
        finally:
            projections.supervisor.stop()
            projections.service.close()

    assert response.status_code == 200, response.text
    lines = [json.loads(line) for line in response.text.splitlines()]
    events = [line for line in lines if "position" in line]
    assert [line["position"] for line in events] == list(range(1, written + 1))
    assert all(len(line["hash"]) == 64 and len(line["tenant_hash"]) == 64 for line in events)
    assert lines[-1]["manifest"]["events"]["count"] == written
    exported = tmp_path / "export.ndjson"
    exported.write_bytes(response.content)
    verdict = verify(exported, ensure_audit_key(settings.data_dir))
    assert verdict.ok, [str(problem) for problem in verdict.problems]
