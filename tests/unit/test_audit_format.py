"""The audit export's format, without I/O: records are JSON whatever the names hold,
hashes cover what they claim, and signatures tell a wrong key from a changed manifest."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.audit import format as fmt
from projections.audit import lean
from projections.audit.verify import malformed

UUID_TEXT = "6f1c2b1e-0000-4000-8000-000000000001"
STATE = b'{"timestamp":{"_type_":"datetime_iso","_data_":"2025-01-02T03:04:05.000006+00:00"}}'
names = st.text(min_size=1, max_size=40)  # any characters: quotes, control, non-ASCII


@given(tenant=names, agent=names, topic=names, actor_id=names)
def test_a_record_is_json_and_says_what_it_was_given(
    tenant: str, agent: str, topic: str, actor_id: str
) -> None:
    actor = fmt.json_text({"kind": "user", "id": actor_id})
    record = fmt.event_record(
        7, UUID_TEXT, 3, fmt.GENESIS, tenant, agent, topic, "2025-01-02T03:04:05.000006Z",
        actor, STATE,
    )  # fmt: skip
    line = record + fmt.event_suffix(hashlib.sha256(record).hexdigest(), fmt.GENESIS, "1" * 64, 9)
    parsed = json.loads(line)
    assert (parsed["tenant"], parsed["agent_id"], parsed["topic"]) == (tenant, agent, topic)
    assert parsed["event_type"] == fmt.event_type_of(topic)
    assert parsed["actor"] == {"kind": "user", "id": actor_id}
    assert parsed["data"] == json.loads(STATE)
    assert line.rpartition(fmt.HASH_FIELD)[0] == record
    assert b"\n" not in line[:-1]


def test_the_fixed_width_fields_come_first() -> None:
    record = fmt.event_record(
        123, UUID_TEXT, 4, "a" * 64, "default", "agent-1", "agentboard.execution.Created.v1",
        "2025-01-02T03:04:05.000006Z", "null", b"{}",
    )  # fmt: skip
    assert record[17:53] == UUID_TEXT.encode()
    assert record[68:132] == b"a" * 64
    assert b',"position":123,"version":4,"event_type":"Created",' in record


def test_what_writes_a_line_and_what_reads_it_follow_one_layout() -> None:
    """The patterns and the lean path's offsets are derived from ``layout``, as the
    writers are: each reads back exactly what was written."""
    record = fmt.event_record(
        123, UUID_TEXT, 4, "a" * 64, 'dé"fault', "agent-1", "agentboard.execution.Created.v1",
        "2025-01-02T03:04:05.000006Z", "null", b"{}",
    )  # fmt: skip
    tail = fmt.event_suffix("b" * 64, "c" * 64, "d" * 64, 42)
    line = record + tail
    head = fmt.EVENT_HEAD.match(line)
    assert head is not None
    assert head.groups() == (
        UUID_TEXT.encode(), b"a" * 64, fmt.json_name('dé"fault').encode(), b'"agent-1"',
        b"123", b"4",
    )  # fmt: skip
    chain = fmt.EVENT_TAIL.match(line, len(record))
    assert chain is not None
    assert chain.groups() == (b"b" * 64, b"c" * 64, b"d" * 64, b"42")
    execution, prev = lean.EXECUTION_AT, lean.PREV_AT
    assert line[execution : lean.EXECUTION_END] == UUID_TEXT.encode()
    assert line[prev : lean.PREV_END] == b"a" * 64
    assert tail[lean.TENANT_HASH_AT : lean.TENANT_HASH_END] == b"d" * 64
    assert tail[lean.SEQ_AT : -2] == b"42"

    key = fmt.key_record(7, "e" * 64, "default", "k1", "viewer", "null", "2025-01-02T03:04:05Z",
                         queues=["gpu"], revoked=True) + fmt.key_suffix("f" * 64, 43)  # fmt: skip
    assert key.startswith(fmt.KEY_START)
    key_head = fmt.KEY_HEAD.match(key)
    assert key_head is not None
    assert key_head.groups() == (b"7", b"e" * 64, b'"default"')
    key_tail = fmt.KEY_TAIL.match(key, key.rfind(fmt.HASH_FIELD))
    assert key_tail is not None
    assert key_tail.groups() == (b"f" * 64, b"43")
    assert json.loads(key)["queues"] == ["gpu"]
    assert json.loads(key)["revoked"] is True
    assert fmt.manifest_line({"b": 1, "a": [2]}) == b'{"manifest":{"a":[2],"b":1}}\n'


def test_event_types_are_the_part_before_the_last_dot() -> None:
    assert fmt.event_type_of("agentboard.execution.Created.v1") == "Created"
    assert fmt.event_type_of("Created") == "Created"
    assert fmt.event_type_of("a.b") == "a"


def test_times_are_utc_with_microseconds() -> None:
    paris = timezone(timedelta(hours=1))
    assert fmt.utc_text(datetime(2025, 1, 2, 4, 4, 5, tzinfo=paris)) == (
        "2025-01-02T03:04:05.000000Z"
    )
    assert fmt.utc_text(datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)).endswith(".000006Z")


def test_the_tenant_chain_links_raw_digests() -> None:
    previous, event = "00" * 32, "ab" * 32
    expected = hashlib.sha256(bytes(32) + bytes.fromhex(event)).hexdigest()
    assert fmt.tenant_link(previous, event) == expected


def test_a_signature_tells_a_wrong_key_from_a_changed_manifest() -> None:
    key = b"k" * 32
    signed = fmt.sign({"scheme": fmt.SCHEME, "events": {"count": 3}}, key)
    assert fmt.signature_matches(signed, key)
    assert not fmt.signature_matches(signed, b"other key" * 4)
    assert signed["signature"]["key_id"] == fmt.key_id_of(key) != fmt.key_id_of(b"x" * 32)
    changed = {**signed, "events": {"count": 2}}
    assert not fmt.signature_matches(changed, key)
    line = json.loads(fmt.manifest_line(signed))
    assert fmt.signature_matches(line["manifest"], key)


def test_numbers_are_read_back_only_up_to_the_width_of_a_bigint() -> None:
    record = fmt.event_record(
        7, UUID_TEXT, 3, fmt.GENESIS, "default", "agent-1", "agentboard.execution.Created.v1",
        "2025-01-02T03:04:05.000006Z", "null", STATE,
    )  # fmt: skip
    line = record + fmt.event_suffix(hashlib.sha256(record).hexdigest(), fmt.GENESIS, "1" * 64, 9)
    assert fmt.EVENT_HEAD.match(line) is not None
    wide = line.replace(b'"position":7,', b'"position":' + b"9" * 20 + b",")
    assert fmt.EVENT_HEAD.match(wide) is None  # int() of 5,000 digits would raise


def test_a_json_string_that_is_not_one_raises_value_error() -> None:
    assert fmt.json_string(b'"d\\u00e9faut"') == "défaut"
    for quoted in (b'"def\\qault"', b'"d\xffault"', b'"d\xff\\"ault"'):
        with pytest.raises(ValueError):
            fmt.json_string(quoted)


MANIFEST: dict[str, Any] = {
    "scheme": fmt.SCHEME, "tenant": "default", "complete": True,
    "filters": {"from": None, "to": None, "execution": None, "agent": None},
    "range": {"after": 0, "through": 9},
    "events": {"count": 0, "first_position": None, "last_position": None},
    "keys": None, "tenant_chain": {"start": fmt.GENESIS, "head": fmt.GENESIS},
    "lines_sha256": "0" * 64,
    "signature": {"algorithm": fmt.SIGNATURE_ALGORITHM, "key_id": "k", "value": "v"},
}  # fmt: skip


def test_the_manifest_s_shape_names_the_field_that_is_wrong() -> None:
    assert malformed(MANIFEST) is None
    assert malformed({**MANIFEST, "keys": {"count": 2, "last_hash": None}}) is None
    assert malformed([MANIFEST]) == "it is not an object"
    for change, message in (
        ({"keys": "x"}, '"keys" must be an object or null'),
        ({"keys": {"last_hash": None}}, '"keys.count" is missing'),
        ({"tenant_chain": {"start": fmt.GENESIS}}, '"tenant_chain.head" is missing'),
        ({"filters": {**MANIFEST["filters"], "agent": ["a"]}},
         '"filters.agent" must be a string or null'),
        ({"range": {"after": True, "through": 9}}, '"range.after" must be a whole number'),
        ({"complete": 1}, '"complete" must be true or false'),
    ):  # fmt: skip
        assert malformed({**MANIFEST, **change}) == message
