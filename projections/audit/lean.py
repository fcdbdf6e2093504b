"""The lean path of ``audit verify``: one tight loop over the lines of a block.

A line passes here only if every check passes; anything else (and each segment's first
line) goes to ``LineChecker.line``, which checks it again slowly and says what is wrong.
The record's fixed-width fields come first (``audit_format``), so they are read at
fixed offsets. State lives in locals here and goes back to the checker around each
line handed to it.
"""

from __future__ import annotations

import binascii
import hashlib

from projections.audit.checks import GENESIS, LineChecker

TENANT_PREV, TENANT_HASH, SEQ = b'","tenant_prev":"', b'","tenant_hash":"', b'","seq":'
OPENING, PREV_HASH = b'{"execution_id":"', b'","prev_hash":"'
POSITION, VERSION = b',"position":', b',"version":'


def check_block(checker: LineChecker, lines: list[bytes], number: int) -> int:
    """Check complete lines (without their line break), the first being line
    ``number + 1``; returns the number of the last."""
    sha256, hexlify, unhexlify = hashlib.sha256, binascii.hexlify, binascii.unhexlify
    chains, entries, anchors = checker.chains, checker.entries, checker.anchors
    execution = checker.execution
    # after the prev_hash: the tenant, and the agent when the export names one
    names = b'","tenant":' + (checker.tenant or b"\x00") + b',"agent_id":' + (checker.agent or b"")
    agent_ends = 132 + len(names) if checker.agent else 0
    after, through = checker.after, checker.through
    seq, position, tenant_chain = checker.seq, checker.position, checker.tenant_hash
    events, first, keys_seen = checker.events, checker.first, checker.seen_keys
    for line in lines:
        number += 1
        split = line.rfind(b',"hash":"')
        try:
            execution_id, prev = line[17:53], line[68:132]
            at = line.index(POSITION, 132 + len(names))
            comma = line.index(b",", at + 12)
            line_position = int(line[at + 12 : comma])
            claimed = line[split + 9 : split + 73]
            tenant_prev = line[split + 90 : split + 154]
            tenant_hash = line[split + 171 : split + 235]
            chain = chains.get(execution_id)
            if chain is None:  # the first of its execution here: the join judges its link
                version = int(line[comma + 11 : line.index(b",", comma + 11)])
                linked = line[comma : comma + 11] == VERSION and (version > 1 or prev == GENESIS)
            else:
                version = chain[0] + 1
                linked = chain[1] == prev and line.startswith(b',"version":%d,' % version, comma)
            ok = (
                linked and line[:17] == OPENING and line[53:68] == PREV_HASH
                and line.startswith(names, 132) and (not agent_ends or at == agent_ends)
                and split > 0 and int(line[split + 243 : -1]) == seq + 1 and line[-1:] == b"}"
                and line[split + 73 : split + 90] == TENANT_PREV
                and line[split + 154 : split + 171] == TENANT_HASH
                and line[split + 235 : split + 243] == SEQ
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
