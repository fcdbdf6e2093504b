"""``agentboard audit export | verify | replay``.

``export`` streams GET /v1/audit/export to a file (or stdout). ``verify`` and ``replay``
work offline, from the file alone: no server, no database of the deployment.

Exit codes: 0 done (for ``verify`` and ``replay``: every check passed, the signature
included); 1 the export does not verify (or the server refused); 2 bad usage or input (no
such file, an unreadable key file, nothing to talk to); 3 (``verify``, ``replay``) every
hash and link checks out but the signature was not checked, because no key was given or
found.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO
from uuid import UUID

import typer

from api.cli.client import EXIT_REFUSED, EXIT_USAGE, ApiClient, KeyOption, UrlOption, fail
from api.cli.executions import STATUSES, Output, OutputOption
from api.cli.group import verb_group
from infra.client_settings import ClientSettings

if TYPE_CHECKING:
    import httpx

    from infra.audit_replay import Replayed
    from projections.audit.verify import Verdict

EXIT_UNSIGNED = 3

audit_cli = verb_group("The audit trail: export, verify, replay.")


class Format(StrEnum):
    NDJSON = "ndjson"
    CSV = "csv"


def _moment(option: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} takes an ISO 8601 time such as 2025-01-31T12:00:00Z (got {value!r})",
             EXIT_USAGE)  # fmt: skip
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


FromOption = Annotated[str | None, typer.Option("--from", help="ISO 8601 time (no zone: UTC)")]
ToOption = Annotated[str | None, typer.Option("--to", help="ISO 8601 time (no zone: UTC)")]
FileOption = Annotated[Path | None, typer.Option("-o", "--output", help="file (default stdout)")]


@audit_cli.command("export")
def export(
    start: FromOption = None,
    end: ToOption = None,
    execution: Annotated[UUID | None, typer.Option(help="one execution's events")] = None,
    agent: Annotated[str | None, typer.Option(help="one agent's executions")] = None,
    format_: Annotated[Format, typer.Option("--format", help="ndjson or csv")] = Format.NDJSON,
    output: FileOption = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:  # fmt: skip
    """Export the audit trail of the key's tenant.

    Every event with its hash chain, then a signed manifest.

    \b
    Examples:
      agentboard audit export --from 2026-01-01 -o trail.ndjson
      agentboard audit export --agent coder --format csv -o coder.csv
    """
    params = {
        "from": _moment("--from", start), "to": _moment("--to", end),
        "execution": str(execution) if execution else None, "agent": agent,
        "format": format_.value,
    }  # fmt: skip
    api = ApiClient(ClientSettings.from_environment(), url, api_key)
    target = output.with_name(output.name + ".partial") if output else None
    try:
        out: BinaryIO = target.open("wb") if target else sys.stdout.buffer
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror}", EXIT_USAGE)
    last = b""
    try:
        last = _stream(api, {k: v for k, v in params.items() if v is not None}, out)
    finally:
        if target:
            out.close()
            if not last:  # refused before a byte arrived: leave nothing behind
                target.unlink(missing_ok=True)
    manifest = _manifest_of(last, format_)
    if manifest is None:
        fail(
            "the export ended without its manifest (the stream broke); "
            + (f"what arrived is in {target}" if target else "it is incomplete"),
            EXIT_REFUSED,
        )
    if target and output:
        target.replace(output)
    _say_exported(manifest, output)


def _stream(api: ApiClient, params: dict[str, Any], out: BinaryIO) -> bytes:
    """Copy the export to ``out``; returns its last line."""
    tail = b""
    try:
        with api.http.stream(
            "GET", "/v1/audit/export", params=params, timeout=api.httpx.Timeout(30, read=600)
        ) as response:
            if response.status_code >= 400:
                response.read()
                _refused(response)
            for chunk in response.iter_bytes():
                out.write(chunk)
                tail = (tail + chunk)[-(1 << 16) :]
    except api.httpx.HTTPError as error:
        fail(f"the export from {api.url} broke off ({error})", EXIT_REFUSED)
    lines = tail.rstrip(b"\n").rsplit(b"\n", 1)
    return lines[-1]


def _refused(response: httpx.Response) -> None:
    try:
        problem = response.json()
        detail = problem.get("detail") if isinstance(problem, dict) else None
    except ValueError:
        detail = None
    detail = detail or response.text[:200] or response.reason_phrase
    code = EXIT_USAGE if response.status_code in (400, 401, 422) else EXIT_REFUSED
    fail(f"{detail} (HTTP {response.status_code})", code)


def _manifest_of(last: bytes, format_: Format) -> dict[str, Any] | None:
    try:
        text = last.decode()
        if format_ is Format.CSV:
            text = next(csv.reader([text]))[12]
        manifest: dict[str, Any] = json.loads(text)["manifest"]
    except (ValueError, KeyError, TypeError):
        return None
    return manifest


def _say_exported(manifest: dict[str, Any], output: Path | None) -> None:
    events, keys = manifest["events"], manifest.get("keys") or {}
    span = (
        f" (positions {events['first_position']}-{events['last_position']})"
        if events["count"] else ""
    )  # fmt: skip
    key_part = f" and {keys['count']} key record(s)" if keys.get("count") else ""
    where = f" to {output}" if output else ""
    typer.echo(
        f"exported {events['count']} events{span}{key_part} of tenant "
        f"{manifest['tenant']!r}{where}",
        err=True,
    )
    behind = manifest["log_head"] - manifest["chain_position"]
    if behind > 0:
        typer.echo(
            f"note: the audit chain was {behind} event(s) behind the log; those are not in "
            "this export (see `agentboard projections status`)",
            err=True,
        )


# -- verify ---------------------------------------------------------------------------


KeyFileOption = Annotated[
    Path | None, typer.Option(help="the deployment's audit key (default <data dir>/audit.key)")
]
UNSIGNED = "the signature was NOT checked (no audit key: pass --key-file)"


@audit_cli.command("verify")
def verify_command(
    file: Annotated[Path, typer.Argument(help="an export made by `agentboard audit export`")],
    key_file: KeyFileOption = None,
    anchor: Annotated[
        list[str] | None,
        typer.Option(help="POSITION=HASH (tenant_hash) or key:SEQ=HASH (key_hash) of a "
                     "published anchor (repeatable)"),
    ] = None,
) -> None:  # fmt: skip
    """Check an export, offline.

    Every hash, link and count, and the signature. Exit 0: intact; 1: something is wrong
    (each finding named with its line and position); 3: intact but the signature unchecked
    (no key).

    \b
    Examples:
      agentboard audit verify trail.ndjson --key-file audit.key
      agentboard audit verify trail.ndjson --anchor 1234=9f2c...e1 --anchor key:7=03ab...9d
    """
    from projections.audit.verify import UnreadableExport, verify  # noqa: PLC0415 - stdlib

    key = _key(key_file)
    anchors, key_anchors = _anchors(anchor or [])
    try:
        verdict = verify(file, key, anchors, key_anchors)
    except UnreadableExport as error:
        fail(str(error), EXIT_USAGE)
    _report(verdict, key_file)
    if verdict.problem_count:
        typer.echo(
            f"agentboard: {file} does not verify: {verdict.problem_count} problem(s); first: "
            f"{verdict.problems[0]}",
            err=True,
        )
        raise typer.Exit(EXIT_REFUSED)
    if verdict.signature != "valid":
        typer.echo(f"agentboard: {file}: every hash checks out, but {UNSIGNED}", err=True)
        raise typer.Exit(EXIT_UNSIGNED)


def _key(key_file: Path | None) -> bytes | None:
    # secrets and hmac come with it: only for the verbs that read the key
    from projections.audit.key import AuditKeyError, audit_key_path, read_audit_key  # noqa: PLC0415

    path = key_file or audit_key_path(ClientSettings.from_environment().data_dir)
    if key_file is None and not path.exists():
        return None
    try:
        return read_audit_key(path)
    except AuditKeyError as error:
        fail(str(error), EXIT_USAGE)


def _anchors(values: list[str]) -> tuple[dict[int, str], dict[int, str]]:
    """``POSITION=HASH`` (an event's tenant_hash) and ``key:SEQ=HASH`` (a key record's hash),
    as the anchor messages give them: (positions, key seqs)."""
    anchors: dict[int, str] = {}
    key_anchors: dict[int, str] = {}
    for value in values:
        where, sep, digest = value.partition("=")
        number = where.removeprefix("key:")
        if not sep or not (number.isascii() and number.isdigit()) or len(number) > 19 or (
            not re.fullmatch(r"[0-9a-fA-F]{64}", digest)
        ):  # fmt: skip
            fail(
                "--anchor takes POSITION=HASH or key:SEQ=HASH (64 hex characters), "
                f"got {value[:100]!r}", EXIT_USAGE,
            )  # fmt: skip
        (key_anchors if where.startswith("key:") else anchors)[int(number)] = digest.lower()
    return anchors, key_anchors


def _report(verdict: Verdict, key_file: Path | None) -> None:
    manifest = verdict.manifest or {}
    span = f", positions {verdict.first_position}-{verdict.last_position}" if verdict.events else ""
    typer.echo(
        f"{verdict.path}: {verdict.format}, {verdict.events} events{span}, {verdict.keys} key "
        f"record(s), tenant {manifest.get('tenant', '?')!r}"
    )
    typer.echo(f"hashes and links: {'ok' if verdict.problem_count == 0 else 'PROBLEMS'}")
    signature = {
        "valid": f"valid (HMAC-SHA256, key {(manifest.get('signature') or {}).get('key_id')})",
        "unchecked": "not checked (no key; pass --key-file)",
        "missing": "absent (no manifest)",
    }.get(verdict.signature, verdict.signature.upper())
    typer.echo(f"signature: {signature}")
    for note in verdict.notes:
        typer.echo(f"note: {note}")
    for problem in verdict.problems:
        typer.echo(f"  {problem}")
    if verdict.problem_count > len(verdict.problems):
        typer.echo(f"  ... and {verdict.problem_count - len(verdict.problems)} more")


# -- replay ---------------------------------------------------------------------------


@audit_cli.command("replay")
def replay_command(
    file: Annotated[Path, typer.Argument(help="an NDJSON export")],
    execution: Annotated[UUID | None, typer.Option(help="also print this execution")] = None,
    output: OutputOption = Output.TABLE,
    key_file: KeyFileOption = None,
) -> None:
    """Rebuild the board from an export, offline.

    Checks the export's signature, loads it into a fresh embedded store, rebuilds the views,
    and prints the board (and an execution) as of the export's last position.

    \b
    Examples:
      agentboard audit replay trail.ndjson --key-file audit.key
      agentboard audit replay trail.ndjson --execution 3f2a9c0d-... -o json
    """
    from infra.audit_replay import ReplayRefused, replay  # noqa: PLC0415 (starts PostgreSQL)
    from projections.audit.verify import UnreadableExport  # noqa: PLC0415

    if not file.is_file():
        fail(f"cannot read {file}: no such file", EXIT_USAGE)
    try:
        signed = _signed(file, _key(key_file))
        result = replay(file, execution)
    except ReplayRefused as error:
        fail(str(error), EXIT_REFUSED)
    except UnreadableExport as error:
        fail(str(error), EXIT_USAGE)
    _show(result, output)
    if not signed:
        typer.echo(f"agentboard: {file}: replayed, but {UNSIGNED}", err=True)
        raise typer.Exit(EXIT_UNSIGNED)


def _signed(file: Path, key: bytes | None) -> bool:
    """Refuse (exit 1) an export whose manifest's signature does not match ``key``; False
    when there is no key. Replay checks the lines against the manifest's digest of them,
    so a file forged consistently, hashes and all, is refused here: its manifest cannot
    be signed again without the key."""
    from projections.audit.verify import check_signature  # noqa: PLC0415

    verdict = check_signature(file, key)
    if verdict.signature in ("wrong key", "invalid"):
        fail(f"{file} does not verify: {verdict.problems[0]}", EXIT_REFUSED)
    return verdict.signature == "valid"  # or no manifest, which replay refuses


def _show(result: Replayed, output: Output) -> None:
    if output is Output.JSON:
        shown = {
            "tenant": result.tenant, "position": result.position, "events": result.events,
            "executions": result.executions, "board": result.board, "partial": result.partial,
            "chain_matches": result.chain_matches, "execution": result.execution,
        }  # fmt: skip
        typer.echo(json.dumps(shown, indent=2))
        return
    from rich.console import Console  # noqa: PLC0415 - rich, only for a table
    from rich.table import Table  # noqa: PLC0415

    console = Console()
    table = Table(
        "status", "count", title=f"board of {result.tenant!r} at position {result.position}"
    )
    for status in STATUSES:
        table.add_row(status, str(result.board.get(status, 0)))
    console.print(table)
    console.print(
        f"{result.events} events of {result.executions} executions replayed; audit chain "
        f"{'recomputed identically' if result.chain_matches else 'DIFFERS from the export'}"
    )
    if result.partial:
        console.print(
            f"[yellow]left out[/] {len(result.partial)} execution(s) whose history starts "
            f"before the export: {', '.join(result.partial[:5])}"
        )
    if result.execution is not None:
        console.print_json(json.dumps(result.execution))
