"""What the CLI reads to reach a running API: ``AGENTBOARD_URL``, ``AGENTBOARD_API_KEY`` and
``AGENTBOARD_DATA_DIR`` (for ``<data dir>/admin.key``), without pydantic.

``Settings`` (infra/settings.py) reads every variable through pydantic-settings, whose import
alone costs more than the rest of ``agentboard execution list`` (docs/cli.md, "Start time").
The verbs that only talk to the API read their three variables here instead, as
pydantic-settings does (a name in any case); ``Settings`` takes its
defaults from here, and a unit test holds the two to the same values. Apart from
``Settings``, this is the one module that reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_DATA_DIR = Path(".agentboard")


@dataclass(frozen=True, slots=True)
class ClientSettings:
    url: str = DEFAULT_URL
    api_key: str | None = None
    data_dir: Path = DEFAULT_DATA_DIR

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ClientSettings:
        given = os.environ if environ is None else environ
        variables = {name.upper(): value for name, value in given.items()}
        return cls(
            url=variables.get("AGENTBOARD_URL", DEFAULT_URL),
            api_key=variables.get("AGENTBOARD_API_KEY"),
            data_dir=Path(variables.get("AGENTBOARD_DATA_DIR", DEFAULT_DATA_DIR)),
        )
