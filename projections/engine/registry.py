"""The views there are, and how to build one against a database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eventsourcing.postgres import PostgresDatastore
from psycopg.conninfo import conninfo_to_dict

from projections.audit.chain import AuditChainProjection
from projections.audit.chain_view import AuditChainView
from projections.engine.errors import UnknownView
from projections.engine.projection import PageProjection
from projections.engine.view import ViewRecorder
from projections.views.board import BoardProjection, BoardView
from projections.views.intervals import StatusIntervalsProjection, StatusIntervalsView
from projections.views.tool_calls import ToolCallsProjection, ToolCallsView
from projections.views.usage import UsageProjection, UsageView

AnyProjection = PageProjection[Any]
ProjectionFactory = Callable[[str, PostgresDatastore, str], AnyProjection]

VIEWS: dict[str, tuple[type[AnyProjection], type[ViewRecorder]]] = {
    "board": (BoardProjection, BoardView),
    "status_intervals": (StatusIntervalsProjection, StatusIntervalsView),
    "tool_calls": (ToolCallsProjection, ToolCallsView),
    "audit_chain": (AuditChainProjection, AuditChainView),
    "usage": (UsageProjection, UsageView),
}


def view_names(name: str | None = None) -> list[str]:
    """All views, or the one named (raising ``UnknownView`` for a name we do not know)."""
    if name is None:
        return list(VIEWS)
    if name not in VIEWS:
        raise UnknownView(name, list(VIEWS))
    return [name]


def make_projection(name: str, datastore: PostgresDatastore, suffix: str = "") -> AnyProjection:
    projection_class, view_class = VIEWS[view_names(name)[0]]
    return projection_class(view_class(datastore, suffix=suffix))


@dataclass(frozen=True, slots=True)
class ProjectionOptions:
    page_size: int = 2000
    """Most events a live runner applies in one transaction."""
    rebuild_page_size: int = 5000
    poll_interval: float = 1.0
    """A runner reads the log at least this often, whatever LISTEN says."""
    min_backoff: float = 0.1
    max_backoff: float = 30.0
    pool_size: int = 6


# What eventsourcing's PostgresDatastore takes as arguments; every other parameter of the
# URL (sslmode, sslrootcert, sslcert, sslkey, application_name, target_session_attrs, ...)
# is a connection option that it would drop, and ``connection_options`` carries.
DATASTORE_PARAMETERS = ("dbname", "host", "port", "user", "password")


def connection_options(database_url: str) -> dict[str, str]:
    """The libpq parameters of ``database_url`` beyond where and who: TLS and the like."""
    params = conninfo_to_dict(database_url)
    return {
        name: str(value)
        for name, value in params.items()
        if name not in DATASTORE_PARAMETERS and value is not None
    }


def datastore_for(database_url: str, *, pool_size: int = 6) -> PostgresDatastore:
    """A connection pool of the read side's own, so projections never starve commands;
    with every connection option of the URL (TLS)."""
    params = conninfo_to_dict(database_url)
    datastore = PostgresDatastore(
        dbname=str(params.get("dbname", "postgres")),
        host=str(params.get("host", "127.0.0.1")),
        port=str(params.get("port", "5432")),
        user=str(params.get("user", "postgres")),
        password=str(params.get("password", "")),
        pool_size=pool_size,
        max_overflow=pool_size,
        pre_ping=True,
        lock_timeout=10,
        idle_in_transaction_session_timeout=60,
    )
    add_connection_options(datastore, connection_options(database_url))
    return datastore


def add_connection_options(datastore: PostgresDatastore, options: dict[str, str]) -> None:
    """Every connection the datastore's pool makes from now on (it makes them lazily, so:
    before its first) uses ``options``."""
    kwargs = datastore.pool.kwargs
    if not isinstance(kwargs, dict):  # eventsourcing gives a dict; a callable would be new
        raise TypeError(f"unexpected connection arguments in the pool: {kwargs!r}")
    kwargs.update(options)
