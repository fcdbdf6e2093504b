"""The line-by-line checks of ``audit verify`` (see ``verify`` for the whole).

A ``LineChecker`` checks the lines of one *segment* of an export: the whole file, or
one of the parts that worker processes check side by side. Each event line is checked
for its hash, its place (``seq``, position, range, filters), its execution's chain and
the tenant chain. What links across the segment's start (the first ``seq``, the tenant
chain's start, each execution's first event in the segment, the first key record) is
recorded in the segment's summary and judged by ``segments.join``, which knows
what came before.

``lean.check_block`` runs a lean path over lines that pass everything; a line
that fails anything comes here, to ``line()``, which checks it again slowly and says
exactly what is wrong with it.
"""

from __future__ import annotations

import binascii
import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from projections.audit import format as fmt

GENESIS = fmt.GENESIS.encode()
UNKNOWN = b""  # a chain value the segment has not seen yet
MAX_LISTED = 50
NUMBER = re.compile(r"[0-9]{1,19}")
HEX = re.compile(r"[0-9a-f]{64}")

Entry = tuple[int, bytes, int, int]  # version, prev_hash, line, position


@dataclass
class Segment:
    """What a segment found, and what it needs from the segments before it."""

    lines: int = 0
    events: int = 0
    keys: int = 0
    first_position: int | None = None
    last_position: int = 0
    first_line: int | None = None  # the first line with a seq
    start_seq: int | None = None
    end_seq: int = 0
    first_event_line: int | None = None
    start_tenant_prev: bytes | None = None
    end_tenant_hash: bytes | None = None
    entries: dict[bytes, Entry] = field(default_factory=dict)
    exits: dict[bytes, tuple[int, bytes, int]] = field(default_factory=dict)  # version, hash,
    # position of each execution's last event in the segment
    key_entry: tuple[bytes, int] | None = None
    key_hash: bytes | None = None
    has_keys: bool = False
    anchored: set[int] = field(default_factory=set)
    key_seqs: set[int] = field(default_factory=set)  # of the key records seen (they are few)
    problems: list[tuple[int | None, int | None, str]] = field(default_factory=list)
    problem_count: int = 0

    def report(self, line: int | None, position: int | None, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append((line, position, message))


class LineChecker:
    def __init__(
        self, manifest: dict[str, Any] | None, anchors: dict[int, str],
        key_anchors: dict[int, str] | None = None,
    ) -> None:  # fmt: skip
        self.found = Segment()
        self.report = self.found.report
        self.anchors = anchors
        self.key_anchors = key_anchors or {}
        self.seq = -1  # unknown until the segment's first line
        self.position = 0
        self.events = self.keys = 0
        self.first: int | None = None
        self.chains: dict[bytes, tuple[int, bytes, int]] = {}  # version, hash, position
        self.entries = self.found.entries
        self.tenant_hash: bytes | None = None  # followed line after line when not None
        self.key_hash: bytes | None = None
        self.seen_keys = False
        self.tenant = self.execution = self.agent = None
        self.after, self.through = 0, 1 << 62
        if manifest:
            filters = manifest["filters"]
            self.tenant = fmt.json_name(manifest["tenant"]).encode()
            if filters.get("execution"):
                self.execution = str(filters["execution"]).encode()
            if filters.get("agent"):
                self.agent = fmt.json_name(filters["agent"]).encode()
            self.after, self.through = manifest["range"]["after"], manifest["range"]["through"]
            self.tenant_hash = UNKNOWN if manifest["complete"] else None

    def summary(self, lines: int) -> Segment:
        found = self.found
        found.lines, found.events, found.keys = lines, self.events, self.keys
        found.first_position, found.last_position = self.first, self.position
        found.end_seq, found.end_tenant_hash = max(self.seq, 0), self.tenant_hash
        found.exits, found.key_hash, found.has_keys = self.chains, self.key_hash, self.seen_keys
        return found

    def started(self, number: int, seq: int) -> bool:
        """The segment's first line: its seq is judged by the join."""
        if self.seq != -1:
            return False
        self.found.first_line, self.found.start_seq, self.seq = number, seq, seq
        return True

    def line(self, number: int, line: bytes) -> None:
        head = fmt.EVENT_HEAD.match(line)
        split = line.rfind(fmt.HASH_FIELD)
        tail = fmt.EVENT_TAIL.match(line, split) if head and split > 0 else None
        if head and tail:
            self.event(
                number, int(head[5]), head[1], int(head[6]), head[2], head[3], head[4],
                line[:split], tail[1], tail[2], tail[3], int(tail[4]), line,
            )  # fmt: skip
        elif line.startswith(fmt.KEY_START):
            self.key(number, line)
        else:
            self.unreadable(number, line)

    def event(
        self, number: int, position: int, execution: bytes, version: int, prev: bytes,
        tenant: bytes, agent: bytes, record: bytes, claimed: bytes, tenant_prev: bytes,
        tenant_hash: bytes, seq: int, line: bytes,
    ) -> None:  # fmt: skip
        report = self.report
        if binascii.hexlify(hashlib.sha256(record).digest()) != claimed:
            report(number, position, edited(line))
        self.check_seq(number, position, seq)
        if self.seen_keys:
            report(number, position, "an event line after the key lines: moved")
        if position <= self.position:
            report(number, position, f"out of order: comes after position {self.position}")
        self.position = max(self.position, position)
        self.events += 1
        if self.first is None:
            self.first, self.found.first_event_line = position, number
        self.in_scope(number, position, execution, tenant, agent)
        self.execution_chain(number, position, execution, version, prev, claimed)
        link = hashlib.sha256(binascii.unhexlify(tenant_prev) + binascii.unhexlify(claimed))
        if binascii.hexlify(link.digest()) != tenant_hash:
            report(number, position, "edited: its tenant_hash does not follow from its hash")
        if self.tenant_hash == UNKNOWN:
            self.found.start_tenant_prev = tenant_prev
        elif self.tenant_hash is not None and tenant_prev != self.tenant_hash:
            report(number, position, BROKEN_TENANT_CHAIN)
        if self.tenant_hash is not None:
            self.tenant_hash = tenant_hash
        if position in self.anchors:
            self.found.anchored.add(position)
            if tenant_hash.decode() != self.anchors[position].lower():
                report(
                    number, position,
                    "differs from the published anchor: the stored history was rewritten",
                )  # fmt: skip

    def check_seq(self, number: int, position: int | None, seq: int) -> None:
        if not self.started(number, seq):
            self.seq = follow_seq(self.report, number, position, self.seq, seq)

    def in_scope(
        self, number: int, position: int, execution: bytes, tenant: bytes, agent: bytes
    ) -> None:
        for expected, found, what in (
            (self.tenant, tenant, "tenant"), (self.execution, execution, "execution"),
            (self.agent, agent, "agent"),
        ):  # fmt: skip
            if expected is not None and found != expected:
                self.report(number, position, f"of another {what} than the export's: inserted")
        if not self.after < position <= self.through:
            self.report(number, position, "outside the export's range of positions: inserted")

    def execution_chain(
        self, number: int, position: int, execution: bytes, version: int, prev: bytes,
        claimed: bytes,
    ) -> None:  # fmt: skip
        before = self.chains.get(execution)
        if before is None:
            self.entries.setdefault(execution, (version, prev, number, position))
        else:
            check_link(self.report, number, position, execution, version, prev, before)
        self.chains[execution] = (version, claimed, position)

    def key(self, number: int, line: bytes) -> None:
        head = fmt.KEY_HEAD.match(line)
        split = line.rfind(fmt.HASH_FIELD)
        tail = fmt.KEY_TAIL.match(line, split) if head and split > 0 else None
        if not head or not tail:
            self.unreadable(number, line)
            return
        self.seen_keys = True
        self.keys += 1
        key_seq = int(head[1])
        claimed, name = tail[1], f"key record {key_seq}"
        self.found.key_seqs.add(key_seq)
        anchored = self.key_anchors.get(key_seq)
        if anchored is not None and claimed.decode() != anchored:
            self.report(number, None, f"{name} differs from the published anchor: the key "
                        "records were rewritten")  # fmt: skip
        if not line.endswith(b"\n"):
            self.report(number, None, "truncated: the file ends in the middle of this line")
        if binascii.hexlify(hashlib.sha256(line[:split]).digest()) != claimed:
            self.report(number, None, f"{name}: {edited(line)}")
        self.check_seq(number, None, int(tail[2]))
        try:
            tenant = fmt.json_name(fmt.json_string(head[3])).encode()
        except ValueError:
            self.report(number, None, f"{name}: its tenant is not a valid JSON string: edited")
        else:
            if self.tenant is not None and tenant != self.tenant:
                self.report(number, None, f"{name} is of another tenant: inserted")
        if self.key_hash is None:
            self.found.key_entry = (head[2], number)
        elif head[2] != self.key_hash:
            self.report(number, None, f"{name} does not link to the key record before it: "
                        "one is missing or was changed")  # fmt: skip
        self.key_hash = claimed

    def unreadable(self, number: int, line: bytes) -> None:
        near = fmt.POSITION_NEAR.search(line)
        position = int(near[1]) if near else None
        if self.seq != -1:
            self.seq += 1  # count it, so the lines after it are not reported as moved too
        if not line.endswith(b"\n"):
            self.report(number, position, "truncated: the file ends in the middle of this line")
            return
        try:
            value = json.loads(line.decode())
        except UnicodeDecodeError as error:
            self.report(number, position, not_utf8(error))
            return
        except (ValueError, RecursionError) as error:  # RecursionError: nested too deep
            self.report(number, position, f"not JSON ({error})")
            return
        if isinstance(value, dict) and "manifest" in value:
            self.report(number, None, "a manifest before the end: two exports joined?")
        else:
            self.report(number, position, "not a line of an agentboard audit export")

    def csv_line(self, number: int, line: bytes) -> None:
        """A CSV row: an event's columns are laid back out as its record."""
        try:
            row = csv_row(line)
        except UnicodeDecodeError as error:
            self.unreadable_row(number, not_utf8(error))
            return
        except csv.Error as error:
            self.unreadable_row(number, f"not a CSV row ({error})")
            return
        if len(row) != len(fmt.CSV_COLUMNS) or row[1] not in ("event", "key"):
            self.unreadable_row(number, "not a row of an agentboard audit export (CSV)")
        elif row[1] == "key":
            self.key(number, row[12].encode() + b"\n")
        else:
            (seq, _, position, execution, version, prev, tenant, agent, event_type, topic,
             timestamp, actor, data, claimed, tenant_prev, tenant_hash) = row  # fmt: skip
            if not all(NUMBER.fullmatch(text) for text in (seq, position, version)):
                self.unreadable_row(number, "seq, position or version is not a number: edited")
                return
            hashes = {"prev_hash": prev, "hash": claimed, "tenant_prev": tenant_prev,
                      "tenant_hash": tenant_hash}  # fmt: skip
            if not_hex := [name for name, value in hashes.items() if not HEX.fullmatch(value)]:
                self.check_seq(number, int(position), int(seq))
                for name in not_hex:
                    self.report(number, int(position), f"its {name} is not 64 hex digits: edited")
                return
            record = fmt.event_record(int(position), execution, int(version), prev, tenant,
                                      agent, topic, timestamp, actor, data.encode())  # fmt: skip
            if event_type != fmt.event_type_of(topic):
                self.report(number, int(position), "edited: event_type does not match its topic")
            self.event(
                number, int(position), execution.encode(), int(version), prev.encode(),
                fmt.json_name(tenant).encode(), fmt.json_name(agent).encode(), record,
                claimed.encode(), tenant_prev.encode(), tenant_hash.encode(), int(seq), record,
            )  # fmt: skip

    def unreadable_row(self, number: int, message: str) -> None:
        if self.seq != -1:
            self.seq += 1  # counted, as in unreadable()
        self.report(number, None, message)


def csv_row(line: bytes) -> list[str]:
    """One line of a CSV export as its fields. Raises ``UnicodeDecodeError`` or
    ``csv.Error``. A field may be as long as its line (a large stored state): the csv
    module's limit (128 KiB) is raised to the line's length when it is longer."""
    if len(line) > csv.field_size_limit():
        csv.field_size_limit(len(line))
    return next(csv.reader([line.decode()]), [])


BROKEN_TENANT_CHAIN = (
    "breaks the tenant chain: an event of the tenant before it is missing or was changed"
)


def follow_seq(report: Any, number: int | None, position: int | None, last: int, seq: int) -> int:
    """The seq a line must have after ``last``; returns the seq to follow on with."""
    if seq > last + 1:
        missing = seq - last - 1
        report(
            number, position,
            f"{missing} line{'s' if missing > 1 else ''} missing before it "
            f"(seq jumps from {last} to {seq}): deleted",
        )  # fmt: skip
    elif seq <= last:
        report(number, position, f"seq {seq} where {last + 1} was due: a line inserted or moved")
    return max(last, seq)


def check_link(
    report: Any, number: int | None, position: int, execution: bytes, version: int,
    prev: bytes, before: tuple[int, bytes, int],
) -> None:  # fmt: skip
    """An event against the last one of its execution seen before it."""
    last_version, last_hash, last_position = before
    name = execution.decode()
    if version <= last_version:
        report(
            number, position,
            f"version {version} of execution {name} after its version {last_version} "
            f"(position {last_position}): repeated or out of order",
        )  # fmt: skip
    elif version > last_version + 1:
        report(
            number, position,
            f"execution {name}: versions {last_version + 1} to {version - 1} are missing before it",
        )  # fmt: skip
    elif prev != last_hash:
        report(
            number, position,
            f"does not link to execution {name}'s previous event (position {last_position}): "
            "one of them was changed",
        )  # fmt: skip


def edited(line: bytes) -> str:
    try:
        line.decode()
    except UnicodeDecodeError as error:
        return not_utf8(error)
    return "edited: its content does not match its hash"


def not_utf8(error: UnicodeDecodeError) -> str:
    byte = error.object[error.start]
    return f"not valid UTF-8 (byte 0x{byte:02x} at column {error.start + 1})"
