"""``agentboard audit verify``: check an export offline, with the standard library only.

It reads the manifest (the last line) first, then every line once, in order, checking
(``checks``, ``lean``; ``segments`` side by side):

* each line's hash against its record (an **edited** line);
* ``seq`` counting up by one (a **deleted**, **inserted** or **moved** line);
* positions rising, each line inside the export's range and filters;
* each execution's chain: versions one apart, each ``prev_hash`` the hash of the line
  before it of that execution, version 1 starting from zeros;
* for a complete export (no execution or agent filter), the tenant chain from the
  manifest's start to its head, line after line;
* the chain of key lines; then counts, first and last positions, the digest of all the
  lines, and the manifest's signature (when given the key).

Every problem names its line and, when it has one, its log position.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import multiprocessing
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from projections.audit import format as fmt
from projections.audit.checks import Segment, csv_row, not_utf8
from projections.audit.segments import Joined, check_segment, join

MAX_LISTED = 50
BLOCK = 8 << 20
TAIL_BLOCK = 1 << 16
PARALLEL_FROM = 64 << 20  # bytes: below this, one process checks the whole file
MAX_WORKERS = 4
CSV_HEADER = (",".join(fmt.CSV_COLUMNS) + "\n").encode()
MISSING = (
    "missing manifest: the last line is not the export's signed manifest; the export is "
    "incomplete (cut short, or its stream broke)"
)


class UnreadableExport(Exception):
    """The file cannot be opened or read at all."""


@dataclass(frozen=True, slots=True)
class Problem:
    line: int | None
    position: int | None
    message: str

    def __str__(self) -> str:
        where = [f"line {self.line}"] if self.line else []
        where += [f"position {self.position}"] if self.position is not None else []
        return f"{', '.join(where)}: {self.message}" if where else self.message


@dataclass
class Verdict:
    path: Path
    format: str = "ndjson"
    events: int = 0
    keys: int = 0
    first_position: int | None = None
    last_position: int | None = None
    manifest: dict[str, Any] | None = None
    signature: str = "missing"  # valid, invalid, wrong key, unchecked, missing
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        """Every hash, link and count checks out (the signature aside)."""
        return self.problem_count == 0 and self.manifest is not None

    @property
    def ok(self) -> bool:
        return self.intact and self.signature == "valid"

    def report(self, line: int | None, position: int | None, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(Problem(line, position, message))


def verify(
    path: Path, key: bytes | None = None, anchors: Mapping[int, str] | None = None,
    key_anchors: Mapping[int, str] | None = None,
) -> Verdict:  # fmt: skip
    """Check every line, link and count of an export against its manifest, the manifest's
    signature with ``key``, and the published anchors: ``anchors`` position -> tenant hash,
    ``key_anchors`` key seq -> key record hash."""
    try:
        with path.open("rb") as stream:
            keys = {seq: digest.lower() for seq, digest in (key_anchors or {}).items()}
            return _Verification(path, stream, key, dict(anchors or {}), keys).run()
    except OSError as error:
        raise UnreadableExport(f"cannot read {path}: {error.strerror or error}") from None


def check_signature(path: Path, key: bytes | None) -> Verdict:
    """The manifest and its signature alone, not the lines (``audit replay`` checks those,
    against the manifest's digest of them): ``signature`` is ``valid``, ``wrong key``,
    ``invalid``, ``unchecked`` (no key) or ``missing`` (no readable manifest)."""
    try:
        with path.open("rb") as stream:
            return _Verification(path, stream, key, {}).signature_only()
    except OSError as error:
        raise UnreadableExport(f"cannot read {path}: {error.strerror or error}") from None


class _Verification:
    def __init__(
        self, path: Path, stream: BinaryIO, key: bytes | None, anchors: dict[int, str],
        key_anchors: dict[int, str] | None = None,
    ) -> None:  # fmt: skip
        self.path = path
        self.stream = stream
        self.key = key
        self.anchors = anchors
        self.key_anchors = key_anchors or {}
        self.verdict = Verdict(path)
        self.manifest: dict[str, Any] = {}

    def signature_only(self) -> Verdict:
        size = self.stream.seek(0, 2)
        manifest = self._manifest(self._last_line(size)[1]) if size else MISSING
        if isinstance(manifest, dict):
            self.manifest = self.verdict.manifest = manifest
            self._signature()
        else:
            self.verdict.report(None, None, manifest)
        return self.verdict

    def run(self) -> Verdict:
        verdict, stream = self.verdict, self.stream
        size = stream.seek(0, 2)
        if size == 0:
            verdict.report(None, None, "the file is empty: not an agentboard audit export")
            return verdict
        manifest_at, last_line = self._last_line(size)
        manifest = self._manifest(last_line)
        cut_manifest = isinstance(manifest, str) and (
            last_line.startswith(fmt.MANIFEST_OPENING) or last_line.startswith(b",manifest,")
        )
        if isinstance(manifest, dict):
            self.manifest = verdict.manifest = manifest
            if manifest["scheme"] != fmt.SCHEME:
                verdict.report(None, None, f"unknown scheme {manifest['scheme']!r}")
        body_end = manifest_at if isinstance(manifest, dict) or cut_manifest else size
        segments, digest = self._segments(body_end)
        whole = join(segments, manifest if isinstance(manifest, dict) else None, verdict)
        verdict.events, verdict.keys = whole.events, whole.keys
        verdict.first_position = whole.first_position
        verdict.last_position = whole.last_position or None
        if isinstance(manifest, str):
            verdict.report(whole.lines + 1 if cut_manifest else None, None, manifest)
        elif manifest:
            self._finish(whole, digest)
        verdict.problems.sort(key=lambda p: (p.line is None, p.line or 0))
        return verdict

    def _segments(self, end: int) -> tuple[list[Segment], str]:
        """Check the lines before ``end``: in this process, or cut into one segment per
        CPU for worker processes while this one takes the digest of them all."""
        manifest = self.manifest or None
        path, anchors, csv_format = str(self.path), self.anchors, self.verdict.format == "csv"
        workers = min(os.cpu_count() or 1, MAX_WORKERS)
        if end < PARALLEL_FROM or workers < 2 or csv_format:
            lines = hashlib.sha256()
            whole = check_segment(
                path, 0, end, manifest, anchors, csv_format, lines, self.key_anchors
            )
            return [whole], lines.hexdigest()
        cuts = [0, *self._cuts(end, workers), end]
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            segment = partial(check_segment, path, manifest=manifest, anchors=anchors,
                              csv_format=csv_format, key_anchors=self.key_anchors)  # fmt: skip
            futures = [
                pool.submit(segment, start, stop) for start, stop in itertools.pairwise(cuts)
            ]
            digest = self._digest(end)
            return [future.result() for future in futures], digest

    def _cuts(self, end: int, parts: int) -> list[int]:
        """Where to cut ``[0, end)`` into ``parts``: right after a line break."""
        cuts = []
        for part in range(1, parts):
            self.stream.seek(end * part // parts)
            self.stream.readline()
            cuts.append(min(self.stream.tell(), end))
        return sorted(set(cuts))

    def _digest(self, end: int) -> str:
        digest, offset = hashlib.sha256(), 0
        self.stream.seek(0)
        while offset < end and (block := self.stream.read(min(BLOCK, end - offset))):
            digest.update(block)
            offset += len(block)
        return digest.hexdigest()

    def _last_line(self, size: int) -> tuple[int, bytes]:
        """Where the last line starts, and the line."""
        stream = self.stream
        stream.seek(size - 1)
        end = size - 1 if stream.read(1) == b"\n" else size
        start = end
        while start > 0:
            block = min(TAIL_BLOCK, start)
            stream.seek(start - block)
            found = stream.read(block).rfind(b"\n")
            if found >= 0:
                start = start - block + found + 1
                break
            start -= block
        stream.seek(start)
        return start, stream.read(size - start)

    def _manifest(self, line: bytes) -> dict[str, Any] | str:
        """The manifest, or why the last line is not one; first, the file's format."""
        self.stream.seek(0)
        self.verdict.format = "csv" if self.stream.readline() == CSV_HEADER else "ndjson"
        text = line
        if self.verdict.format == "csv":
            if not line.startswith(b",manifest,"):
                return MISSING
            try:
                row = csv_row(line)
            except UnicodeDecodeError as error:
                return f"manifest: {not_utf8(error)}"
            except csv.Error as error:
                return f"manifest: not a CSV row ({error})"
            if len(row) != len(fmt.CSV_COLUMNS):
                return MISSING
            text = row[12].encode() + line[len(line.rstrip(b"\n")) :]
        if not text.startswith(fmt.MANIFEST_OPENING):
            return MISSING
        try:
            manifest = json.loads(text.decode())["manifest"]
        except UnicodeDecodeError as error:
            return f"manifest: {not_utf8(error)}"
        except (ValueError, TypeError, KeyError, RecursionError):
            if not line.endswith(b"\n"):
                return "truncated: the manifest is cut short; the export is incomplete"
            return "the manifest is not valid JSON"
        wrong = malformed(manifest)
        return f"manifest: {wrong}" if wrong else dict(manifest)

    def _finish(self, whole: Joined, digest: str) -> None:
        verdict, manifest = self.verdict, self.manifest
        events, keys = manifest["events"], manifest.get("keys") or {}
        at_manifest = whole.lines + 1
        if verdict.events != events["count"]:
            verdict.report(
                None, None,
                f"the manifest counts {events['count']} events; the file holds {verdict.events}",
            )  # fmt: skip
        for name in ("first", "last"):
            said, found = events[f"{name}_position"], getattr(verdict, f"{name}_position")
            if said != found:
                verdict.report(
                    None, found,
                    f"the manifest says the {name} event is at position {said}; the file's "
                    f"{name} is at {found}: events {'before' if name == 'first' else 'after'} "
                    "it are missing or were added",
                )  # fmt: skip
        if keys and verdict.keys != keys.get("count"):
            verdict.report(
                None, None,
                f"the manifest counts {keys.get('count')} key records; the file holds "
                f"{verdict.keys}",
            )  # fmt: skip
        if keys and keys.get("last_hash") and whole.key_hash != str(keys["last_hash"]).encode():
            verdict.report(None, None, "the last key record is not the one the manifest names")
        if (
            manifest["complete"]
            and whole.tenant_hash != str(manifest["tenant_chain"]["head"]).encode()
        ):
            verdict.report(
                at_manifest, None, "the tenant chain does not end at the manifest's head: "
                "events at the end are missing or were changed",
            )  # fmt: skip
        if digest != manifest["lines_sha256"]:
            verdict.report(
                at_manifest, None, "the lines do not match the manifest's digest of them "
                "(lines were changed, added, removed or moved)",
            )  # fmt: skip
        self._anchors_not_seen(whole)
        self._signature()

    def _anchors_not_seen(self, whole: Joined) -> None:
        after, through = self.manifest["range"]["after"], self.manifest["range"]["through"]
        for position in sorted(set(self.anchors) - whole.anchored):
            if self.manifest["complete"] and after < position <= through:
                self.verdict.report(None, position, "the anchored event is missing from the export")
            else:
                self.verdict.notes.append(
                    f"anchor at position {position} is not in this export: not checked"
                )
        for key_seq in sorted(set(self.key_anchors) - whole.key_seqs):
            # records are appended in key_seq order: a later one here means this one was there
            if self.manifest["keys"] is not None and any(s > key_seq for s in whole.key_seqs):
                self.verdict.report(
                    None, None, f"the anchored key record {key_seq} is missing from the export"
                )
            else:
                self.verdict.notes.append(
                    f"anchor of key record {key_seq} is not in this export: not checked"
                )

    def _signature(self) -> None:
        verdict, manifest = self.verdict, self.manifest
        algorithm = manifest["signature"]["algorithm"]
        if algorithm != fmt.SIGNATURE_ALGORITHM:  # outside what the signature covers
            verdict.signature = "invalid"
            verdict.report(
                None, None,
                f"the manifest's signature algorithm is {str(algorithm)[:40]!r}: verify knows "
                f"{fmt.SIGNATURE_ALGORITHM} only; it was changed",
            )  # fmt: skip
        elif self.key is None:
            verdict.signature = "unchecked"
        elif fmt.signature_matches(manifest, self.key):
            verdict.signature = "valid"
        elif (signed_with := (manifest.get("signature") or {}).get("key_id")) != fmt.key_id_of(
            self.key
        ):
            verdict.signature = "wrong key"
            verdict.report(
                None, None,
                f"wrong key: the manifest was signed with key {signed_with}, the key given "
                f"is {fmt.key_id_of(self.key)}",
            )  # fmt: skip
        else:
            verdict.signature = "invalid"
            verdict.report(None, None, "the manifest's signature does not match: it was changed")


# Every field of the manifest that verify reads, and what it must be: a field within a
# null object ("keys" of a filtered export) is not read.
SHAPE: tuple[tuple[str, tuple[type, ...]], ...] = (
    ("scheme", (str,)), ("tenant", (str,)), ("complete", (bool,)), ("filters", (dict,)),
    ("filters.from", (str, type(None))), ("filters.execution", (str, type(None))),
    ("filters.agent", (str, type(None))),
    ("range", (dict,)), ("range.after", (int,)), ("range.through", (int,)),
    ("events", (dict,)), ("events.count", (int,)),
    ("events.first_position", (int, type(None))), ("events.last_position", (int, type(None))),
    ("keys", (dict, type(None))), ("keys.count", (int,)), ("keys.last_hash", (str, type(None))),
    ("tenant_chain", (dict,)), ("tenant_chain.start", (str,)), ("tenant_chain.head", (str,)),
    ("lines_sha256", (str,)),
    ("signature", (dict,)), ("signature.algorithm", (str,)), ("signature.key_id", (str,)),
    ("signature.value", (str,)),
)  # fmt: skip
KINDS = {
    dict: "an object", str: "a string", int: "a whole number", bool: "true or false",
    type(None): "null",
}  # fmt: skip


def malformed(manifest: Any) -> str | None:
    """What is wrong with the manifest's shape (the first thing found), or None."""
    if not isinstance(manifest, dict):
        return "it is not an object"
    for name, kinds in SHAPE:
        *outer, last = name.split(".")
        holder = manifest[outer[0]] if outer else manifest
        if holder is None:
            continue
        if last not in holder:
            return f'"{name}" is missing'
        if type(holder[last]) not in kinds:  # exactly: true is not a number here
            return f'"{name}" must be {" or ".join(KINDS[kind] for kind in kinds)}'
    return None
