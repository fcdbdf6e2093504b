"""Checking an export in segments, side by side, and joining what they found.

A large export is cut at line breaks into one segment per CPU; a worker process checks
each (``check_segment``); ``join`` then takes the segments in order and judges what
links across their seams: ``seq`` and positions going on, the tenant chain, each
execution's first event in a segment against its last one before, the key records. A
small export is one segment, checked in this process and joined the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from projections.audit.checks import (
    BROKEN_TENANT_CHAIN,
    GENESIS,
    LineChecker,
    Segment,
    check_link,
    follow_seq,
)
from projections.audit.lean import check_block

BLOCK = 8 << 20


def check_segment(
    path: str, start: int, end: int, manifest: dict[str, Any] | None, anchors: dict[int, str],
    csv_format: bool, digest: Any = None, key_anchors: dict[int, str] | None = None,
) -> Segment:  # fmt: skip
    """Check the lines in bytes ``start`` to ``end`` of the file (line numbers in what it
    returns count from the segment's first line, 1); feed its bytes to ``digest``."""
    checker = LineChecker(manifest, anchors, key_anchors)
    number = 0
    with Path(path).open("rb") as stream:
        for lines, complete in _blocks(stream, start, end, digest):
            if not complete:  # the file's last bytes, without a line break
                number += 1
                checker.line(number, lines[0])
            elif csv_format:
                for line in lines:
                    number += 1
                    if start > 0 or number > 1:  # the header is the file's first line
                        checker.csv_line(number, line + b"\n")
            else:
                number = check_block(checker, lines, number)
    return checker.summary(number)


def _blocks(
    stream: Any, start: int, end: int, digest: Any = None
) -> Iterator[tuple[list[bytes], bool]]:
    carry, offset = b"", start
    stream.seek(start)
    while offset < end:
        block = stream.read(min(BLOCK, end - offset))
        if not block:
            break
        offset += len(block)
        if digest is not None:
            digest.update(block)
        lines = (carry + block).split(b"\n")
        carry = lines.pop()
        yield lines, True
    if carry:
        yield [carry], False


@dataclass
class Joined:
    """The whole file, once its segments are joined."""

    events: int = 0
    keys: int = 0
    lines: int = 0
    first_position: int | None = None
    last_position: int = 0
    tenant_hash: bytes | None = None
    key_hash: bytes | None = None
    anchored: set[int] = field(default_factory=set)
    key_seqs: set[int] = field(default_factory=set)


def join(segments: list[Segment], manifest: dict[str, Any] | None, verdict: Any) -> Joined:
    """Judge each segment's seams against everything before it; report its problems
    (to ``verdict``) with line numbers of the whole file."""
    whole, report = Joined(), verdict.report
    after = manifest["range"]["after"] if manifest else 0
    keys_bounded = bool(manifest and manifest["filters"].get("from"))
    seq = 0
    if manifest and manifest["complete"]:
        whole.tenant_hash = str(manifest["tenant_chain"]["start"]).encode()
    exits: dict[bytes, tuple[int, bytes, int]] = {}
    offset = 0
    for segment in segments:

        def at(line: int | None, offset: int = offset) -> int | None:
            return None if line is None else line + offset

        for line, position, message in segment.problems:
            report(at(line), position, message)
        verdict.problem_count += segment.problem_count - len(segment.problems)  # not listed
        if segment.start_seq is not None and segment.first_line is not None:
            seq = follow_seq(report, at(segment.first_line), None, seq, segment.start_seq)
        seq = max(seq, segment.end_seq)
        if segment.first_position is not None:
            if segment.first_position <= whole.last_position:
                report(at(segment.first_event_line), segment.first_position,
                       f"out of order: comes after position {whole.last_position}")  # fmt: skip
            whole.last_position = max(whole.last_position, segment.last_position)
            whole.first_position = whole.first_position or segment.first_position
        if segment.start_tenant_prev is not None and whole.tenant_hash is not None:
            if segment.start_tenant_prev != whole.tenant_hash:
                report(at(segment.first_event_line), segment.first_position, BROKEN_TENANT_CHAIN)
            whole.tenant_hash = segment.end_tenant_hash
        for execution, (version, prev, line, position) in segment.entries.items():
            before = exits.get(execution)
            if before is not None:
                check_link(report, at(line), position, execution, version, prev, before)
            elif version == 1 and prev != GENESIS:
                report(at(line), position, "version 1 must start its chain from zeros")
            elif version > 1 and after == 0:
                report(at(line), position, f"execution {execution.decode()} starts at version "
                       f"{version}: its events 1 to {version - 1} are missing")  # fmt: skip
        exits.update(segment.exits)
        _join_keys(whole, segment, report, at, keys_bounded)
        whole.events += segment.events
        whole.keys += segment.keys
        whole.anchored |= segment.anchored
        whole.key_seqs |= segment.key_seqs
        offset += segment.lines
    whole.lines = offset
    return whole


def _join_keys(whole: Joined, segment: Segment, report: Any, at: Any, bounded: bool) -> None:
    if whole.key_hash is not None and segment.first_event_line is not None:
        report(at(segment.first_event_line), segment.first_position,
               "an event line after the key lines: moved")  # fmt: skip
    if segment.key_entry is not None:
        prev, line = segment.key_entry
        if whole.key_hash is None and prev != GENESIS and not bounded:
            report(at(line), None, "the first key record does not start its chain")
        elif whole.key_hash is not None and prev != whole.key_hash:
            report(at(line), None, "a key record does not link to the key record before it: "
                   "one is missing or was changed")  # fmt: skip
    if segment.key_hash is not None:
        whole.key_hash = segment.key_hash
