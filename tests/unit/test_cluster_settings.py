"""Cluster-ready configuration (DESIGN §10): several NATS servers, credentials and TLS,
replicas, and any PostgreSQL (TLS in its URL); a bad value stops a role at once, exit 2,
naming the variable and never echoing a secret."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from api.cli.main import main
from infra.eventstore import eventsourcing_env
from infra.pgstore import Factory
from infra.replicas import Replicas, replicas_for
from infra.settings import BadSetting, Settings, nats_servers
from projections.engine.registry import datastore_for

TLS_URL = (
    "postgresql://agentboard:s3cret@db-1.internal:5432/agentboard"
    "?sslmode=verify-full&sslrootcert=/etc/agentboard/ca.pem&application_name=agentboard"
)


def test_the_nats_url_takes_the_members_of_a_cluster_separated_by_commas() -> None:
    settings = Settings(nats_url="nats://n1:4222, nats://n2:4222,tls://n3:4222 ,n4:4222")

    assert settings.nats_url is not None
    assert nats_servers(settings.nats_url) == [
        "nats://n1:4222", "nats://n2:4222", "tls://n3:4222", "n4:4222",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "url", ["nats://n1:4222 nats://n2:4222", "http://n1:4222", "nats://n1:port", ",,"]
)
def test_a_nats_url_that_names_no_server_is_refused_naming_the_variable(url: str) -> None:
    with pytest.raises(BadSetting, match=r"^AGENTBOARD_NATS_URL: "):
        Settings(nats_url=url)


def test_a_refused_url_never_shows_its_password() -> None:
    with pytest.raises(BadSetting) as nats_refused:
        Settings(nats_url="nats://agent:hunter2@n1:4222,ftp://n2")
    with pytest.raises(BadSetting) as postgres_refused:
        Settings(database_url="postgresql://agent:hunter2@db:5432/agentboard?sslmode=always")

    assert "hunter2" not in str(nats_refused.value)
    assert "ftp://n2" in str(nats_refused.value)
    assert "hunter2" not in str(postgres_refused.value)
    assert "sslmode 'always'" in str(postgres_refused.value)


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"nats_replicas": 0}, "AGENTBOARD_NATS_REPLICAS"),
        ({"nats_replicas": 6}, "AGENTBOARD_NATS_REPLICAS"),
        ({"nats_creds": "/nowhere/agentboard.creds"}, "AGENTBOARD_NATS_CREDS"),
        ({"nats_tls_ca": "/nowhere/ca.pem"}, "AGENTBOARD_NATS_TLS_CA"),
        ({"database_url": "postgresql://db:fivefourthreetwo/x"}, "AGENTBOARD_DATABASE_URL"),
        ({"db_pool_size": 0}, "AGENTBOARD_DB_POOL_SIZE"),
    ],
)
def test_each_bad_value_is_refused_naming_its_variable(
    values: dict[str, object], variable: str
) -> None:
    with pytest.raises(BadSetting, match=rf"^{variable}: "):
        Settings(**values)  # type: ignore[arg-type]


def test_a_role_with_a_bad_setting_exits_2_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENTBOARD_NATS_URL", "nats://n1:4222;nats://n2:4222")
    monkeypatch.setattr(sys, "argv", ["agentboard", "relay"])

    with pytest.raises(SystemExit) as exited:
        main()

    assert exited.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("agentboard: AGENTBOARD_NATS_URL: ")


def test_the_database_urls_tls_parameters_reach_every_connection_pool(tmp_path: Path) -> None:
    """eventsourcing's datastore takes only host, port, user, password and database: the
    URL's other parameters (TLS) must still reach the event store's pool and the read
    side's; no connection is made here (pools connect on first use)."""
    event_store = Factory(eventsourcing_env(TLS_URL, Settings(), create_table=False))
    read_side = datastore_for(TLS_URL)

    for pool in (event_store.datastore.pool, read_side.pool):
        assert isinstance(pool.kwargs, dict)
        assert pool.kwargs["sslmode"] == "verify-full"
        assert pool.kwargs["sslrootcert"] == "/etc/agentboard/ca.pem"
        assert pool.kwargs["application_name"] == "agentboard"
        assert pool.kwargs["host"] == "db-1.internal"


def test_the_event_stores_pool_follows_its_settings() -> None:
    settings = Settings(db_pool_size=12, db_pool_max_overflow=3)

    event_store = Factory(eventsourcing_env(TLS_URL, settings, create_table=False))

    assert event_store.datastore.pool.min_size == 12
    assert event_store.datastore.pool.max_size == 15


@dataclass
class Connected:
    """What replicas_for reads of a NATS connection: the servers it knows (given and
    announced by the cluster)."""

    servers: list[str] = field(default_factory=list)


@pytest.mark.parametrize(
    ("known", "setting", "expected"),
    [
        (1, None, Replicas(1, exact=False)),
        (2, None, Replicas(1, exact=False)),
        (3, None, Replicas(3, exact=False)),
        (5, None, Replicas(3, exact=False)),
        (1, 1, Replicas(1, exact=True)),
        (5, 5, Replicas(5, exact=True)),
    ],
)
def test_replicas_are_three_on_a_cluster_of_three_or_more_unless_set(
    known: int, setting: int | None, expected: Replicas
) -> None:
    connected = Connected([f"nats://n{i}:4222" for i in range(known)])

    assert replicas_for(connected, setting) == expected  # type: ignore[arg-type]


def test_a_default_only_raises_an_existing_streams_replicas_a_setting_sets_them() -> None:
    assert Replicas(3, exact=False).for_existing(1) == 3
    assert Replicas(1, exact=False).for_existing(3) == 3  # a server down must not shrink it
    assert Replicas(1, exact=True).for_existing(3) == 1
    assert Replicas().for_existing(3) == 3


def test_an_empty_variable_is_an_unset_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTBOARD_NATS_CREDS", "")
    monkeypatch.setenv("AGENTBOARD_NATS_REPLICAS", "")

    settings = Settings()

    assert (settings.nats_creds, settings.nats_replicas) == (None, None)
