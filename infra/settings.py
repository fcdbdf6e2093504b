"""Settings, from AGENTBOARD_* environment variables (DESIGN §9). Nothing else reads os.environ
but infra/client_settings.py: the CLI's three variables, read without pydantic."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.client_settings import DEFAULT_DATA_DIR, DEFAULT_URL

STACK_FILE = "stack.json"  # where `agentboard up` says where its servers are
ENV_PREFIX = "AGENTBOARD_"
NATS_SCHEMES = ("nats", "tls")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
MAX_REPLICAS = 5  # JetStream's own limit for a stream


class Unconfigured(Exception):
    """A role lacks something it needs that only configuration can give (a server to
    connect to, a key to report with); the message says which setting gives it."""


class ModelPrice(BaseModel):
    """US dollars per million tokens of one model (``AGENTBOARD_PRICES``)."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0, le=1_000_000)
    output: float = Field(ge=0, le=1_000_000)


class BadSetting(Unconfigured):
    """An AGENTBOARD_* variable has a value we cannot use; the message names it."""


class Settings(BaseSettings):
    # An empty variable is an unset one: a deployment's templates (compose's ${X:-}) leave
    # optional settings empty rather than absent.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_ignore_empty=True)

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL (libpq's: TLS by its sslmode, sslrootcert, sslcert and "
        "sslkey parameters); unset starts embedded PostgreSQL",
    )
    nats_url: str | None = Field(
        default=None,
        description="NATS server URLs, separated by commas (the members of a cluster); unset "
        "starts an embedded nats-server with JetStream",
    )
    nats_creds: Path | None = Field(
        default=None, description="a NATS credentials file (a user JWT and its NKey seed)"
    )
    nats_tls_ca: Path | None = Field(
        default=None, description="CA certificates to verify NATS servers with (PEM)"
    )
    nats_replicas: int | None = Field(
        default=None,
        ge=1,
        le=MAX_REPLICAS,
        description="replicas of each stream, bucket and object store; unset: 3 on a cluster "
        "of three or more servers, else 1",
    )
    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description="embedded servers' data")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)

    # The CLI, as a client of a running API.
    url: str = Field(default=DEFAULT_URL, description="the API the CLI talks to")
    api_key: str | None = Field(default=None, description="unset: <data dir>/admin.key")

    writer_max_batch: int = Field(default=1000, ge=1, description="commands per group commit")
    writer_cache_size: int = Field(default=20_000, ge=0, description="executions kept in memory")
    db_pool_size: int = Field(default=5, ge=1, description="the event store's connections")
    db_pool_max_overflow: int = Field(default=10, ge=0)
    db_read_pool_size: int = Field(
        default=6, ge=1, description="the read side's connections (readers, view runners)"
    )
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

    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description='JSON {"model": {"input": USD, "output": USD}} per million tokens: a '
        "worker turns a usage report without a cost into one with it",
    )

    log_format: Literal["json", "text"] = Field(
        default="json", description="json: one object a line; text: plain lines for a person"
    )

    @property
    def tracing(self) -> bool:
        """Whether executions are exported as traces (an OTLP endpoint is configured)."""
        return bool(self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise BadSetting(_described(error)) from None

    @field_validator("log_format", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("nats_url")
    @classmethod
    def _nats_servers(cls, value: str | None) -> str | None:
        if value is None:
            return None
        servers = nats_servers(value)
        if not servers:
            raise ValueError("names no server (nats://host:port, several separated by commas)")
        for server in servers:
            _check_nats_server(server)
        return ",".join(servers)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            params = conninfo_to_dict(value)
        except ProgrammingError:
            raise ValueError(
                "is not a PostgreSQL URL (postgresql://user:password@host:5432/database)"
            ) from None
        if not all(port.isdigit() for port in str(params.get("port", "5432")).split(",")):
            raise ValueError("has a port that is not a number")
        sslmode = params.get("sslmode")
        if sslmode is not None and sslmode not in SSL_MODES:
            raise ValueError(f"sslmode {sslmode!r} is none of {', '.join(SSL_MODES)}")
        return value

    @field_validator("nats_creds", "nats_tls_ca")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("no such file")
        return value


def nats_servers(url: str) -> list[str]:
    """The servers of ``AGENTBOARD_NATS_URL``: one URL, or several separated by commas."""
    return [server.strip() for server in url.split(",") if server.strip()]


def _check_nats_server(server: str) -> None:
    parts = urlsplit(server if "://" in server else f"nats://{server}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in NATS_SCHEMES or not parts.hostname or port == -1:
        raise ValueError(
            f"{_without_password(server)!r} is not a NATS server URL "
            "(nats://host:port or tls://host:port, several separated by commas)"
        )


def _described(error: ValidationError) -> str:
    """One line per bad variable, in the caller's terms: its name, never its secret."""
    lines = []
    for problem in error.errors():
        variable, *inside = [str(part) for part in problem["loc"]] or [""]
        name = ENV_PREFIX + variable.upper()
        message = re.sub(r"^Value error, ", "", problem["msg"])
        if inside:  # a field inside a JSON value (AGENTBOARD_PRICES's m.input)
            name = f"{name} ({'.'.join(inside)})"
        shown = problem.get("input")
        if isinstance(shown, str) and name not in (
            f"{ENV_PREFIX}DATABASE_URL", f"{ENV_PREFIX}NATS_URL", f"{ENV_PREFIX}API_KEY",
        ):  # fmt: skip
            message = f"{message} (got {shown!r})"
        lines.append(f"{name}: {message}")
    return "; ".join(lines)


def _without_password(url: str) -> str:
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def child_environment(variables: dict[str, str]) -> dict[str, str]:
    """This process's environment with ``variables`` set: what a child process of ours
    (``agentboard up``'s relay, projections and worker) starts with, so it sees the same
    configuration as its parent plus what the parent tells it."""
    return {**os.environ, **variables}
