"""Which agents a worker runs: the built-in ones, those installed packages declare under the
entry-point group ``agentboard.agents``, and those named on its command line
(``--agent NAME=module:callable``), later ones replacing earlier ones of the same name.

An agent that does not load stops the worker before it takes any work, with one line that
names it and says why (``AgentNotLoaded``): a worker without the agent it was started for
would only fail every execution for it.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from workers.agent import Agent

ENTRY_POINT_GROUP = "agentboard.agents"
NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


class AgentNotLoaded(Exception):
    """An agent named on the command line or by an entry point could not be loaded."""


def parse_spec(spec: str) -> tuple[str, str]:
    """``NAME=module:callable`` as its name and target; ``AgentNotLoaded`` when malformed."""
    name, sep, target = spec.partition("=")
    name, target = name.strip(), target.strip()
    if not sep or not NAME.fullmatch(name) or not TARGET.fullmatch(target):
        raise AgentNotLoaded(
            f"--agent {spec!r}: expected NAME=module:callable, e.g. "
            "--agent triage=my_agents.triage:run (NAME: letters, digits, '_', '-', '.')"
        )
    return name, target


def load_target(name: str, target: str, source: str) -> Agent:
    """The callable ``module:attribute`` names, imported; ``AgentNotLoaded`` otherwise."""
    module_name, _, attribute = target.partition(":")
    # as `python -m` and uvicorn do: a module beside where the worker was started is found
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: object = importlib.import_module(module_name)
    except Exception as error:
        raise AgentNotLoaded(
            f"agent {name!r} ({source} {target}): cannot import {module_name!r}: "
            f"{type(error).__name__}: {error}"
        ) from error
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise AgentNotLoaded(
                f"agent {name!r} ({source} {target}): {module_name!r} has no {attribute!r}"
            ) from None
    if not callable(found):
        raise AgentNotLoaded(
            f"agent {name!r} ({source} {target}) is a {type(found).__name__}, not an async "
            "callable taking a context"
        )
    return found  # type: ignore[return-value]


def _from_entry_point(point: EntryPoint) -> Agent:
    if not NAME.fullmatch(point.name) or not TARGET.fullmatch(point.value.replace(" ", "")):
        raise AgentNotLoaded(
            f"entry point {point.name!r} = {point.value!r} in group {ENTRY_POINT_GROUP!r}: "
            "expected a name and module:callable"
        )
    return load_target(point.name, point.value.replace(" ", ""), "entry point")


def load_agents(
    builtin: dict[str, Agent], specs: Iterable[str], *, installed: bool = True
) -> dict[str, Agent]:
    """The agents a worker runs, by name: ``builtin``, then every entry point of the group
    ``agentboard.agents`` (when ``installed``), then ``specs`` from the command line."""
    agents = dict(builtin)
    if installed:
        for point in entry_points(group=ENTRY_POINT_GROUP):
            agents[point.name] = _from_entry_point(point)
    for spec in specs:
        name, target = parse_spec(spec)
        agents[name] = load_target(name, target, "--agent")
    return agents
