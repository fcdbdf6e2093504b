"""The lean path of ``audit verify``: one tight loop over the lines of a block.

A line passes here only if every check passes; anything else (and each segment's first
line) goes to ``LineChecker.line``, which checks it again slowly and says what is wrong.
The record's fixed-width fields come first (``layout.EVENT``), so they are read at
fixed offsets, and so are the chain fields after the record (``layout.EVENT_CHAIN``,
counted from where the record ends). Every offset and separator below is derived from
those layouts. State lives in locals here and goes back to the checker around each
line handed to it.
"""

from __future__ import annotations

import binascii
import hashlib

from projections.audit.checks import GENESIS, LineChecker
from projections.audit.layout import EVENT, EVENT_CHAIN, LINE_END


def _bytes(*texts: str) -> tuple[bytes, ...]:
    return tuple(text.encode() for text in texts)


OPENING, PREV_HASH, TENANT, AGENT, POSITION, VERSION = _bytes(
    *(EVENT.separator(name) for name in EVENT.names[:6])
)
HASH_FIELD, TENANT_PREV, TENANT_HASH, SEQ = _bytes(*EVENT_CHAIN.separators)
EXECUTION_AT, EXECUTION_END = EVENT.span("execution_id")
PREV_AT, PREV_END = EVENT.span("prev_hash")
# after the record, counted from its end (where ``HASH_FIELD`` starts)
HASH_AT, HASH_END = EVENT_CHAIN.span("hash")
TENANT_PREV_AT, TENANT_PREV_END = EVENT_CHAIN.span("tenant_prev")
TENANT_HASH_AT, TENANT_HASH_END = EVENT_CHAIN.span("tenant_hash")
SEQ_AT = EVENT_CHAIN.offset("seq")
OFFSETS = (
    EXECUTION_AT, EXECUTION_END, PREV_AT, PREV_END, HASH_AT, HASH_END, TENANT_PREV_AT,
    TENANT_PREV_END, TENANT_HASH_AT, TENANT_HASH_END, SEQ_AT, len(POSITION), len(VERSION),
)  # fmt: skip


def check_block(checker: LineChecker, lines: list[bytes], number: int) -> int:
    """Check complete lines (without their line break), the first being line
    ``number + 1``; returns the number of the last."""
    sha256, hexlify, unhexlify = hashlib.sha256, binascii.hexlify, binascii.unhexlify
    chains, entries, anchors = checker.chains, checker.entries, checker.anchors
    execution = checker.execution
    # The offsets as locals: this loop runs once per line of the file.
    (execution_at, execution_end, prev_at, prev_end, hash_at, hash_end, tenant_prev_at,
     tenant_prev_end, tenant_hash_at, tenant_hash_end, seq_at, position_width,
     version_width) = OFFSETS  # fmt: skip
    version_then_comma, closing = VERSION + b"%d,", LINE_END[:-1].encode()
    # after the prev_hash: the tenant, and the agent when the export names one
    names = TENANT + (checker.tenant or b"\x00") + AGENT + (checker.agent or b"")
    agent_ends = prev_end + len(names) if checker.agent else 0
    after, through = checker.after, checker.through
    seq, position, tenant_chain = checker.seq, checker.position, checker.tenant_hash
    events, first, keys_seen = checker.events, checker.first, checker.seen_keys
    for line in lines:
        number += 1
        split = line.rfind(HASH_FIELD)
        try:
            execution_id, prev = line[execution_at:execution_end], line[prev_at:prev_end]
            at = line.index(POSITION, prev_end + len(names))
            comma = line.index(b",", at + position_width)
            line_position = int(line[at + position_width : comma])
            claimed = line[split + hash_at : split + hash_end]
            tenant_prev = line[split + tenant_prev_at : split + tenant_prev_end]
            tenant_hash = line[split + tenant_hash_at : split + tenant_hash_end]
            chain = chains.get(execution_id)
            if chain is None:  # the first of its execution here: the join judges its link
                version = int(line[comma + version_width : line.index(b",", comma + version_width)])
                linked = line[comma : comma + version_width] == VERSION and (
                    version > 1 or prev == GENESIS
                )
            else:
                version = chain[0] + 1
                linked = chain[1] == prev and line.startswith(version_then_comma % version, comma)
            ok = (
                linked and line[:execution_at] == OPENING
                and line[execution_end:prev_at] == PREV_HASH
                and line.startswith(names, prev_end) and (not agent_ends or at == agent_ends)
                and split > 0 and int(line[split + seq_at : -1]) == seq + 1
                and line[-1:] == closing
                and line[split + hash_end : split + tenant_prev_at] == TENANT_PREV
                and line[split + tenant_prev_end : split + tenant_hash_at] == TENANT_HASH
                and line[split + tenant_hash_end : split + seq_at] == SEQ
                and hexlify(sha256(line[:split]).digest()) == claimed
                and position < line_position <= through and line_position > after
                and (execution is None or execution_id == execution)
                and not keys_seen and line_position not in anchors
                and hexlify(sha256(unhexlify(tenant_prev + claimed)).digest()) == tenant_hash
                and (tenant_chain is None or tenant_prev == tenant_chain)
            )  # fmt: skip
        except ValueError:
            ok = False
        if ok:
            seq, position = seq + 1, line_position
            if chain is None:
                entries[execution_id] = (version, prev, number, line_position)
            chains[execution_id] = (version, claimed, line_position)
            if tenant_chain is not None:
                tenant_chain = tenant_hash
            events += 1
            if first is None:
                first, checker.found.first_event_line = line_position, number
            continue
        checker.seq, checker.position, checker.tenant_hash = seq, position, tenant_chain
        checker.events, checker.first = events, first
        checker.line(number, line + b"\n")
        seq, position, tenant_chain = checker.seq, checker.position, checker.tenant_hash
        events, first, keys_seen = checker.events, checker.first, checker.seen_keys
    checker.seq, checker.position, checker.tenant_hash = seq, position, tenant_chain
    checker.events, checker.first = events, first
    return number
