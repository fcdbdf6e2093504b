"""What a stored event is: the class of its topic, its state decoded, its fields checked.

``KNOWN_EVENTS`` maps every topic the domain has ever written to its event class;
``problem_with`` says why a decoded event's fields do not fit that class.

``EventDecoder`` turns a stored event into the domain event the application's mapper
would make, at a third of the cost.

eventsourcing's mapper parses a stored state with the standard ``json`` module and an
``object_hook`` called for every JSON object (to restore ``{"_type_", "_data_"}``
envelopes: datetimes, UUIDs, decimals). A rebuild decodes every stored event, and that
was 40 % of the board's rebuild. Here msgspec parses the state (four times faster), and
the envelopes are restored afterwards: in one step when the state's only envelope is its
``timestamp`` (most events), else by walking the state as the hook would have.

The result is the mapper's, object for object (a test compares them over a stored log).
Whatever this path does not handle the same way — a state msgspec refuses (``NaN``, a
lone surrogate), an unknown envelope, a class version to upcast, a cipher or
compressor — goes to the mapper, which decodes it or raises its own error, as before.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from datetime import datetime
from operator import itemgetter
from typing import Any, Union
from uuid import UUID

import msgspec
from eventsourcing.domain import CanMutateAggregate
from eventsourcing.persistence import (
    JSONTranscoder,
    Mapper,
    Notification,
    Transcoding,
    find_id_convertor,
)

from domain.execution.aggregate import Execution


def topic_of(event_class: type[Any]) -> str:
    topic: str = event_class.TOPIC
    return topic


def _event_classes() -> dict[str, type[Any]]:
    return {
        topic_of(cls): cls
        for cls in vars(Execution).values()
        if isinstance(cls, type)
        and issubclass(cls, CanMutateAggregate)
        and getattr(cls, "TOPIC", None)
    }


KNOWN_EVENTS: dict[str, type[Any]] = _event_classes()
"""Every topic the domain has ever written, mapped to its event class."""


def _accepts(annotation: Any) -> tuple[type, ...] | None:
    """The Python types a decoded field may hold, or None when anything goes."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        accepted: list[type] = []
        for member in typing.get_args(annotation):
            member_types = _accepts(member)
            if member_types is None:
                return None
            accepted.extend(member_types)
        return tuple(accepted)
    if annotation is type(None):
        return (type(None),)
    if annotation is float:
        return (int, float)
    if annotation in (str, int, bool, datetime, UUID):
        return (annotation,)
    if origin in (dict, list) or annotation in (dict, list):
        return (origin or annotation,)
    return None  # Any, TypeVars, anything richer: not checked here


_SET_BY_THE_MAPPER = {"originator_id", "originator_version"}


def _field_checks(event_class: type[Any]) -> dict[str, tuple[type, ...] | None]:
    hints = typing.get_type_hints(event_class)
    return {
        name: _accepts(annotation)
        for name, annotation in hints.items()
        if name not in _SET_BY_THE_MAPPER and typing.get_origin(annotation) is not typing.ClassVar
    }


