"""NATS users per role: what each process role may publish and subscribe to, and the
nats-server ``authorization`` block that gives each role a user with those permissions.

A deployment runs ``agentboard init`` as ``admin`` (it makes the streams, the bucket and
the object store), then each role as its own user (a user and password in
``AGENTBOARD_NATS_URL``, or a credentials file of an operator-mode account with the same
permissions). A role given another's user is refused by the server at the first subject
it may not use, and a worker cannot publish events, read the event stream or take work
from a queue it was not given.

The subjects are those nats-py uses for what each role does (JetStream's API, KV and
object store subjects, the command service's micro endpoints); the integration test
(tests/integration/test_nats_users.py) runs every role under its user and finds no
permission violation in the server's log.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from infra.command_service import SUBJECT_PREFIX
from infra.nats import (
    ARTIFACTS_BUCKET,
    AUDIT_STREAM,
    BANDS,
    EVENTS_STREAM,
    LOGS_STREAM,
    WORK_STREAM,
    WORKERS_BUCKET,
    work_consumer,
)

KV = f"KV_{WORKERS_BUCKET}"
OBJ = f"OBJ_{ARTIFACTS_BUCKET}"
INFO_OF_OURS = [
    f"$JS.API.STREAM.INFO.{name}"
    for name in (WORK_STREAM, EVENTS_STREAM, LOGS_STREAM, AUDIT_STREAM, KV, OBJ)
]


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    def as_config(self) -> dict[str, object]:
        return {
            "publish": {"allow": list(self.publish)},
            "subscribe": {"allow": list(self.subscribe)},
        }


def _work(queues: Sequence[str] | None) -> list[str]:
    """The work stream's consumers of ``queues`` (None: every queue)."""
    # a wildcard stands for a whole token only: each band's consumer by name
    names = [work_consumer(queue, band) for queue in queues for band in BANDS] if queues else ["*"]
    return [
        subject
        for name in names
        for subject in (
            f"$JS.API.CONSUMER.INFO.{WORK_STREAM}.{name}",
            f"$JS.API.CONSUMER.CREATE.{WORK_STREAM}.{name}.>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{WORK_STREAM}.{name}",
            f"$JS.API.CONSUMER.MSG.NEXT.{WORK_STREAM}.{name}",
            f"$JS.ACK.{WORK_STREAM}.{name}.>",
        )
    ]


def role_permissions(worker_queues: Sequence[str] | None = None) -> dict[str, Permissions]:
    """Each role's permissions; a worker's limited to ``worker_queues`` when given."""
    return {
        "admin": Permissions(publish=(">",), subscribe=(">",)),
        "api": Permissions(
            publish=(
                "$JS.API.>",  # the topology at start, the live hub's consumer, queue depths
                "agentboard.audit.anchor.>",
                "agentboard.control.>",
                f"$KV.{WORKERS_BUCKET}.>",
                "$SRV.>",
                "_INBOX.>",  # replies to the workers' reports
            ),
            subscribe=(f"{SUBJECT_PREFIX}.>", "$SRV.>", "_INBOX.>"),
        ),
        "relay": Permissions(
            publish=(
                "agentboard.events.>",
                "agentboard.work.>",
                "agentboard.control.>",
                *INFO_OF_OURS,
                *_work(None),
                "$JS.API.CONSUMER.LIST.*",
                "$JS.API.CONSUMER.NAMES.*",
            ),
            subscribe=("_INBOX.>",),
        ),
        "worker": Permissions(
            publish=(
                f"{SUBJECT_PREFIX}.>",
                "agentboard.logs.>",
                *INFO_OF_OURS,
                *_work(worker_queues),
                f"$KV.{WORKERS_BUCKET}.>",
                f"$O.{ARTIFACTS_BUCKET}.>",
                f"$JS.API.DIRECT.GET.{OBJ}.>",
                f"$JS.API.STREAM.MSG.GET.{OBJ}",
                f"$JS.API.STREAM.PURGE.{OBJ}",
            ),
            subscribe=("agentboard.control.>", "_INBOX.>"),
        ),
    }


def authorization_config(
    passwords: Mapping[str, str], worker_queues: Sequence[str] | None = None
) -> str:
    """The nats-server ``authorization`` block: a user per role named in ``passwords``
    (role → password) with that role's permissions. JSON is valid nats-server config."""
    permissions = role_permissions(worker_queues)
    users = [
        {"user": role, "password": password, "permissions": permissions[role].as_config()}
        for role, password in passwords.items()
    ]
    return "authorization " + json.dumps({"users": users}, indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m infra.nats_users admin=PW api=PW relay=PW worker=PW [--queue Q ...]``:
    print the ``authorization`` block to include in each nats-server's configuration."""
    parser = argparse.ArgumentParser(prog="python -m infra.nats_users", description=main.__doc__)
    parser.add_argument("users", nargs="+", metavar="ROLE=PASSWORD")
    parser.add_argument("--queue", action="append", help="the only queues workers may take")
    args = parser.parse_args(argv)
    passwords = dict(user.split("=", 1) for user in args.users)
    unknown = set(passwords) - set(role_permissions())
    if unknown:
        parser.error(
            f"no role {', '.join(sorted(unknown))}: one of {', '.join(role_permissions())}"
        )
    sys.stdout.write(authorization_config(passwords, args.queue))


if __name__ == "__main__":
    main()
