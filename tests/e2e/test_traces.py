"""Traces through the running stack: with OTEL_EXPORTER_OTLP_ENDPOINT set, `agentboard up`
exports every execution to an OTLP/HTTP receiver in this test, which parses the protobuf."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.e2e.conftest import RunningStack, admin_client, start_stack

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
STEPS = [{"tool": "search", "args": {"q": "logs"}}, {"ask": "Ship it?"}, {"say": "done"}]


class Collector:
    """An OTLP/HTTP trace receiver: every span it is sent, by name."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.resources: list[dict[str, Any]] = []
        self.changed = threading.Condition()

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self.changed:
            for resource_spans in request.resource_spans:
                self.resources.append(attributes(resource_spans.resource.attributes))
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(scope_spans.spans)
            self.changed.notify_all()

    def wait_for(self, name: str, timeout: float = 60) -> Any:
        with self.changed:
            found = self.changed.wait_for(
                lambda: any(span.name == name for span in self.spans), timeout
            )
        assert found, f"no span {name!r} among {[s.name for s in self.spans]}"
        return next(span for span in self.spans if span.name == name)


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: value(pair.value) for pair in pairs}


@pytest.fixture
def collector() -> Iterator[tuple[Collector, str]]:
    received = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path == "/v1/traces":
                received.take(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield received, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def traced_stack(
    tmp_path: Path, collector: tuple[Collector, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningStack]:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector[1])
    monkeypatch.setenv("OTEL_SERVICE_NAME", "agentboard-e2e")
    running = start_stack(tmp_path / "data")
    yield running
    running.stop()


def test_an_execution_is_a_genai_trace_continuing_the_callers(
    traced_stack: RunningStack, collector: tuple[Collector, str]
) -> None:
    received, _ = collector
    api = admin_client(traced_stack)
    created = api.post(
        "/v1/executions",
        json={"agent_id": "script", "prompt": "traced", "parameters": {"steps": STEPS}},
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )
    assert created.status_code == 201, created.text
    execution_id = created.json()["id"]
    _answer_when_asked(api, execution_id)

    run = received.wait_for("invoke_agent script")
    tool = received.wait_for("execute_tool search")
    waited = received.wait_for("wait_for_input")

    assert run.trace_id.hex() == CALLER_TRACE
    assert run.parent_span_id.hex() == CALLER_SPAN
    assert tool.parent_span_id == run.span_id == waited.parent_span_id
    assert attributes(run.attributes) | {"agentboard.worker.id": None} == {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "script",
        "gen_ai.agent.id": "script", "agentboard.execution.id": execution_id,
        "agentboard.tenant": "default", "agentboard.queue": "default",
        "agentboard.attempt": 1, "agentboard.status": "completed", "agentboard.type": "agent",
        "agentboard.worker.id": None,
    }  # fmt: skip
    assert attributes(tool.attributes)["gen_ai.tool.name"] == "search"
    assert attributes(tool.attributes)["gen_ai.operation.name"] == "execute_tool"
    assert run.start_time_unix_nano < tool.start_time_unix_nano < run.end_time_unix_nano
    assert received.resources[0]["service.name"] == "agentboard-e2e"

    traced_lines = [
        json.loads(line) for line in traced_stack.log.read_text().splitlines()
        if CALLER_TRACE in line and line.startswith("{")
    ]  # fmt: skip
    assert any(line.get("trace_id") == CALLER_TRACE for line in traced_lines)


def _answer_when_asked(api: httpx.Client, execution_id: str) -> None:
    import time  # noqa: PLC0415

    deadline = time.monotonic() + 60
    while api.get(f"/v1/executions/{execution_id}").json()["status"] != "requires_input":
        assert time.monotonic() < deadline, "it never asked"
        time.sleep(0.1)
    answered = api.post(f"/v1/executions/{execution_id}/input", json={"answer": "yes"})
    assert answered.status_code == 200, answered.text