def _values_of(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A function giving the values of ``names`` in a dict, as a tuple (even of one)."""
    if len(names) == 1:
        name = names[0]
        return lambda state: (state[name],)
    return itemgetter(*names) if names else (lambda state: ())


def _optional(event_class: type[Any]) -> frozenset[str]:
    """Fields added to an event after some were stored: they have a default, and events
    stored before them load without them."""
    return frozenset(
        field.name for field in dataclasses.fields(event_class)
        if field.default is not dataclasses.MISSING
        or field.default_factory is not dataclasses.MISSING
    )  # fmt: skip


CREATED = topic_of(Execution.Created)
FIELD_CHECKS = {topic: _field_checks(cls) for topic, cls in KNOWN_EVENTS.items()}
_OPTIONAL = {topic: _optional(cls) for topic, cls in KNOWN_EVENTS.items()}
_REQUIRED = {topic: frozenset(checks) - _OPTIONAL[topic] for topic, checks in FIELD_CHECKS.items()}
_TYPED = {
    topic: tuple(
        (name, accepted)
        for name, accepted in checks.items()
        if accepted is not None and name not in _OPTIONAL[topic]
    )
    for topic, checks in FIELD_CHECKS.items()
}
_TYPED_OPTIONAL = {
    topic: tuple(
        (name, accepted)
        for name, accepted in checks.items()
        if accepted is not None and name in _OPTIONAL[topic]
    )
    for topic, checks in FIELD_CHECKS.items()
}
# The same checks, as a getter of the values and a tuple of their types: all fields of an
# event are checked at once by ``map(isinstance, ...)``, in C (a rebuild checks them all).
_TYPED_AT_ONCE = {
    topic: (_values_of([name for name, _ in typed]), [accepted for _, accepted in typed])
    for topic, typed in _TYPED.items()
}


def problem_with(topic: str, state: dict[str, Any]) -> str | None:
    """Why a decoded event's fields do not fit its class, or None when they do."""
    if not state.keys() >= _REQUIRED[topic]:
        missing = sorted(_REQUIRED[topic] - state.keys())
        return f"field {missing[0]!r} is missing"
    for name, accepted in _TYPED_OPTIONAL[topic]:
        if name in state and not isinstance(state[name], accepted):
            return f"field {name!r} holds {type(state[name]).__name__}"
    values, types_ = _TYPED_AT_ONCE[topic]
    if all(map(isinstance, values(state), types_)):
        return None
    for name, accepted in _TYPED[topic]:
        if not isinstance(state[name], accepted):
            return f"field {name!r} holds {type(state[name]).__name__}"
    return None


TYPE, DATA = "_type_", "_data_"
_ONE_ENVELOPE = b'"_type_"'
Stored = tuple[int, UUID, int, str, bytes]
"""A stored event as the log reader fetches it: position, originator id, version, topic,
state."""


class _Fallback(Exception):
    """This state is for the mapper to decode."""


class EventDecoder:
    def __init__(self, mapper: Mapper[UUID], classes: dict[str, type[Any]] | None = None) -> None:
        self.mapper = mapper
        transcoder = mapper.transcoder
        plain = isinstance(transcoder, JSONTranscoder) and not mapper.cipher
        self.names: dict[str, Transcoding] = (
            transcoder.names if plain and not mapper.compressor else {}  # type: ignore[attr-defined]
        )
        self.stamp = self.names.get("datetime_iso")
        self.json = msgspec.json.Decoder()
        self.classes = {
            topic: (cls, find_id_convertor(cls, UUID))  # type: ignore[arg-type]
            for topic, cls in (KNOWN_EVENTS if classes is None else classes).items()
            if getattr(cls, "class_version", 1) == 1
        }

    def decode(self, stored: Stored) -> Any:
        """The domain event; raises whatever the mapper raises for a state it refuses."""
        _, originator_id, version, topic, state = stored
        found = self.classes.get(topic)
        if found is None or self.stamp is None or type(originator_id) is not UUID:
            return self._by_mapper(stored)
        try:
            event_state = self._state(state)
        except Exception:  # whatever it is, the mapper decides
            return self._by_mapper(stored)
        cls, id_convertor = found
        event_state["originator_id"] = id_convertor(originator_id)
        event_state["originator_version"] = version
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", event_state)
        return event

    def _state(self, state: bytes) -> dict[str, Any]:
        decoded = self.json.decode(state)
        if type(decoded) is not dict or "class_version" in decoded:
            raise _Fallback
        stamp = decoded.get("timestamp")
        if (
            type(stamp) is dict
            and len(stamp) == 2
            and stamp.get(TYPE) == "datetime_iso"
            and type(text := stamp.get(DATA)) is str
            and state.count(_ONE_ENVELOPE) == 1  # so no other envelope anywhere
        ):
            decoded["timestamp"] = self.stamp.decode(text)  # type: ignore[union-attr]
            return decoded
        restored = self._restore(decoded)
        if type(restored) is not dict:
            raise _Fallback  # the whole state was one envelope
        return restored

    def _restore(self, value: Any) -> Any:
        """What the mapper's ``object_hook`` makes of ``value``, bottom up."""
        if type(value) is list:
            for index, item in enumerate(value):
                if type(item) is dict or type(item) is list:
                    value[index] = self._restore(item)
            return value
        for key, item in value.items():
            if type(item) is dict or type(item) is list:
                value[key] = self._restore(item)
        if len(value) == 2 and TYPE in value and DATA in value:
            return self.names[value[TYPE]].decode(value[DATA])
        return value

    def _by_mapper(self, stored: Stored) -> Any:
        position, originator_id, version, topic, state = stored
        notification = Notification(
            id=position,
            originator_id=originator_id,
            originator_version=version,
            topic=topic,
            state=state,
        )
        return self.mapper.to_domain_event(notification)
