"""/metrics as Prometheus reads it: every series parses back, whatever its label values hold."""

from __future__ import annotations

from litestar import Litestar, get
from litestar.params import FromPath
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.http.metrics import Reading, RequestMetrics, StackCollector

AWKWARD = 'say "hi"\\n\nbye'  # a quote, a backslash, a newline


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_label_values_with_quotes_backslashes_and_newlines_parse_back_unchanged() -> None:
    registry = CollectorRegistry()
    reading = Reading(
        commands=7, commits=3, stored=100, view_positions={AWKWARD: 90, "board": 100},
        relay_position=95, queue_depths={(AWKWARD, "normal"): 4},
    )  # fmt: skip
    registry.register(StackCollector(lambda: reading))

    seen = samples(registry)

    assert seen[("agentboard_projection_lag", (("view", AWKWARD),))] == 10
    assert seen[("agentboard_projection_lag", (("view", "board"),))] == 0
    assert seen[("agentboard_queue_depth", (("band", "normal"), ("queue", AWKWARD)))] == 4
    assert seen[("agentboard_commands_total", ())] == 7
    assert seen[("agentboard_command_commits_total", ())] == 3
    assert seen[("agentboard_relay_lag", ())] == 5


def test_what_does_not_run_in_the_process_is_not_reported() -> None:
    registry = CollectorRegistry()
    registry.register(StackCollector(lambda: Reading(commands=0, commits=0, stored=0,
                                                     view_positions={})))  # fmt: skip
    names = {name for name, _ in samples(registry)}
    assert "agentboard_events_stored" in names
    assert not names & {"agentboard_relay_lag", "agentboard_sse_clients", "agentboard_queue_depth"}


@get("/things/{name:str}", sync_to_thread=False)
def thing(name: FromPath[str]) -> str:
    return name


def app_with_metrics() -> tuple[Litestar, CollectorRegistry]:
    registry = CollectorRegistry()
    return Litestar([thing], middleware=[RequestMetrics(registry).middleware]), registry


def test_requests_count_by_route_template_and_status_per_app() -> None:
    app, registry = app_with_metrics()
    _, other = app_with_metrics()
    with TestClient(app) as client:
        for name in ("a", "b", "c"):
            assert client.get(f"/things/{name}").status_code == 200

    seen = samples(registry)
    route = (("method", "GET"), ("route", "/things/{name}"))
    assert seen[("agentboard_http_requests_total", (*route, ("status", "200")))] == 3
    assert seen[("agentboard_http_request_duration_seconds_count", route)] == 3
    assert seen[("agentboard_http_request_duration_seconds_bucket", (("le", "+Inf"), *route))] == 3
    assert not [name for name, _ in samples(other) if name.startswith("agentboard_http")]
