"""GET /metrics read as Prometheus reads it: samples by name and labels, in any label order."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Series = tuple[str, frozenset[tuple[str, str]]]


def scrape(url: str) -> dict[Series, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def series(name: str, **labels: str) -> Series:
    return name, frozenset(labels.items())
