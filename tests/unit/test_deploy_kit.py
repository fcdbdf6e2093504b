"""The deployment kit (Dockerfile, deploy/compose.yaml, docs/deploy.md) cannot run here (no
container runtime); it stays honest by naming every role and every setting the code has,
and nothing the code lacks."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.roles import ROLE_COMMANDS
from infra.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
SETTINGS = sorted(  # the AGENTBOARD_* ones: OTEL_* keep the OpenTelemetry standard names
    ENV_PREFIX + name.upper()
    for name, field in Settings.model_fields.items()
    if field.validation_alias is None
)


def services() -> dict[str, dict[str, Any]]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    found: dict[str, dict[str, Any]] = loaded["services"]
    return found


def agentboard_services() -> dict[str, dict[str, Any]]:
    """The services that run the agentboard image."""
    return {
        name: service
        for name, service in services().items()
        if "agentboard" in str(service.get("image", ""))
    }


@pytest.mark.parametrize("role", sorted(ROLE_COMMANDS))
def test_compose_runs_every_role(role: str) -> None:
    commands = [tuple(service["command"]) for service in agentboard_services().values()]

    assert any(command[: len(ROLE_COMMANDS[role])] == ROLE_COMMANDS[role] for command in commands)


def test_compose_runs_init_once_before_the_roles() -> None:
    found = agentboard_services()

    assert found["init"]["command"] == ["init"]
    assert found["init"]["restart"] == "no"
    for name, service in found.items():
        if name != "init":
            assert service["depends_on"]["init"] == {"condition": "service_completed_successfully"}


def test_every_agentboard_service_is_given_every_setting_and_no_other() -> None:
    for name, service in agentboard_services().items():
        given = sorted(key for key in service["environment"] if key.startswith(ENV_PREFIX))
        assert given == SETTINGS, name


def test_compose_names_no_agentboard_variable_the_code_lacks() -> None:
    named = set(re.findall(r"\b(AGENTBOARD_[A-Z_]+)\b", COMPOSE.read_text()))
    # variables of the compose file itself (the image, the worker's key), not settings
    own = {"AGENTBOARD_IMAGE", "AGENTBOARD_WORKER_KEY"}

    assert named - own <= set(SETTINGS)


def test_the_deployment_docs_describe_every_setting_and_role() -> None:
    docs = (ROOT / "docs" / "deploy.md").read_text()

    assert [setting for setting in SETTINGS if setting not in docs] == []
    for command in ROLE_COMMANDS.values():
        assert f"agentboard {' '.join(command)}" in docs


def test_the_image_holds_every_package_and_runs_as_no_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]

    for package in packages:
        assert f"COPY {package}/ {package}/" in dockerfile
    [user] = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert not user.startswith(("root", "0"))
    assert 'ENTRYPOINT ["agentboard"]' in dockerfile
