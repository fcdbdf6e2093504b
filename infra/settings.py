"""Settings, from AGENTBOARD_* environment variables (DESIGN §9). Nothing else reads os.environ
but infra/client_settings.py: the CLI's three variables, read without pydantic."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.client_settings import DEFAULT_DATA_DIR, DEFAULT_URL

STACK_FILE = "stack.json"  # where `agentboard up` says where its servers are


class Unconfigured(Exception):
    """A role lacks something it needs that only configuration can give (a server to
    connect to, a key to report with); the message says which setting gives it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTBOARD_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset starts embedded PostgreSQL"
    )
    nats_url: str | None = Field(
        default=None, description="NATS URL; unset starts an embedded nats-server with JetStream"
    )
    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description="embedded servers' data")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)

    # The CLI, as a client of a running API.
    url: str = Field(default=DEFAULT_URL, description="the API the CLI talks to")
    api_key: str | None = Field(default=None, description="unset: <data dir>/admin.key")

    writer_max_batch: int = Field(default=1000, ge=1, description="commands per group commit")
    writer_cache_size: int = Field(default=20_000, ge=0, description="executions kept in memory")
    db_pool_size: int = Field(default=5, ge=1)
    db_pool_max_overflow: int = Field(default=10, ge=0)
    # Embedded PostgreSQL only: the test fixtures turn fsync off for speed; a real
    # deployment keeps it on, because acknowledged means durable.
    embedded_postgres_fsync: bool = True

    # Webhooks (docs/webhooks.md): how deliveries are retried, and when an endpoint that
    # keeps failing is disabled. Tests shorten them; a deployment keeps the day.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, description="per delivery")
    webhook_backoff_seconds: float = Field(default=5.0, gt=0, description="first retry after")
    webhook_max_backoff_seconds: float = Field(default=3600.0, gt=0)
    webhook_retry_for_seconds: float = Field(
        default=86_400.0, gt=0, description="a delivery is retried this long, then given up"
    )
    webhook_disable_after_seconds: float = Field(
        default=86_400.0, gt=0, description="an endpoint failing this long is disabled"
    )
    webhook_poll_seconds: float = Field(default=1.0, gt=0, description="due retries looked for")

    # OpenTelemetry (DESIGN §14): set, every execution is exported as a trace. The SDK
    # reads the other standard OTEL_* variables (headers, timeout, service name) itself.
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )

    log_format: Literal["json", "text"] = Field(
        default="json", description="json: one object a line; text: plain lines for a person"
    )

    @property
    def tracing(self) -> bool:
        """Whether executions are exported as traces (an OTLP endpoint is configured)."""
        return bool(self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint)

    @field_validator("log_format", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


def child_environment(variables: dict[str, str]) -> dict[str, str]:
    """This process's environment with ``variables`` set: what a child process of ours
    (``agentboard up``'s relay, projections and worker) starts with, so it sees the same
    configuration as its parent plus what the parent tells it."""
    return {**os.environ, **variables}
