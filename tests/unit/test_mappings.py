"""Every map is complete (as Infrahub's test_mappings.py checks its subject map): a command,
a worker's report or an event added without its mapping fails here, not in production.

- every command has a handler (domain/execution/handlers.py), or is one of the two the
  service handles itself;
- every worker's report is on the wire map (domain/execution/wire.py) and comes back from
  its encoding as it went in, alone and in a batch;
- every event of the aggregate is registered on it, and each view either handles it or
  declares that it ignores it.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from uuid import UUID

import msgspec
import pytest

from domain.execution import commands as c
from domain.execution import events, handlers, wire
from domain.execution.aggregate import Execution
from domain.execution.events import ExecutionEvent
from domain.execution.shape import CREATED_FIELDS, ExecutionFields
from projections.audit import chain
from projections.audit.chain_view import Head
from projections.views import card, intervals, tool_calls


def declared_in(module: types.ModuleType, base: type[Any]) -> set[type[Any]]:
    """The subclasses of ``base`` that ``module`` declares (each a class its code names)."""
    return {
        value for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, base) and value is not base
    }  # fmt: skip


COMMANDS = declared_in(c, c.Command)
EVENTS = declared_in(events, ExecutionEvent)
ON_THE_SERVICE = {c.CreateExecution, c.Within}
"""Handled by ExecutionService itself: a create has no execution to call yet, and Within
scopes another command."""


# -- commands ----------------------------------------------------------------------


def test_every_command_has_a_handler() -> None:
    assert set(handlers.HANDLERS) == COMMANDS - ON_THE_SERVICE
    assert not ON_THE_SERVICE & set(handlers.HANDLERS)


@pytest.mark.parametrize("command", sorted(handlers.HANDLERS, key=lambda t: t.__name__))
def test_each_handler_takes_the_command_it_is_mapped_to(command: type[c.Command]) -> None:
    handler = handlers.HANDLERS[command]
    assert typing.get_type_hints(handler)["command"] is command


def is_operator_action(command: type[c.Command]) -> bool:
    """An operator action names the person who gave it; a worker's report does not (it
    carries the lease it holds, or claims one)."""
    return "actor" in {field.name for field in dataclasses.fields(command)}


WORKER_REPORTS = {
    command for command in COMMANDS - ON_THE_SERVICE if not is_operator_action(command)
}


def test_every_worker_report_is_on_the_wire_and_nothing_else_is() -> None:
    assert set(wire.WORKER_COMMANDS.values()) == WORKER_REPORTS
    assert len(wire.NAMES) == len(wire.WORKER_COMMANDS)  # one name per command
    for command in WORKER_REPORTS:
        names = {field.name for field in dataclasses.fields(command)}
        assert names & {"lease", "claim_token"}, f"{command.__name__} holds no lease"


def example(annotation: Any) -> Any:
    """A value of ``annotation`` unlike any default, so a field lost on the way shows."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return example(next(a for a in typing.get_args(annotation) if a is not type(None)))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return list(annotation)[-1]
    simple: dict[Any, Any] = {
        UUID: UUID(int=42), str: "text ✓", int: 7, float: 2.5, bool: True,
        datetime: datetime(2030, 1, 2, tzinfo=UTC), Any: {"any": [1, "json", None]},
    }  # fmt: skip
    if annotation in simple:
        return simple[annotation]
    if typing.get_origin(annotation) is dict:
        return {"key": example(typing.get_args(annotation)[1])}
    raise AssertionError(f"no example of {annotation!r}: teach example() this type")


def instance_of(command: type[c.Command]) -> c.Command:
    hints = typing.get_type_hints(command)
    return command(**{f.name: example(hints[f.name]) for f in dataclasses.fields(command)})


@pytest.mark.parametrize("command", sorted(WORKER_REPORTS, key=lambda t: t.__name__))
def test_each_worker_report_comes_back_from_the_wire_as_it_went(
    command: type[c.Command],
) -> None:
    sent = instance_of(command)
    name, payload = wire.encode_command(sent)
    json.loads(payload)  # plain JSON, as a worker in any language would send it

    assert wire.decode_command(name, payload) == sent


def test_a_batch_of_every_worker_report_comes_back_in_order() -> None:
    sent = [instance_of(command) for command in sorted(WORKER_REPORTS, key=lambda t: t.__name__)]

    assert wire.decode_batch(wire.encode_batch(sent)) == sent


# -- events ------------------------------------------------------------------------


def test_every_event_is_registered_on_the_aggregate_with_its_topic() -> None:
    on_the_aggregate = {
        value for value in vars(Execution).values()
        if isinstance(value, type) and issubclass(value, ExecutionEvent)
    }  # fmt: skip
    assert on_the_aggregate == EVENTS | {ExecutionEvent}
    for event in EVENTS:
        assert f"agentboard.execution.{event.__name__}.v1" == event.TOPIC
        assert getattr(Execution, event.__name__) is event


def test_the_shape_takes_from_created_only_fields_of_the_same_type() -> None:
    shape, created = typing.get_type_hints(ExecutionFields), typing.get_type_hints(events.Created)
    assert CREATED_FIELDS
    assert all(shape[name] == created[name] for name in CREATED_FIELDS)


def covers(view: str, handled: set[type[Any]], ignored: set[type[Any]]) -> None:
    assert not handled & ignored, f"{view} both handles and ignores {handled & ignored}"
    missing = EVENTS - handled - ignored
    assert not missing, f"{view} neither handles nor ignores {sorted(e.__name__ for e in missing)}"


def test_the_board_card_handles_or_ignores_every_event() -> None:
    covers("the card", {events.Created, *card.EVOLVE}, set(card.CLOCK_ONLY))


def test_the_status_intervals_handle_or_ignore_every_event() -> None:
    handled = {events.Created, *intervals.STATUS_AFTER}
    covers("status_intervals", handled, set(intervals.IGNORED))
    assert intervals.StatusIntervalsProjection.decoded == {e.TOPIC for e in handled}


def test_the_tool_calls_handle_or_ignore_every_event() -> None:
    covers("tool_calls", set(tool_calls.HANDLED), set(tool_calls.IGNORED))
    assert tool_calls.ToolCallsProjection.decoded == {e.TOPIC for e in tool_calls.HANDLED}


def test_the_audit_chain_names_who_did_every_event() -> None:
    """The chain hashes every stored event whatever it is; what it must know of each kind
    is who did it, which its export line shows."""
    head = Head("acme", "reviewer", "worker-1", 1, bytes(32))
    named = set()
    for event in EVENTS:
        fields = typing.get_type_hints(event)
        state = chain.Fields(
            created_by={"kind": "user", "id": "alice"} if "created_by" in fields else None,
            actor={"kind": "user", "id": "bob"} if "actor" in fields else None,
            lease=1 if "lease" in fields else msgspec.UNSET,
        )
        if chain._actor(event.TOPIC, state, head) != "null":
            named.add(event)

    covers("the audit chain", named, set(chain.UNATTRIBUTED))
