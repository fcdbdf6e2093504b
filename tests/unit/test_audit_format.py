"""The audit export's format, without I/O: records are JSON whatever the names hold,
hashes cover what they claim, and signatures tell a wrong key from a changed manifest."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from projections import audit_format as fmt

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
