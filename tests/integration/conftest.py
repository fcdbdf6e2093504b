"""Real PostgreSQL and NATS JetStream, started by the fixtures on free loopback ports.

One embedded PostgreSQL and one nats-server per test session; a fresh database per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest

from infra.bootstrap import Container, bootstrap
from infra.embedded import EmbeddedNats, EmbeddedPostgres
from infra.eventstore import ensure_schema
from infra.settings import Settings


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def postgres_server(servers_dir: Path) -> Iterator[str]:
    # fsync off: the tests do not survive power loss, and need not
    server = EmbeddedPostgres(servers_dir, fsync=False)
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[str]:
    # one per test (it starts in tens of milliseconds): streams and consumers start empty
    server = EmbeddedNats(tmp_path)
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
def database_url(postgres_server: str) -> Iterator[str]:
    name = f"t_{uuid4().hex[:16]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = postgres_server.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def settings(database_url: str, nats_server: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, nats_url=nats_server, data_dir=tmp_path)


@pytest.fixture
def container(settings: Settings, database_url: str, nats_server: str) -> Iterator[Container]:
    ensure_schema(database_url, settings)
    container = bootstrap(settings, database_url=database_url, nats_url=nats_server)
    yield container
    container.close()
